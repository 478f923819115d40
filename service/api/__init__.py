"""The wire protocols: gRPC servicers (management API and KServe v2), the error and
admission interceptors, and the KServe v2 tensor codec. Servicers are thin: they turn
messages into calls on the layers below and back."""
