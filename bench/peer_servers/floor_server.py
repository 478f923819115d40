"""The transport floor: a KServe v2 gRPC servicer that runs no model and answers every
ModelInfer with one prepared response (the right output shape for the case). What any
Python gRPC server pays per request on this machine, whatever it serves.

    python -m bench.peer_servers.floor_server --port P --workers W --response FILE.bin
"""

from __future__ import annotations

import argparse
from concurrent import futures
from pathlib import Path

import grpc
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc as pb_grpc


class Canned(pb_grpc.GRPCInferenceServiceServicer):
    def __init__(self, response: pb.ModelInferResponse) -> None:
        self._response = response

    def ServerLive(self, request, context):
        return pb.ServerLiveResponse(live=True)

    def ServerReady(self, request, context):
        return pb.ServerReadyResponse(ready=True)

    def ModelReady(self, request, context):
        return pb.ModelReadyResponse(ready=True)

    def ModelInfer(self, request, context):
        return self._response


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=16)
    parser.add_argument("--response", type=Path, required=True)
    args = parser.parse_args()
    response = pb.ModelInferResponse.FromString(args.response.read_bytes())
    server = grpc.server(futures.ThreadPoolExecutor(args.workers))
    pb_grpc.add_GRPCInferenceServiceServicer_to_server(Canned(response), server)
    server.add_insecure_port(f"127.0.0.1:{args.port}")
    server.start()
    server.wait_for_termination()


if __name__ == "__main__":
    main()
