"""Random `authorization` metadata against a gateway with auth on: never a way in, never
anything but UNAUTHENTICATED with the one fixed message, and the server keeps serving."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pareto.v1 import models_pb2, models_pb2_grpc
from service.auth.interceptor import UNAUTHENTICATED_MESSAGE
from service.server import GatewayServer
from tests.helpers.fuzz import DEADLINE_S, TALLY, fuzz
from tests.helpers.gateway_settings import make_settings

TOKEN = "the-only-token-0123456789"
PRINTABLE = st.characters(min_codepoint=0x20, max_codepoint=0x7E)
VISIBLE = st.characters(min_codepoint=0x21, max_codepoint=0x7E)  # a trailing space is trimmed


@pytest.fixture(scope="module")
def stub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[models_pb2_grpc.ModelServiceStub]:
    root = tmp_path_factory.mktemp("fuzz-auth")
    (root / "tokens").write_text(f"admin admin {TOKEN}\n")
    gateway = GatewayServer(make_settings(root / "data", auth_tokens_file=root / "tokens"))
    gateway.start()
    with grpc.insecure_channel(f"127.0.0.1:{gateway.port}") as channel:
        yield models_pb2_grpc.ModelServiceStub(channel)
    gateway.stop(grace=1.0)


headers = st.one_of(
    st.text(PRINTABLE, max_size=60),
    st.builds(lambda t: f"Bearer {t}", st.text(PRINTABLE, max_size=40)),
    st.builds(lambda t: f"bearer {TOKEN}{t}", st.text(VISIBLE, min_size=1, max_size=3)),
    st.builds(lambda n: f"Bearer {TOKEN[:n]}", st.integers(0, len(TOKEN) - 1)),
)


@fuzz(300)
@given(values=st.lists(headers, max_size=2))
def test_fuzz_authorization_header(stub, values):
    metadata = [("authorization", v) for v in values]
    try:
        stub.ListModels(models_pb2.ListModelsRequest(), metadata=metadata, timeout=DEADLINE_S)
        code, details = grpc.StatusCode.OK, ""
    except grpc.RpcError as exc:
        code, details = exc.code(), exc.details()
    TALLY["ListModels with a random authorization header"][code.name] += 1
    assert code == grpc.StatusCode.UNAUTHENTICATED
    assert details == UNAUTHENTICATED_MESSAGE


def test_the_real_token_still_works(stub):
    metadata = [("authorization", f"Bearer {TOKEN}")]
    assert stub.ListModels(models_pb2.ListModelsRequest(), metadata=metadata).models == []
