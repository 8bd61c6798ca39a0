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


# --- versions by date (issue 8 §6) and plans without a policy (§5) ---------------------------

import json  # noqa: E402
import shutil  # noqa: E402
from datetime import date  # noqa: E402
from pathlib import Path  # noqa: E402

from cds_service.knowledge import load_knowledge  # noqa: E402
from cds_service.policy_choice import PolicySettings, order_date  # noqa: E402

CARDS = Path(__file__).resolve().parent.parent / "cards"
MN_COVERAGE = coverage({"display": "Blue Cross and Blue Shield of Minnesota"})


def cards_with_a_second_mn_version(tmp_path, start="2025-01-27"):
    """A tmp copy of cards/ with a synthetic later Minnesota version (never committed as policy)."""
    cards = tmp_path / "cards"
    shutil.copytree(CARDS, cards)
    data = json.loads((cards / "policies" / "bcbsmn-ii-271.json").read_text())
    data["id"] = "bcbsmn-ii-271-synthetic-next"
    data["policy"].update(version="II-271-SYNTHETIC", effective={"start": start, "end": None})
    (cards / "policies" / "bcbsmn-ii-271-synthetic-next.json").write_text(json.dumps(data))
    return cards


def test_the_version_in_effect_on_the_orders_date_is_chosen(tmp_path):
    policies = load_knowledge(cards_with_a_second_mn_version(tmp_path)).policies
    resolve = ResourceIndex().resolve
    old = choose_policy([MN_COVERAGE], policies, "bcbsmn-ii-271", resolve, when=date(2024, 6, 3))
    new = choose_policy([MN_COVERAGE], policies, "bcbsmn-ii-271", resolve, when=date(2025, 1, 27))
    assert (old.policy.id, old.replaced) == ("bcbsmn-ii-271", False)
    assert (new.policy.id, new.replaced) == ("bcbsmn-ii-271-synthetic-next", False)
    default = choose_policy([], policies, "bcbsmn-ii-271", resolve, when=date(2026, 1, 1))
    assert default.policy.id == "bcbsmn-ii-271-synthetic-next"


def test_with_only_the_replaced_version_on_file_it_applies_marked_replaced(policies):
    choice = choose_policy([MN_COVERAGE], policies, "bcbsmn-ii-271", ResourceIndex().resolve,
                           when=date(2025, 1, 27))
    assert choice.policy.id == "bcbsmn-ii-271" and choice.replaced


def test_overlapping_versions_of_one_plan_are_refused(tmp_path):
    with pytest.raises(ValueError, match="overlap"):
        load_knowledge(cards_with_a_second_mn_version(tmp_path, start="2024-01-01"))


def test_order_date_is_authored_on_else_today():
    today = date(2026, 12, 1)
    assert order_date({"authoredOn": "2024-06-03T09:14:00-05:00"}, today) == date(2024, 6, 3)
    assert order_date({"authoredOn": "2024"}, today) == today
    assert order_date({"authoredOn": "not a date"}, today) == today
    assert order_date({}, today) == today


def test_unmatched_payor_gets_no_policy_unless_configured_to_use_the_default(policies):
    medicare = coverage({"display": "Medicare Part B"})
    resolve = ResourceIndex().resolve
    choice = choose_policy([medicare], policies, PolicySettings("bcbsmn-ii-271"), resolve)
    assert (choice.basis, choice.policy.id, choice.plan) == ("unmatched", "none", "Medicare Part B")
    quiet = choose_policy([medicare], policies, PolicySettings("bcbsmn-ii-271", unmatched_card="none"), resolve)
    assert quiet.basis == "unmatched" and not quiet.announce
    fallback = choose_policy([medicare], policies,
                             PolicySettings("bcbsmn-ii-271", default_when="unmatched-coverage"), resolve)
    assert (fallback.basis, fallback.policy.id) == ("default", "bcbsmn-ii-271")


def test_policy_settings_refuse_unknown_values():
    with pytest.raises(ValueError, match="DEFAULT_POLICY_WHEN"):
        PolicySettings("bcbsmn-ii-271", default_when="sometimes")


# --- whose coverage, in force when (fail-open hunt, 2026-12-07) ------------------------------

KANSAS = {"display": "Blue Cross and Blue Shield of Kansas"}
MINNESOTA = {"display": "Blue Cross and Blue Shield of Minnesota"}
ORDERED = date(2026, 5, 21)


