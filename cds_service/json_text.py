"""JSON text as the standard library writes it (``ensure_ascii``, compact), written by orjson.

Served, the standard library's encoder was a tenth of an in-scope call's CPU (the response body,
sorted keys, and the log line); orjson writes the same text in a fraction of the time. Non-ASCII
characters are escaped as ``\\uXXXX`` (surrogate pairs beyond the BMP), exactly as ``json.dumps``
does by default, so responses and log lines stay the text they were, but for how a float may be
written (``0.00001`` where the standard library writes ``1e-05``: the same number) and NaN or
an infinity (``null``, where the standard library writes ``NaN``, which is not JSON); whatever
orjson refuses (integers beyond 64 bits, non-string keys) goes to the standard library.
"""

from __future__ import annotations

import codecs
import json
import re
from collections.abc import Callable
from typing import Any

import orjson
from flask.json.provider import DefaultJSONProvider

_NON_ASCII = re.compile(r"[^\x00-\x7e]")  # json.dumps escapes DEL (0x7f) too
_COMPACT = (",", ":")


def _escape_char(character: str) -> str:
    code = ord(character)
    if code < 0x10000:
        return f"\\u{code:04x}"
    code -= 0x10000
    return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"


def _escape(match: re.Match[str]) -> str:
    return _escape_char(match.group())


def _escape_unencodable(error: UnicodeError) -> tuple[str, int]:
    """The ``cds-json-escape`` codec error handler: each non-ASCII character as ``json.dumps`` writes it."""
    if not isinstance(error, UnicodeEncodeError):
        raise error
    return "".join(map(_escape_char, error.object[error.start:error.end])), error.end


# text.encode("ascii", "cds-json-escape"): ASCII is copied in C and only the runs of other characters
# reach Python (a regular expression over the whole text took twice as long for a card).
codecs.register_error("cds-json-escape", _escape_unencodable)


def ascii_json(value: Any, *, sort_keys: bool = False, default: Callable[[Any], Any] | None = None) -> str:
    """``json.dumps(value, separators=(",", ":"), sort_keys=sort_keys, default=default)``."""
    option = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_PASSTHROUGH_SUBCLASS
    if sort_keys:
        option |= orjson.OPT_SORT_KEYS
    try:
        text = orjson.dumps(value, default=default, option=option).decode()
    except TypeError:  # orjson.JSONEncodeError is a TypeError
        return json.dumps(value, separators=_COMPACT, sort_keys=sort_keys, default=default)
    if "\x7f" in text:  # ASCII, but json.dumps escapes it
        return _NON_ASCII.sub(_escape, text)
    return text if text.isascii() else text.encode("ascii", "cds-json-escape").decode("ascii")


class FastJSONProvider(DefaultJSONProvider):
    """Flask's JSON provider, with compact output (every response out of debug mode) written by
    :func:`ascii_json`: the same text, sorted keys and Flask's ``default`` for other types."""

    def dumps(self, obj: Any, **kwargs: Any) -> str:
        if kwargs == {"separators": _COMPACT} and self.ensure_ascii:
            return ascii_json(obj, sort_keys=self.sort_keys, default=self.default)
        return super().dumps(obj, **kwargs)
