"""What the tests share: settings of a gateway on loopback, real test models, job and
deployment calls, certificates, a PostgreSQL server, fuzz strategies and the deploy tools.

Test modules and conftest.py files import from here, never from each other
(tests/unit/test_test_layout.py checks it).
"""
