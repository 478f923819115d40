"""Protobuf messages of the gRPC servicer as the JSON Triton's REST server answers.

Field names as in the .proto (`max_batch_size`, `inference_stats`), fields at their
default values included, enums by name, and 64-bit integers as JSON numbers (protobuf's
own JSON mapping writes them as strings; Triton's REST server and its clients use numbers,
e.g. `"dims": [-1, 1, 8, 8]`, `"count": 12`).
"""

from __future__ import annotations

from typing import Any

from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

_INT64 = frozenset(
    {
        FieldDescriptor.TYPE_INT64,
        FieldDescriptor.TYPE_UINT64,
        FieldDescriptor.TYPE_SINT64,
        FieldDescriptor.TYPE_FIXED64,
        FieldDescriptor.TYPE_SFIXED64,
    }
)


def message_json(message: Message) -> dict[str, Any]:
    data = json_format.MessageToDict(
        message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )
    _numbers(message.DESCRIPTOR, data)
    return data


def _numbers(descriptor: Descriptor, data: dict[str, Any]) -> None:
    """Turn the 64-bit integers of `data` (a dict of `descriptor`) back into numbers."""
    for field in descriptor.fields:
        if field.name not in data:
            continue
        value = data[field.name]
        entry = field.message_type
        if entry is not None and entry.GetOptions().map_entry:
            inner = entry.fields_by_name["value"]
            data[field.name] = {k: _value(inner, v) for k, v in value.items()}
        elif field.is_repeated:
            data[field.name] = [_value(field, v) for v in value]
        else:
            data[field.name] = _value(field, value)


def _value(field: FieldDescriptor, value: Any) -> Any:
    if field.message_type is not None and isinstance(value, dict):
        _numbers(field.message_type, value)
        return value
    if field.type in _INT64 and isinstance(value, str):
        return int(value)
    return value
