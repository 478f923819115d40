"""How the CLI and the benches print a recipe that came back over gRPC (a protobuf Struct
holds every number as a float)."""

from __future__ import annotations

from google.protobuf import struct_pb2

from pareto.v1 import jobs_pb2
from pareto_cli.frontier_view import recipe_text


def test_recipe_text_prints_struct_numbers_as_written() -> None:
    config = struct_pb2.Struct()
    config.update(
        {"float_linear_layers": [-1, 0], "embedding_block": 32, "alpha": 0.75, "on": True}
    )
    step = jobs_pb2.RecipeStep(technique="quantize.static", config=config)
    recipe = jobs_pb2.Recipe(name="r", steps=[step, jobs_pb2.RecipeStep(technique="fp16")])
    assert recipe_text(recipe) == (
        "quantize.static(alpha=0.75, embedding_block=32, float_linear_layers=[-1, 0], on=true)"
        " -> fp16()"
    )
