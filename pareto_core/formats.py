"""Model formats: what a stored model is, and what a compression step works on.

A stored model has one of `STORED_FORMATS` (the proto enum `ModelFormat` names, without
their `MODEL_FORMAT_` prefix, lower case). Compression steps pass *artifacts* between
them: a single-file ONNX model or a torch.export archive (`ARTIFACT_FORMATS`); an
`onnx_bundle` (an ONNX file plus external data) becomes an ONNX artifact.

A Hugging Face folder (`hf_folder`, a .zip or .tar of one) is a *source* format: it is
uploaded, exported to ONNX at upload, and the model record stores that ONNX file (format
`onnx`) with the folder beside it as its source (`UPLOAD_FORMATS` = stored + source).
"""

from __future__ import annotations

from pareto_core.errors import InvalidArgument

FORMAT_ONNX = "onnx"
FORMAT_ONNX_BUNDLE = "onnx_bundle"
FORMAT_TORCH_EXPORT = "torch_export"

FORMAT_HF_FOLDER = "hf_folder"

STORED_FORMATS: tuple[str, ...] = (FORMAT_ONNX, FORMAT_ONNX_BUNDLE, FORMAT_TORCH_EXPORT)
SOURCE_FORMATS: tuple[str, ...] = (FORMAT_HF_FOLDER,)
UPLOAD_FORMATS: tuple[str, ...] = STORED_FORMATS + SOURCE_FORMATS
ARTIFACT_FORMATS: tuple[str, ...] = (FORMAT_ONNX, FORMAT_TORCH_EXPORT)

_ARTIFACT_OF = {
    FORMAT_ONNX: FORMAT_ONNX,
    FORMAT_ONNX_BUNDLE: FORMAT_ONNX,
    FORMAT_TORCH_EXPORT: FORMAT_TORCH_EXPORT,
}


def check_stored(fmt: object, field: str = "format") -> str:
    """`fmt` if it is a stored format, else InvalidArgument naming `field`."""
    if fmt in STORED_FORMATS:
        return str(fmt)
    raise InvalidArgument(
        f"{field} must be one of {', '.join(STORED_FORMATS)}, got {str(fmt)[:100]!r}"
    )


def check_upload(fmt: object, field: str = "format") -> str:
    """`fmt` if a model may be uploaded in it, else InvalidArgument naming `field`."""
    if fmt in UPLOAD_FORMATS:
        return str(fmt)
    raise InvalidArgument(
        f"{field} must be one of {', '.join(UPLOAD_FORMATS)}, got {str(fmt)[:100]!r}"
    )


def artifact_format(stored: str) -> str:
    """The artifact format compression steps see for a stored model of format `stored`."""
    return _ARTIFACT_OF.get(stored, stored)


def proto_enum_name(fmt: str) -> str:
    """The `pareto.v1.ModelFormat` enum value name of a stored format."""
    return "MODEL_FORMAT_" + fmt.upper()


def from_proto_enum_name(name: str) -> str:
    """The format of a `pareto.v1.ModelFormat` enum value name ("" if unknown)."""
    prefix = "MODEL_FORMAT_"
    fmt = name[len(prefix) :].lower() if name.startswith(prefix) else ""
    return fmt if fmt in UPLOAD_FORMATS else ""
