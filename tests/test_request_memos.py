"""Small per-process memos on the in-scope path give exactly what the uncached code gives."""

from __future__ import annotations

import hashlib
import importlib
import json

import pytest

from cds_service import card_render, fhir_client, terminology
from cds_service.models import Alert
from cds_service.terminology import ICD10CM, NDC, Code, codings_of

migration_0004 = importlib.import_module(
    "cds_service.migrations.versions.0004_alert_groups_login_throttle_sessions")


_uncached = terminology._read_uncached  # what the cache must give back, read afresh every time


@pytest.fixture
def empty_coding_cache():
    terminology._read_short_coding.cache_clear()
    yield terminology._read_short_coding
    terminology._read_short_coding.cache_clear()


CODINGS = [
    ("urn:oid:2.16.840.1.113883.6.90", "f339", "Major depressive disorder"),
    (ICD10CM, " F33.9 ", ""),
    (NDC, "0409-2051-05", ""),
    (NDC, "04092051", "x"),
    ("http://www.nlm.nih.gov/research/umls/rxnorm", "6130", "ketamine"),
    ("http://example.org", "   ", "blank"),
    ("http://example.org", "a" * 600, ""),  # too long to remember
]


@pytest.mark.parametrize("system, code, display", CODINGS)
def test_a_coding_read_twice_reads_as_the_uncached_reading(empty_coding_cache, system, code, display):
    concept = {"coding": [{"system": system, "code": code, "display": display}]}
    expected = [c for c in [_uncached(system, code, display)] if c is not None]
    assert list(codings_of(concept)) == expected
    assert list(codings_of(json.loads(json.dumps(concept)))) == expected
    cached = empty_coding_cache.cache_info()
    if len(system + code + display) <= terminology.READ_MAX_CHARS:
        assert (cached.currsize, cached.hits) == (1, 1)
    else:  # read every time, never kept
        assert (cached.currsize, cached.hits) == (0, 0)


def test_new_system_aliases_forget_codings_read_under_the_old_ones(empty_coding_cache):
    saved = dict(terminology._ALIASES)
    concept = {"coding": [{"system": "urn:example:icd", "code": "f339"}]}
    try:
        assert next(codings_of(concept)).system == "urn:example:icd"
        terminology.use_system_aliases({**saved, "urn:example:icd": ICD10CM})
        assert next(codings_of(concept)) == Code(ICD10CM, "F33.9")
    finally:
        terminology.use_system_aliases(saved)
    assert next(codings_of(concept)).system == "urn:example:icd"


def test_the_coding_cache_stays_within_its_size_and_still_reads_right(empty_coding_cache):
    size = terminology.READ_CACHE_SIZE
    assert empty_coding_cache.cache_info().maxsize == size
    for n in range(size + 100):
        assert next(codings_of({"coding": [{"system": ICD10CM, "code": f"f3{n}"}]})) == _uncached(ICD10CM, f"f3{n}", "")
    assert empty_coding_cache.cache_info().currsize == size
    # the first ones were let go, and read again the same
    assert next(codings_of({"coding": [{"system": ICD10CM, "code": "f30"}]})) == Code(ICD10CM, "F30")


@pytest.mark.parametrize("url, loopback", [
    ("http://localhost:8080/fhir", True),
    ("http://127.0.0.1/fhir", True),
    ("https://[::1]:9443/r4", True),
    ("http://127.9.9.9/fhir", True),
    ("https://fhir.example.org/r4", False),
    ("http://10.0.0.1/fhir", False),
    ("ftp://127.0.0.1/fhir", False),
    ("http:///no-host", False),
    ("http://127.0.0.1/" + "x" * 5000, True),  # longer than the cache takes: checked each time
    ("https://fhir.example.org/" + "x" * 5000, False),
])
def test_loopback_check_is_the_same_cached_or_not(url, loopback):
    assert fhir_client._is_loopback(url) is loopback
    assert fhir_client.is_loopback_url(url) is loopback
    assert fhir_client.is_loopback_url(url) is loopback


