"""KServe v2 REST on its own port (Triton's 8000 by default), over the same data plane as
gRPC: routes (`routes.py`) name the gRPC method each mirrors, so one scope table and one
set of servicer semantics serve both; `api.py` answers a request synchronously, `codec.py`
turns inference bodies (JSON and binary tensors) into the gRPC request's tensors and back,
`errors.py` maps errors to HTTP statuses, and `server.py` is the HTTP stack (uvicorn) that
reads requests, admits them and runs `api.py` in bounded thread pools.
"""
