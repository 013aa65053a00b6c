"""The SiriDB client wire protocol, free of I/O: frames, package types, errors, payloads."""

from .codec import pack, unpack
from .constants import (
    EMPTY_ANSWERS,
    HEADER,
    HEADER_SIZE,
    MAX_FRAME_SIZE,
    MICROSECOND,
    MILLISECOND,
    NANOSECOND,
    PRECISION_NAMES,
    SECOND,
    UNITS_PER_SECOND,
    AnswerType,
    RequestType,
)
from .errors import SUCCESS_TYPES, error_message, exception_for, is_error_type
from .frames import (
    Frame,
    FrameDecoder,
    FrameError,
    OversizedFrame,
    check_byte,
    encode_frame,
    encode_header,
)
from .nesting import MAX_NESTING, NestingError

__all__ = [
    "EMPTY_ANSWERS",
    "HEADER",
    "HEADER_SIZE",
    "MAX_FRAME_SIZE",
    "MAX_NESTING",
    "MICROSECOND",
    "MILLISECOND",
    "NANOSECOND",
    "PRECISION_NAMES",
    "SECOND",
    "SUCCESS_TYPES",
    "UNITS_PER_SECOND",
    "AnswerType",
    "Frame",
    "FrameDecoder",
    "FrameError",
    "NestingError",
    "OversizedFrame",
    "RequestType",
    "check_byte",
    "encode_frame",
    "encode_header",
    "error_message",
    "exception_for",
    "is_error_type",
    "pack",
    "unpack",
]
