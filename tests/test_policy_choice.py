"""Choosing the payer policy from Coverage."""

from __future__ import annotations

import pytest

from cds_service.policy_choice import choose_policy, normalize_name
from cds_service.resource_index import ResourceIndex


@pytest.fixture(scope="module")
def policies(app):
    return app.extensions["cds"].knowledge.policies


def coverage(*payors, status="active"):
    return {"resourceType": "Coverage", "id": "cov", "status": status, "payor": list(payors)}


def choose(policies, *coverages, index=None):
    index = index or ResourceIndex()
    return choose_policy(coverages, policies, "bcbsmn-ii-271", index.resolve)


def test_payor_display_matches_a_policy_regardless_of_case_and_ampersand(policies):
    choice = choose(policies, coverage({"display": "BLUE CROSS & BLUE SHIELD OF KANSAS"}))
    assert choice.policy.id == "bcbsks-iv-anesthetics" and choice.basis == "coverage"


def test_payor_reference_is_resolved_to_the_organization_name(policies):
    index = ResourceIndex()
    index.add({"resourceType": "Organization", "id": "org1", "name": "Blue Cross and Blue Shield of Kansas"})
    choice = choose(policies, coverage({"reference": "Organization/org1"}), index=index)
    assert choice.policy.id == "bcbsks-iv-anesthetics"


def test_a_different_plan_with_a_similar_name_is_not_matched(policies):
    choice = choose(policies, coverage({"display": "Blue Cross and Blue Shield of Kansas City"}))
    assert choice.basis == "unmatched"
    assert choice.policy.payer_name == "Blue Cross and Blue Shield of Kansas City"


def test_inactive_coverage_is_ignored(policies):
    choice = choose(policies, coverage({"display": "Blue Cross and Blue Shield of Kansas"}, status="cancelled"))
    assert choice.policy.id == "bcbsmn-ii-271" and choice.basis == "default"


def test_no_coverage_applies_the_default_and_says_so(policies):
    choice = choose(policies)
    assert choice.basis == "default" and "default" in choice.explanation


def test_name_normalisation():
    assert normalize_name(" Blue Cross & Blue Shield of Minnesota ") == "blue cross and blue shield of minnesota"
