"""Thin gRPC adapters: protobuf <-> domain objects, nothing else."""