def test_long_urls_are_not_kept_by_the_loopback_cache():
    fhir_client._is_loopback_short_url.cache_clear()
    fhir_client.is_loopback_url("http://127.0.0.1/" + "x" * 5000)
    assert fhir_client._is_loopback_short_url.cache_info().currsize == 0
    fhir_client.is_loopback_url("http://127.0.0.1/fhir")
    assert fhir_client._is_loopback_short_url.cache_info().currsize == 1


@pytest.mark.parametrize("parts", [
    ("MedicationRequest/1", "ketamine", "bcbsmn-ii-271", "psychiatric", "depression", "warning"),
    ("urn:uuid:é\u2028\x7f\"\\\n", None, "p", None, None, "quiet"),
    ("\ud800", "😀", "p", "s", "f", "k"),
])
def test_the_alert_group_key_is_the_key_migration_0004_wrote(parts):
    frozen = hashlib.sha256(json.dumps(list(parts), separators=(",", ":")).encode()).hexdigest()
    assert Alert.key_for(*parts) == frozen == migration_0004._group_key(*parts)


# -- card rendering ---------------------------------------------------------------------------


@pytest.fixture
def empty_escape_cache():
    card_render._escape_short.cache_clear()
    yield card_render._escape_short
    card_render._escape_short.cache_clear()


@pytest.mark.parametrize("text, limit", [
    ("ketamine *50* mg_ml [x] <b>", 200), ("  spaced\n  text ", 60), ("z" * 300, 200), ("", 80),
])
def test_markdown_escaping_is_the_same_cached_or_not(empty_escape_cache, text, limit):
    expected = card_render._escape(text, limit)
    assert card_render.escape_markdown(text, limit) == expected
    assert card_render.escape_markdown(text, limit) == expected
    assert (empty_escape_cache.cache_info().currsize, empty_escape_cache.cache_info().hits) == (1, 1)


def test_long_or_non_text_values_are_escaped_without_the_cache(empty_escape_cache):
    long = "a*" * 400
    assert card_render.escape_markdown(long, 1000) == card_render._escape(long, 1000)
    assert card_render.escape_markdown(42) == "42"
    assert empty_escape_cache.cache_info().currsize == 0


def _depression_decision(app):
    from cds_service.decision import decide
    from cds_service.indications import order_indications
    from cds_service.policy_choice import choose_policy
    from cds_service.resource_index import ResourceIndex
    from cds_service.screening import screen_orders

    from .factories import icd, med_request, rxnorm

    state = app.extensions["cds"]
    index = ResourceIndex()
    order = med_request(rxnorm("238084"), reason=[icd("F33.2")])
    [screened] = screen_orders([(None, order)], None, index.resolve, state.knowledge.medications).in_scope
    return decide(screened, order_indications(order, index.resolve), None,
                  choose_policy([], state.knowledge.policies, "bcbsmn-ii-271", index.resolve),
                  state.knowledge.families)


def test_a_card_changed_by_its_caller_leaves_the_next_card_as_it_was(app):
    """The knowledge-only parts of a card are worked out once; each card gets its own copies."""
    decision, text = _depression_decision(app), app.extensions["cds"].card_text
    first = card_render.render_card(decision, text, "u1")
    pristine = json.loads(json.dumps(first))
    first["source"]["topic"]["code"] = "changed"
    first["source"]["label"] = "changed"
    first["links"][0]["url"] = "changed"
    first["overrideReasons"][0]["display"] = "changed"
    first["extension"]["iv-anesthetics-cds"]["policy"] = "changed"
    assert card_render.render_card(decision, text, "u1") == pristine


def test_other_card_text_gives_cards_in_that_text_not_the_remembered_ones(app):
    from dataclasses import replace

    decision, text = _depression_decision(app), app.extensions["cds"].card_text
    before = card_render.render_card(decision, text, "u1")
    raw = json.loads(json.dumps(text.raw))
    raw["summary"]["warning"] = "Reworded: " + raw["summary"]["warning"]
    raw["lines"]["change"] = "Reworded change line."
    after = card_render.render_card(decision, replace(text, raw=raw), "u1")
    assert after["summary"].startswith("Reworded: ") and not before["summary"].startswith("Reworded")
    assert "Reworded change line." in after["detail"] and "Reworded change line." not in before["detail"]
    assert card_render.render_card(decision, text, "u1") == before
