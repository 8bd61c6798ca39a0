"""The raw-byte scan that lets most order-sign calls skip all model parsing."""

from __future__ import annotations

import json

import pytest


@pytest.fixture(scope="module")
def scanner(app):
    return app.extensions["cds"].knowledge.scanner


@pytest.mark.parametrize("raw", [
    b'{"text": "KETAMINE 50 mg/mL"}',
    b'{"text": "Xylocaine 1%"}',
    b'{"code": "238084"}',
    b'{"code":"00409205105"}',
    b'{"code": "00409-2051-05"}',
    b'{"code": "j2002"}',
    b'{"medicationReference": {"reference": "Medication/123"}}',
    b'{"code": 238084}',  # malformed (a number), but the full path must answer it: 400
    b'{"code" :  238084, "system": "http://www.nlm.nih.gov/research/umls/rxnorm"}',
    b'{"medication": {"reference": {"reference": "Medication/123"}}}',  # R5's CodeableReference
])
def test_any_hint_of_a_target_drug_is_found(scanner, raw):
    assert scanner.mentions_target(raw)


@pytest.mark.parametrize("raw", [
    b'{"code": "199390", "display": "Etodolac 500 MG Oral Tablet"}',
    b'{"code": "J3490"}',  # unclassified drug: not a hint by itself
    b'{"value": 238084}',  # a number, not a code string
    b'{"code": "2380841"}',
    b'{"code": 2380841}',
    b'{"code": 199390}',
])
def test_unrelated_bodies_are_not_hints(scanner, raw):
    assert not scanner.mentions_target(raw)


def test_an_ndc_hyphenated_in_a_non_standard_way_is_still_a_hint(scanner):
    """Screening reads an NDC as its 11 digits whatever its hyphens, so the scan must too."""
    ndc = next(c.decode() for c in sorted(scanner.codes) if c.isdigit() and len(c) == 11)
    for spelling in (f"{ndc[:10]}-{ndc[10]}", f"{ndc[:5]}--{ndc[5:9]}-{ndc[9:]}", f"{ndc[0]}-{ndc[1:]}"):
        raw = json.dumps({"coding": [{"system": "http://hl7.org/fhir/sid/ndc", "code": spelling}]}).encode()
        assert scanner.mentions_target(raw), spelling
        assert scanner.mentions_target(raw.replace(b'"coding"', "\"cödïng\"".encode())), spelling  # text path
