"""parse_body reads with orjson only where orjson gives the standard library's value."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cds_service.errors import ApiError
from cds_service.hook_request import parse_body

UTF8_BOM = b"\xef\xbb\xbf"
REQUESTS = Path(__file__).resolve().parent.parent / "fhir_fixtures" / "hook-requests"


def stdlib_reading(body: bytes) -> tuple[str, object]:
    """What the service answered before orjson: the value, or the 4xx status and message."""
    if body.startswith(UTF8_BOM):
        body = body[3:]
    try:
        data = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return "error", None
    return ("value", data) if isinstance(data, dict) else ("error", None)


def service_reading(body: bytes) -> tuple[str, object]:
    try:
        return "value", parse_body(body)
    except ApiError:
        return "error", None


def same(a: object, b: object) -> bool:
    """Equal with types (1 is not 1.0, True is not 1) and NaN equal to itself."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float):
        return (math.isnan(a) and math.isnan(b)) or a == b
    return a == b


EDGE_BODIES = [
    b'{"a": 123456789012345678901234567890}',  # beyond 64 bits: orjson would give a float
    b'{"a": 9223372036854775807, "b": -9223372036854775808, "c": 18446744073709551615}',
    b'{"a": NaN}', b'{"a": Infinity}', b'{"a": -Infinity}', b'{"a": 1e400}', b'{"a": -1e400}',
    b'{"a": "\\ud800"}', b'{"a": "\\udc00x"}', b'{"a": "\\ud83d\\ude00"}',
    b'{"a": 1, "a": 2}', b'{"a": -0}', b'{"a": -0.0}', b'{"a": 1E5, "b": 0.1e-2, "c": 1.5}',
    b'{"a": 01}', b'{"a": [1,]}', b'{"a": .5}', b'{"a": 1.}', b'{"a": "\\x"}', b'{"a": "\t"}',
    b'{"a": "\x7f"}', b'{"a": "\\u00e9", "\\u0063": 1}', b'\xef\xbb\xbf{"a": 1}', b' \n{"a": {}}\r\n\t',
    b'{"a": "\xed\xa0\x80"}', b'{"a": "\xc3"}', b'{"a": "\xf4\x90\x80\x80"}', b'{"a": true, "b": null}',
    b'[1]', b'"x"', b'1', b'null', b'{}', b'{"a":1} x', b'{"a":1}{}', b'{' * 2000 + b'}' * 2000,
    b'{"a":' + b'[' * 3000 + b']' * 3000 + b'}', b'{"a": 1e-400}', b'{"a": 4.9e-324, "b": 1.7976931348623157e308}',
]


@pytest.mark.parametrize("body", EDGE_BODIES, ids=range(len(EDGE_BODIES)))
def test_parse_body_reads_edge_cases_as_the_standard_library(body: bytes) -> None:
    expected, got = stdlib_reading(body), service_reading(body)
    assert got[0] == expected[0], (body[:80], got, expected)
    assert same(got[1], expected[1])


def test_parse_body_keeps_a_number_beyond_64_bits_exact() -> None:
    assert parse_body(b'{"n": 123456789012345678901234567890}')["n"] == 123456789012345678901234567890


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None, database=None)
@given(st.dictionaries(st.text(max_size=8), json_values, max_size=5), st.booleans())
def test_parse_body_agrees_with_the_standard_library_on_any_json_object(value: dict, ascii_only: bool) -> None:
    body = json.dumps(value, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")
    expected, got = stdlib_reading(body), service_reading(body)
    assert got[0] == expected[0]
    assert same(got[1], expected[1])


@settings(max_examples=300, deadline=None, database=None)
@given(st.binary(max_size=60), st.sampled_from([b'{"a": ', b'{"a": "', b'{"a": [1, ', b'{']))
def test_parse_body_agrees_with_the_standard_library_on_any_bytes(tail: bytes, head: bytes) -> None:
    body = head + tail
    expected, got = stdlib_reading(body), service_reading(body)
    assert got[0] == expected[0], (body, got, expected)
    assert same(got[1], expected[1])


@pytest.fixture(scope="module")
def plain_client():
    """The service as configured, without the test suite's response checks (the body here
    carries an element R4 does not know, on purpose)."""
    from cds_service import create_app

    return create_app({"TESTING": True, "AUTH_ENABLED": False, "AUDIT_ENABLED": False}).test_client()


@pytest.mark.parametrize("depth", [400, 600, 900, 970, 980, 990, 1000, 1010, 1020, 1030, 1100, 3000])
def test_a_deeply_nested_in_scope_request_gets_a_card_or_a_400_never_a_500(plain_client, depth):
    """orjson reads 1,024 levels; the standard library and the service's own walks fewer: a
    body nested between the two must still get the 400 it got before, not an internal error."""
    source = REQUESTS / "13-depression-ketamine-f33.json"
    deep = "[" * depth + '"ketamine"' + "]" * depth
    body = json.dumps(json.loads(source.read_bytes())).replace(
        '"resourceType": "MedicationRequest"',
        '"resourceType": "MedicationRequest", "modifierExtension": [{"url": "x", "valueX": ' + deep + "}]", 1)
    response = plain_client.post("/cds-services/iv-anesthetics-order-sign", data=body.encode(),
                           content_type="application/json")
    assert response.status_code in (200, 400), response.get_data(as_text=True)[:200]
    if response.status_code == 400:
        assert "nested too deeply" in response.get_data(as_text=True)
