"""Peers of bench/peers.py: the same ONNX models served by KServe's ModelServer and
Seldon's MLServer (each run from its own virtualenv), a canned-response gRPC servicer
(the transport floor), and the load generator every side is measured with."""
