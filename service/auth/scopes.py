"""Which scope each gRPC method needs: the one table (see README "Security").

`admin` includes `read` and `infer`. A method missing from the table needs `admin`
(deny by default), so a new management call is never open by accident: add it here.
OPEN methods need no token at all: health checks (kubelet and load-balancer probes),
server reflection (grpcurl discovery; it lists services, it calls none) and KServe
ServerLive/ServerReady (Triton-style probes; they answer one boolean).
"""

from __future__ import annotations

READ = "read"
INFER = "infer"
ADMIN = "admin"
SCOPES = (READ, INFER, ADMIN)
OPEN = ""  # no token needed

# What holding a scope grants.
GRANTS: dict[str, frozenset[str]] = {
    READ: frozenset({READ}),
    INFER: frozenset({INFER}),
    ADMIN: frozenset({READ, INFER, ADMIN}),
}

_SERVICES: dict[str, dict[str, str]] = {
    "pareto.v1.ModelService": {
        "UploadModel": ADMIN,
        "DeleteModel": ADMIN,
        "ListModels": READ,
        "GetModel": READ,
        "SetServingConfig": ADMIN,
        "GetServingConfig": READ,
    },
    "pareto.v1.DatasetService": {
        "UploadDataset": ADMIN,
        "DeleteDataset": ADMIN,
        "ListDatasets": READ,
        "GetDataset": READ,
    },
    "pareto.v1.JobService": {
        "CreateJob": ADMIN,
        "CancelJob": ADMIN,
        "ListJobs": READ,
        "GetJob": READ,
        "WatchJob": READ,
        "GetSearch": READ,
    },
    "pareto.v1.VariantService": {
        "DeleteVariant": ADMIN,
        "ListVariants": READ,
        "GetVariant": READ,
    },
    "pareto.v1.DeploymentService": {
        "CreateDeployment": ADMIN,
        "UpdateTraffic": ADMIN,
        "DeleteDeployment": ADMIN,
        "ListDeployments": READ,
        "GetDeployment": READ,
        "GetDeploymentReport": READ,
    },
    "pareto.v1.RuntimeService": {
        "ListRuntimes": READ,
        "ExportTriton": ADMIN,  # read-only, but it hands out the model's files
    },
    "inference.GRPCInferenceService": {
        "ServerLive": OPEN,
        "ServerReady": OPEN,
        "ServerMetadata": INFER,
        "ModelReady": INFER,
        "ModelMetadata": INFER,
        "ModelConfig": INFER,  # clients such as perf_analyzer shape their requests by it
        "ModelStatistics": READ,
        "ModelInfer": INFER,
        "ModelStreamInfer": INFER,
        "RepositoryIndex": READ,
        "RepositoryModelLoad": ADMIN,
        "RepositoryModelUnload": ADMIN,
    },
    "grpc.health.v1.Health": {"Check": OPEN, "Watch": OPEN, "List": OPEN},
    "grpc.reflection.v1alpha.ServerReflection": {"ServerReflectionInfo": OPEN},
    "grpc.reflection.v1.ServerReflection": {"ServerReflectionInfo": OPEN},
}

METHOD_SCOPES: dict[str, str] = {
    f"/{service}/{method}": scope
    for service, methods in _SERVICES.items()
    for method, scope in methods.items()
}


def required_scope(method: str) -> str:
    """The scope a full method name (`/package.Service/Method`) needs; OPEN for none."""
    return METHOD_SCOPES.get(method, ADMIN)


def allows(granted: frozenset[str], needed: str) -> bool:
    """Whether a token holding `granted` scopes may make a call needing `needed`."""
    return needed == OPEN or any(needed in GRANTS[scope] for scope in granted)
