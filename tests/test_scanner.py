"""The raw-byte scan that lets most order-sign calls skip all model parsing."""

from __future__ import annotations

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
])
def test_any_hint_of_a_target_drug_is_found(scanner, raw):
    assert scanner.mentions_target(raw)


@pytest.mark.parametrize("raw", [
    b'{"code": "199390", "display": "Etodolac 500 MG Oral Tablet"}',
    b'{"code": "J3490"}',  # unclassified drug: not a hint by itself
    b'{"value": 238084}',  # a number, not a code string
    b'{"code": "2380841"}',
])
def test_unrelated_bodies_are_not_hints(scanner, raw):
    assert not scanner.mentions_target(raw)
