"""The compiled envelope check (jsonschema-rs) never lets through what the reference validator refuses."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cds_service.errors import ApiError
from cds_service.hook_request import _compiled_validator, _validator, envelope_errors, parse_body

REQUESTS = Path(__file__).resolve().parent.parent / "fhir_fixtures" / "hook-requests"


def _load(path: Path):
    return parse_body(path.read_bytes())


def _parseable(path: Path) -> bool:
    try:
        _load(path)
    except ApiError:  # refused before the envelope is checked (not JSON, UTF-16, 5000 digits ...)
        return False
    return True


FIXTURES = sorted(p for p in REQUESTS.glob("*.json") if _parseable(p))


@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: p.name)
def test_compiled_check_agrees_with_reference_on_every_fixture(path):
    data = _load(path)
    reference_valid = not list(_validator().iter_errors(data))
    assert _compiled_validator().is_valid(data) == reference_valid
    assert (envelope_errors(data) == []) == reference_valid


BASE = _load(REQUESTS / "26-etodolac-oral-sandbox-shape.json")
ODD_VALUES = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=3),
                       st.lists(st.integers(), max_size=2), st.dictionaries(st.text(max_size=2), st.none(), max_size=2))
PATHS = [("hook",), ("hookInstance",), ("fhirServer",), ("context",), ("context", "userId"),
         ("context", "patientId"), ("context", "encounterId"), ("context", "selections"),
         ("context", "draftOrders"), ("context", "draftOrders", "resourceType"),
         ("context", "draftOrders", "entry"), ("prefetch",), ("fhirAuthorization",)]


@settings(max_examples=300, deadline=None)
@given(path=st.sampled_from(PATHS), value=ODD_VALUES, delete=st.booleans())
def test_compiled_check_never_accepts_an_envelope_the_reference_refuses(path, value, delete):
    data = copy.deepcopy(BASE)
    target = data
    for key in path[:-1]:
        target = target[key]
    if delete:
        target.pop(path[-1], None)
    else:
        target[path[-1]] = value
    reference_errors = list(_validator().iter_errors(data))
    if reference_errors:
        assert envelope_errors(data), "a broken envelope passed the compiled check"
        assert not _compiled_validator().is_valid(data)
    else:
        assert envelope_errors(data) == []


def test_a_value_the_compiled_check_cannot_read_falls_back_to_the_reference():
    data = copy.deepcopy(BASE)
    data["context"]["userId"] = 10**400  # beyond any native integer: the reference words the 400
    errors = envelope_errors(data)
    assert [e.validator for e in errors] == ["type"]
