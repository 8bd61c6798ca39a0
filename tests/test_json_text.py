"""The JSON text of responses and log lines is what the standard library writes, faster."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from flask.json.provider import DefaultJSONProvider
from hypothesis import given, settings
from hypothesis import strategies as st
from markupsafe import Markup

from cds_service import create_app
from cds_service.json_text import ascii_json

SAMPLES = [
    {"cards": []},
    {"b": 1, "a": [1.5, -0.0, 2.54, 1e300, 12345678901234567890, True, None], "c": {"z": "x", "y": ""}},
    {"summary": "Ketamine — CRPS … «policy» é ü 中文 😀 \U0010ffff", "ctl": "a\nb\t\"\\\x00\x1f\x7f\u2028"},
    {"big": 10 ** 30},  # beyond orjson: the standard library writes it
    {1: "non-string key"},
    ["nested", [[[{"k": "v"}]]]],
]


@pytest.mark.parametrize("value", SAMPLES)
def test_the_text_is_exactly_what_json_dumps_writes(value):
    for sort_keys in (False, True):
        if sort_keys and isinstance(value, dict) and any(not isinstance(k, str) for k in value):
            continue  # json.dumps refuses to sort mixed keys too
        assert ascii_json(value, sort_keys=sort_keys) == json.dumps(value, separators=(",", ":"), sort_keys=sort_keys)


def test_a_float_may_be_written_otherwise_but_reads_as_the_same_number():
    values = [1e-05, 0.1, 1 / 3, 5e-324, 1.7976931348623157e308, 123456.789]
    assert ascii_json(values) == "[0.00001,0.1,0.3333333333333333,5e-324,1.7976931348623157e+308,123456.789]"
    assert json.loads(ascii_json(values)) == values


@dataclass
class Point:
    x: int


def test_flask_responses_are_the_text_flask_wrote_before():
    app = create_app({"AUTH_ENABLED": False, "AUDIT_ENABLED": False})
    flask_default = DefaultJSONProvider(app)
    value = {"when": datetime(2026, 12, 2, 10, 0, tzinfo=UTC), "day": date(2026, 12, 2), "id": uuid.UUID(int=5),
             "amount": Decimal("1.50"), "point": Point(3), "html": Markup("<b>x</b>"), "text": "é — 😀"}
    assert app.json.dumps(value, separators=(",", ":")) == flask_default.dumps(value, separators=(",", ":"))
    assert app.json.dumps(value, indent=2) == flask_default.dumps(value, indent=2)
    for sample in SAMPLES[:4]:
        assert app.json.dumps(sample, separators=(",", ":")) == flask_default.dumps(sample, separators=(",", ":"))


@settings(max_examples=400, deadline=None, database=None)
@given(st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
                    | st.text(), lambda children: st.lists(children, max_size=4)
                    | st.dictionaries(st.text(max_size=6), children, max_size=4), max_leaves=20))
def test_any_json_value_is_written_as_json_dumps_writes_it(value):
    expected = json.dumps(value, separators=(",", ":"))
    written = ascii_json(value)
    assert written == expected or json.loads(written) == json.loads(expected)  # a float may differ in form
    assert written.isascii() and "\x7f" not in written
