from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ListRuntimesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Runtime(_message.Message):
    __slots__ = ("name", "available", "unavailable_reason", "version", "device", "accelerated", "formats", "datatypes", "devices", "auto_select", "builds_artifacts", "details")
    class DetailsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    AVAILABLE_FIELD_NUMBER: _ClassVar[int]
    UNAVAILABLE_REASON_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    ACCELERATED_FIELD_NUMBER: _ClassVar[int]
    FORMATS_FIELD_NUMBER: _ClassVar[int]
    DATATYPES_FIELD_NUMBER: _ClassVar[int]
    DEVICES_FIELD_NUMBER: _ClassVar[int]
    AUTO_SELECT_FIELD_NUMBER: _ClassVar[int]
    BUILDS_ARTIFACTS_FIELD_NUMBER: _ClassVar[int]
    DETAILS_FIELD_NUMBER: _ClassVar[int]
    name: str
    available: bool
    unavailable_reason: str
    version: str
    device: str
    accelerated: bool
    formats: _containers.RepeatedScalarFieldContainer[str]
    datatypes: _containers.RepeatedScalarFieldContainer[str]
    devices: _containers.RepeatedScalarFieldContainer[str]
    auto_select: bool
    builds_artifacts: bool
    details: _containers.ScalarMap[str, str]
    def __init__(self, name: _Optional[str] = ..., available: _Optional[bool] = ..., unavailable_reason: _Optional[str] = ..., version: _Optional[str] = ..., device: _Optional[str] = ..., accelerated: _Optional[bool] = ..., formats: _Optional[_Iterable[str]] = ..., datatypes: _Optional[_Iterable[str]] = ..., devices: _Optional[_Iterable[str]] = ..., auto_select: _Optional[bool] = ..., builds_artifacts: _Optional[bool] = ..., details: _Optional[_Mapping[str, str]] = ...) -> None: ...

class ListRuntimesResponse(_message.Message):
    __slots__ = ("runtimes",)
    RUNTIMES_FIELD_NUMBER: _ClassVar[int]
    runtimes: _containers.RepeatedCompositeFieldContainer[Runtime]
    def __init__(self, runtimes: _Optional[_Iterable[_Union[Runtime, _Mapping]]] = ...) -> None: ...

class ExportTritonRequest(_message.Message):
    __slots__ = ("name", "version", "max_batch_size", "preferred_batch_sizes", "max_queue_delay_us", "instance_count", "kind", "tensorrt_precision", "disable_tensorrt")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    MAX_BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    PREFERRED_BATCH_SIZES_FIELD_NUMBER: _ClassVar[int]
    MAX_QUEUE_DELAY_US_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_COUNT_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    TENSORRT_PRECISION_FIELD_NUMBER: _ClassVar[int]
    DISABLE_TENSORRT_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: str
    max_batch_size: int
    preferred_batch_sizes: _containers.RepeatedScalarFieldContainer[int]
    max_queue_delay_us: int
    instance_count: int
    kind: str
    tensorrt_precision: str
    disable_tensorrt: bool
    def __init__(self, name: _Optional[str] = ..., version: _Optional[str] = ..., max_batch_size: _Optional[int] = ..., preferred_batch_sizes: _Optional[_Iterable[int]] = ..., max_queue_delay_us: _Optional[int] = ..., instance_count: _Optional[int] = ..., kind: _Optional[str] = ..., tensorrt_precision: _Optional[str] = ..., disable_tensorrt: _Optional[bool] = ...) -> None: ...

class ExportFileChunk(_message.Message):
    __slots__ = ("path", "data", "last")
    PATH_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    LAST_FIELD_NUMBER: _ClassVar[int]
    path: str
    data: bytes
    last: bool
    def __init__(self, path: _Optional[str] = ..., data: _Optional[bytes] = ..., last: _Optional[bool] = ...) -> None: ...
