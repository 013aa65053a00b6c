"""Package type numbers and time-precision codes of the SiriDB client protocol."""

from __future__ import annotations

import enum
import struct
from typing import Final

#: Frame header: payload length, package id, package type, check byte.
HEADER: Final = struct.Struct("<IHBB")
HEADER_SIZE: Final = HEADER.size

#: SiriDB closes a connection whose frame declares a payload over 40 MiB.
MAX_FRAME_SIZE: Final = 40 * 1024 * 1024

#: Package ids are 16-bit and wrap around.
PID_MODULUS: Final = 1 << 16


class RequestType(enum.IntEnum):
    """Package types a client sends."""

    QUERY = 0
    INSERT = 1
    AUTH = 2
    PING = 3
    INFO = 4
    LOADDB = 5
    REGISTER_SERVER = 6
    FILE_SERVERS = 7
    FILE_USERS = 8
    FILE_GROUPS = 9
    FILE_DATABASE = 10
    SERVICE = 32


class AnswerType(enum.IntEnum):
    """Package types a server answers with."""

    RES_QUERY = 0
    RES_INSERT = 1
    RES_AUTH_SUCCESS = 2
    RES_ACK = 3
    RES_INFO = 4
    RES_FILE = 5
    ACK_SERVICE = 32
    ACK_SERVICE_DATA = 33
    ERR_MSG = 64
    ERR_QUERY = 65
    ERR_INSERT = 66
    ERR_SERVER = 67
    ERR_POOL = 68
    ERR_USER_ACCESS = 69
    ERR = 70
    ERR_NOT_AUTHENTICATED = 71
    ERR_AUTH_CREDENTIALS = 72
    ERR_AUTH_UNKNOWN_DB = 73
    ERR_LOADING_DB = 74
    ERR_FILE = 75
    ERR_SERVICE = 96
    ERR_SERVICE_INVALID_REQUEST = 97


#: Answer types that carry no payload.
EMPTY_ANSWERS: Final = frozenset(
    {
        AnswerType.RES_AUTH_SUCCESS,
        AnswerType.RES_ACK,
        AnswerType.ERR,
        AnswerType.ERR_NOT_AUTHENTICATED,
        AnswerType.ERR_AUTH_CREDENTIALS,
        AnswerType.ERR_AUTH_UNKNOWN_DB,
        AnswerType.ERR_LOADING_DB,
        AnswerType.ERR_FILE,
    }
)

# Time precision codes used on the wire (the second item of a query package).
SECOND: Final = 0
MILLISECOND: Final = 1
MICROSECOND: Final = 2
NANOSECOND: Final = 3

#: Precision names as SiriDB prints them, indexed by wire code.
PRECISION_NAMES: Final = ("s", "ms", "us", "ns")

#: Database units per second, indexed by wire code.
UNITS_PER_SECOND: Final = (1, 1_000, 1_000_000, 1_000_000_000)
