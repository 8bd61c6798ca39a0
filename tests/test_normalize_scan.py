"""The JSON-text scan in front of the normalising walk (fhir_shape._may_change) never skips a
change the walk would make: on every fixture, and on variants of them with each kind of change
the walk makes put in at every place it can go."""

from __future__ import annotations

import copy
import json
import random
import sys

import pytest

from cds_service import fhir_shape
from cds_service.fhir_shape import normalize_resource

from .conftest import FIXTURES

REQUESTS = sorted((FIXTURES / "hook-requests").glob("*.json"))


def _walked(value):
    """The walk alone, without the scan in front of it."""
    changes: list[str] = []
    return fhir_shape._normalize(value, "", changes, None), changes


def _parts(path):
    try:
        body = json.loads(path.read_text(encoding="utf-8"))
    except ValueError:
        return []
    if not isinstance(body, dict):
        return []
    context, prefetch = body.get("context") or {}, body.get("prefetch") or {}
    orders = context.get("draftOrders") if isinstance(context, dict) else None
    values = [orders, *(prefetch.values() if isinstance(prefetch, dict) else [])]
    return [v for v in values if isinstance(v, dict | list)]


def _places(value, path=()):
    """Every (path, container) in ``value``."""
    yield path, value
    items = value.items() if isinstance(value, dict) else enumerate(value)
    for key, item in items:
        if isinstance(item, dict | list):
            yield from _places(item, (*path, key))


def _at(value, path):
    for key in path:
        value = value[key]
    return value


def _variants(value):
    """Copies of ``value``, each with one change of a kind the walk makes."""
    whitespace = [" ", "\t", "\n", "\u00a0", "\u2003", "\x1c", "\u3000", "\r\n "]
    for path, container in list(_places(value)):
        if isinstance(container, list):
            for item in container:
                if isinstance(item, dict) and path:  # an array written as its one object
                    variant = copy.deepcopy(value)
                    parent = _at(variant, path[:-1])
                    parent[path[-1]] = copy.deepcopy(item)
                    yield variant
                    break
        elif (path and path[-1] == "coding") or (len(path) > 1 and path[-2] == "coding"):
            for key in ("system", "code"):
                if isinstance(container.get(key), str):
                    for space in whitespace:
                        for text in (space + container[key], container[key] + space):
                            variant = copy.deepcopy(value)
                            _at(variant, path)[key] = text
                            yield variant


def _sure(value):
    result, changes = _walked(value)
    scanned = normalize_resource(value, [])
    assert scanned == result
    if changes:
        assert fhir_shape._may_change(value), changes


@pytest.mark.parametrize("path", REQUESTS, ids=[p.name for p in REQUESTS])
def test_the_scan_lets_the_walk_make_every_change_it_would_make(path):
    for part in _parts(path):
        _sure(part)
        for variant in _variants(part):
            _sure(variant)


def test_clean_fixture_parts_pass_the_scan_unwalked():
    """Most real requests need no change: the scan, not the walk, answers for them."""
    clean = [part for path in REQUESTS for part in _parts(path) if not _walked(part)[1]]
    assert clean and sum(not fhir_shape._may_change(part) for part in clean) >= len(clean) * 0.8


@pytest.mark.parametrize("value", [
    {"resourceType": "MedicationRequest", "category": {"text": "inpatient"}},
    {"resourceType": "Condition", "code": {"coding": {"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "F33.2"}}},
    {"resourceType": "Condition", "evidence": [{"code": {"text": "x"}}]},
    {"resourceType": "Organization", "type": {"text": "payer"}},
    {"resourceType": "MedicationRequest", "dosageInstruction": [{"timing": {"repeat": {"when": {"a": 1}}}}]},
    {"resourceType": "MedicationRequest", "medicationCodeableConcept": {"coding": [{"system": "x", "code": "1\\\t"}]}},
    {"resourceType": "MedicationRequest", "extension": {"url": "http://example.org"}},
    {"resourceType": "Bundle",
     "entry": [{"resource": {"resourceType": "Coverage", "payor": {"reference": "Organization/1"}}}]},
    {"resourceType": "MedicationRequest", "big": 2 ** 70, "category": {"text": "orjson cannot write the integer"}},
    [{"resourceType": "MedicationRequest", "reasonCode": {"text": "in a list"}}],
])
def test_hand_made_cases_are_walked_and_changed(value):
    result, changes = _walked(value)
    assert changes and fhir_shape._may_change(value)
    assert normalize_resource(value) == result


def test_random_single_objects_and_spaces_are_never_missed():
    rng = random.Random(20261203)
    parts = [part for path in REQUESTS for part in _parts(path)]
    for _ in range(300):
        variant = copy.deepcopy(rng.choice(parts))
        places = [(p, c) for p, c in _places(variant) if isinstance(c, list) and p and c and isinstance(c[0], dict)]
        if places:
            path, container = rng.choice(places)
            _at(variant, path[:-1])[path[-1]] = container[0]
        _sure(variant)


@pytest.mark.parametrize("path", REQUESTS, ids=[p.name for p in REQUESTS])
def test_one_scan_of_all_parts_lets_the_walk_change_any_of_them(path):
    parts = _parts(path)
    for i, part in enumerate(parts):
        for variant in [part, *_variants(part)]:
            together = [*parts[:i], variant, *parts[i + 1:]]
            if any(_walked(value)[1] for value in together):
                assert fhir_shape.needs_normalizing(together)


def test_the_scans_whitespace_is_every_character_str_strip_removes():
    everything = {chr(c) for c in range(sys.maxunicode + 1) if chr(c).isspace()}
    assert set(fhir_shape._WHITESPACE) == everything
    assert all((c + "x" + c).strip() == "x" for c in everything)  # what the walk's strip() removes
