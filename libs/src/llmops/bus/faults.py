"""Telling an outage from a fault: an error of the infrastructure (Postgres, Kafka or the object store unreachable, a
connection reset, a timeout, the database shutting down) passes when the infrastructure comes back, so the work is
retried for as long as it takes; any other error is the event's or the handler's, retried a bounded number of times
and then dead-lettered.
"""

from __future__ import annotations

import asyncpg
import urllib3.exceptions
from aiokafka.errors import KafkaConnectionError, KafkaError, KafkaTimeoutError
from minio.error import S3Error
from sqlalchemy import exc as sa_exc

# SQLSTATE classes and codes that describe the server's state, not the statement: connection exceptions (08),
# insufficient resources (53), shutdown, crash and start-up (57P01-57P05, but not 57014: a statement cancelled by its
# timeout may be the event's doing), serialization failures and deadlocks (40001, 40P01) and a lock not available
# (55P03). A retry of the same work can succeed.
_TRANSIENT_SQLSTATE_CLASSES = frozenset({"08", "53"})
_TRANSIENT_SQLSTATES = frozenset({"40001", "40P01", "55P03", "57P01", "57P02", "57P03", "57P04", "57P05"})

# S3 error codes that AWS documents as retriable; SeaweedFS answers InternalError for a second or two after it restarts,
# while its volume server registers again (seen under `make chaos`).
_TRANSIENT_S3_CODES = frozenset({"InternalError", "ServiceUnavailable", "SlowDown", "RequestTimeout"})

_TRANSIENT_TYPES: tuple[type[BaseException], ...] = (
    ConnectionError,  # refused, reset, aborted, broken pipe
    TimeoutError,  # asyncio's too
    asyncpg.exceptions.InterfaceError,  # "connection is closed", "another operation is in progress" after a reset
    asyncpg.exceptions.ConnectionDoesNotExistError,
    asyncpg.exceptions.PostgresConnectionError,
    asyncpg.exceptions.CannotConnectNowError,
    # "cannot switch to state 12; another operation is in progress": a pooled connection whose server went away
    # in the middle of an operation (seen under `make chaos` when Postgres restarts)
    asyncpg.exceptions.InternalClientError,
    sa_exc.TimeoutError,  # no pooled connection within the pool's timeout
    sa_exc.DisconnectionError,
    KafkaConnectionError,
    KafkaTimeoutError,  # aiokafka calls it not retriable: a request that timed out may well succeed later
    # the object store (the minio SDK speaks urllib3): unreachable, a connection cut mid-transfer, a timeout
    urllib3.exceptions.NewConnectionError,
    urllib3.exceptions.ProtocolError,
    urllib3.exceptions.TimeoutError,
    # retries used up on 5xx answers (SeaweedFS answers 500 while it restarts): the reason of a MaxRetryError
    urllib3.exceptions.ResponseError,
)


def is_transient(error: BaseException) -> bool:
    """Whether ``error``, or an error it was raised from, is an infrastructure outage rather than a fault of the
    data or the code: such work is retried until the infrastructure is back, never dead-lettered."""
    seen: set[int] = set()
    pending: list[BaseException | None] = [error]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, _TRANSIENT_TYPES):
            return True
        if isinstance(current, KafkaError) and current.retriable:
            return True
        if isinstance(current, sa_exc.DBAPIError) and current.connection_invalidated:
            return True
        sqlstate = getattr(current, "sqlstate", None)
        if isinstance(sqlstate, str) and (
            sqlstate in _TRANSIENT_SQLSTATES or sqlstate[:2] in _TRANSIENT_SQLSTATE_CLASSES
        ):
            return True
        if isinstance(current, S3Error) and current.code in _TRANSIENT_S3_CODES:
            return True
        # ``reason``: what urllib3's MaxRetryError gave up on (the SDK raises it without chaining the cause)
        pending += [current.__cause__, current.__context__, getattr(current, "orig", None)]
        if isinstance(getattr(current, "reason", None), BaseException):
            pending.append(current.reason)
    return False
