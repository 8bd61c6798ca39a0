"""Random (version 4) UUIDs for cards, audit records and coverage assertions, cheaply.

``uuid.uuid4()`` reads 16 bytes from ``os.urandom`` per id: a system call that releases the GIL,
and under load, with the audit writer and other request threads running, getting the GIL back
cost a hook call more than the rest of its card (bench/README.md). Here the same kernel random
bytes are read 4 KiB at a time, by each thread for itself, and handed out 16 at a time; a forked
child starts with fresh buffers, so no two threads or processes hand out the same bytes.
"""

from __future__ import annotations

import os
import threading

_CHUNK = 4096
_VARIANT = {f"{n:x}": f"{(n & 0x3) | 0x8:x}" for n in range(16)}  # RFC 9562 variant bits "10"


class _Buffer(threading.local):
    """Each thread's own random bytes: no lock to take (with eight request threads, a lock was
    contended whenever the GIL changed hands inside it)."""

    def __init__(self) -> None:
        self.data, self.offset, self.generation = b"", 0, -1


_buffers = _Buffer()
_generation = 0  # moved on in a forked child: no buffer of the parent is used there again


def _after_fork_in_child() -> None:
    global _generation
    _generation += 1


os.register_at_fork(after_in_child=_after_fork_in_child)


def new_uuid() -> str:
    """A random UUID (RFC 9562 version 4) as text, from ``os.urandom``: the text
    ``str(uuid.UUID(bytes=raw, version=4))`` gives, written directly."""
    buffer = _buffers
    if buffer.offset + 16 > len(buffer.data) or buffer.generation != _generation:
        buffer.data, buffer.offset, buffer.generation = os.urandom(_CHUNK), 0, _generation
    h = buffer.data[buffer.offset:buffer.offset + 16].hex()
    buffer.offset += 16
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:]}"
