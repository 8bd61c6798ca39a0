"""Small per-process memos on the in-scope path give exactly what the uncached code gives."""

from __future__ import annotations

import hashlib
import importlib
import json

import pytest

from cds_service import fhir_client, terminology
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
