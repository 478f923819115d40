"""Compression jobs: validation, the scheduler in the server, worker processes."""
