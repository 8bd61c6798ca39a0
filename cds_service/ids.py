"""Random (version 4) UUIDs for cards, audit records and coverage assertions, cheaply.

``uuid.uuid4()`` reads 16 bytes from ``os.urandom`` per id: a system call that releases the GIL,
and under load, with the audit writer and other request threads running, getting the GIL back
cost a hook call more than the rest of its card (bench/README.md). Here the same kernel random
bytes are read 4 KiB at a time and handed out 16 at a time; a forked child starts with a fresh
buffer, so no two processes hand out the same bytes.
"""

from __future__ import annotations

import os
import threading
import uuid

_CHUNK = 4096
_lock = threading.Lock()
_buffer = b""
_offset = 0


def _reset() -> None:
    global _buffer, _offset, _lock
    _buffer, _offset, _lock = b"", 0, threading.Lock()  # a fork may have come while it was held


os.register_at_fork(after_in_child=_reset)


def new_uuid() -> str:
    """A random UUID (RFC 9562 version 4) as text, from ``os.urandom``."""
    global _buffer, _offset
    with _lock:
        if _offset + 16 > len(_buffer):
            _buffer, _offset = os.urandom(_CHUNK), 0
        raw = _buffer[_offset:_offset + 16]
        _offset += 16
    return str(uuid.UUID(bytes=raw, version=4))