def _choose_for(policies, *coverages, patient_id="pt-1", unavailable=()):
    return choose_policy(coverages, policies, "bcbsmn-ii-271", ResourceIndex().resolve, unavailable,
                         when=ORDERED, patient_id=patient_id)


@pytest.mark.parametrize("period", [{"end": "2023-12-31"}, {"end": "2026-04"}, {"start": "2026-06-01"},
                                    {"start": "2027"}], ids=["ended", "ended-month", "not-yet", "not-yet-year"])
def test_coverage_not_in_force_on_the_order_date_is_not_the_plan(policies, period):
    lapsed = dict(coverage(MINNESOTA), id="old", period=period)
    choice = _choose_for(policies, lapsed, coverage(KANSAS))
    assert choice.policy.id == "bcbsks-iv-anesthetics"


@pytest.mark.parametrize("period", [{"start": "2026-01-01", "end": "2026-12-31"}, {"end": "2026-05"},
                                    {"end": "not a date"}, {}], ids=["covers", "month", "unreadable", "open"])
def test_coverage_in_force_or_with_an_unreadable_period_counts(policies, period):
    choice = _choose_for(policies, dict(coverage(KANSAS), period=period))
    assert choice.policy.id == "bcbsks-iv-anesthetics"


def test_another_patients_coverage_is_not_the_plan(policies):
    theirs = dict(coverage(KANSAS), beneficiary={"reference": "Patient/someone-else"})
    ours = dict(coverage(MINNESOTA), beneficiary={"reference": "Patient/pt-1/_history/3"})
    assert _choose_for(policies, theirs, ours).policy.id == "bcbsmn-ii-271"
    assert _choose_for(policies, theirs).basis == "default"


@pytest.mark.parametrize("payor", [{"reference": "Patient/pt-1", "display": "Leanne Pruitt"},
                                   {"type": "RelatedPerson", "display": "Leanne Pruitt"},
                                   {"reference": "#p", "display": "Leanne Pruitt"}],
                         ids=["patient", "related-person", "contained-patient"])
def test_a_person_paying_is_no_plan_and_is_never_named(policies, payor):
    self_pay = dict(coverage(payor), contained=[{"resourceType": "Patient", "id": "p"}],
                    payor=[payor], identifier=[{"value": "MRN-300109"}])
    index = ResourceIndex()
    choice = choose_policy([self_pay], policies, "bcbsmn-ii-271", index.resolve, when=ORDERED, patient_id="pt-1")
    assert choice.basis == "default" and "Leanne" not in choice.explanation and "Leanne" not in choice.plan


def test_unmatched_plan_says_when_other_coverage_could_not_be_read(policies):
    medicare = coverage({"display": "Medicare Part B"})
    choice = _choose_for(policies, medicare, unavailable=["Organization/org-9 (could not be retrieved)"])
    assert choice.basis == "unmatched" and choice.coverage_unknown
    assert "org-9" in choice.explanation
    assert not _choose_for(policies, medicare).coverage_unknown


@pytest.mark.parametrize("kind", [["Organization"], {"text": "Organization"}, 5])
def test_a_payor_type_that_is_not_a_string_is_read_without_failing(policies, kind):
    payor = dict(KANSAS, type=kind)
    assert _choose_for(policies, coverage(payor)).policy.id == "bcbsks-iv-anesthetics"


@pytest.mark.parametrize("period", [{"start": "2026-05-22T00:00:00Z"}, {"end": "2026-05-20T23:30:00-05:00"}],
                         ids=["starts-hours-later-in-utc", "ends-hours-earlier"])
def test_a_period_boundary_with_a_time_gets_a_days_grace(policies, period):
    assert _choose_for(policies, dict(coverage(KANSAS), period=period)).policy.id == "bcbsks-iv-anesthetics"


def test_the_primary_coverage_decides_whatever_order_they_are_sent_in(policies):
    secondary = dict(coverage(KANSAS), id="sec", order=2)
    primary = dict(coverage(MINNESOTA), id="pri", order=1)
    assert _choose_for(policies, secondary, primary).policy.id == "bcbsmn-ii-271"
    assert _choose_for(policies, dict(secondary, order="2"), primary).policy.id == "bcbsmn-ii-271"
    unordered = dict(coverage(KANSAS), id="un")
    assert _choose_for(policies, unordered, dict(coverage(MINNESOTA), id="mn")).policy.id == "bcbsks-iv-anesthetics"
