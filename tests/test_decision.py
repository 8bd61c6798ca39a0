"""Indication classification and the per-order decision (pure functions, no Flask request)."""

from __future__ import annotations

import pytest

from cds_service.decision import decide
from cds_service.indications import IndicationCode, OrderIndications, ReasonProcedure, assess, classify_code
from cds_service.policy_choice import PolicyChoice
from cds_service.resource_index import ResourceIndex
from cds_service.screening import screen_orders
from cds_service.terminology import ICD10CM, SNOMED, Code

from .factories import med_request, rxnorm


@pytest.fixture(scope="module")
def knowledge(app):
    return app.extensions["cds"].knowledge


@pytest.fixture(scope="module")
def choice(knowledge):
    return PolicyChoice(knowledge.policies["bcbsmn-ii-271"], "default", "default policy applied")


def icd_code(code: str, source: str = "reasonCode") -> IndicationCode:
    return IndicationCode(Code(ICD10CM, code), source)


def screened(knowledge, code="238084"):
    index = ResourceIndex()
    result = screen_orders([(None, med_request(rxnorm(code)))], None, index.resolve, knowledge.medications)
    return result.in_scope[0]


def test_classification_by_index_ranks_as_value_set_specificity_does(knowledge):
    """The look-up index classify_code builds gives the family the ranking by
    ValueSetMatcher.specificity gives, for every code of the value sets, each of its prefixes
    and longer codes below it, and the same codes in another system."""
    from cds_service.indications import _classify_by_scan

    families = knowledge.families
    seen = {key for f in families for key in (*f.valueset.concepts, *f.valueset.is_a)}
    codes = [Code("urn:other", code) for _, code in seen]
    for system, code in seen:
        codes += [Code(system, code[:n]) for n in range(len(code) + 1)]
        codes += [Code(system, code + tail) for tail in ("0", "9", "1X", ".", "A")]
    assert len(codes) > 1000
    assert [classify_code(c, families) for c in codes] == [_classify_by_scan(c, families) for c in codes]
    assert sum(classify_code(c, families) is not None for c in codes) > 500


@pytest.mark.parametrize("code,family", [
    ("G90.511", "crps"), ("G56.41", "crps"), ("B02.29", "postherpetic_neuralgia"),
    ("E11.42", "diabetic_neuropathy"), ("G54.6", "phantom_limb"), ("M79.7", "fibromyalgia"),
    ("G89.4", "chronic_pain_general"), ("G89.0", "central_pain_post_stroke"),
    ("G43.709", "chronic_migraine"), ("G43.909", "migraine_any"), ("G44.229", "chronic_daily_headache"),
    ("F33.2", "depression"), ("F31.81", "bipolar"), ("F42.2", "ocd"), ("F43.12", "ptsd"),
    ("I47.20", "ventricular_arrhythmia"), ("G89.3", "cancer_pain"), ("G89.18", "acute_pain"),
])
def test_icd10cm_codes_classify_into_the_most_specific_family(knowledge, code, family):
    assert classify_code(Code(ICD10CM, code), knowledge.families).id == family


def test_undotted_icd10cm_codes_are_normalised(knowledge):
    from cds_service.terminology import normalize_code
    assert classify_code(Code(ICD10CM, normalize_code(ICD10CM, "g90511")), knowledge.families).id == "crps"


def test_snomed_codes_classify(knowledge):
    assert classify_code(Code(SNOMED, "47505003"), knowledge.families).id == "ptsd"


def test_ventricular_arrhythmia_is_exempt_for_lidocaine_but_not_an_indication_for_ketamine(knowledge):
    assert assess([icd_code("I47.20")], knowledge.families, "lidocaine").outcome == "exempt"
    assert assess([icd_code("I47.20")], knowledge.families, "ketamine").outcome == "none"


def test_an_exempt_use_on_the_order_silences_other_reasons(knowledge):
    result = assess([icd_code("G89.3"), icd_code("G89.4")], knowledge.families, "ketamine")
    assert result.outcome == "exempt"


def test_spinal_cord_injury_alone_in_acute_phase_does_not_warn(knowledge):
    assert assess([icd_code("S14.101A")], knowledge.families, "ketamine").outcome == "none"


def test_spinal_cord_injury_sequela_warns(knowledge):
    result = assess([icd_code("S14.101S")], knowledge.families, "ketamine")
    assert result.outcome == "warn" and result.primary.family.id == "spinal_cord_injury_pain"


def test_chronic_pain_with_spinal_cord_injury_names_the_injury_family(knowledge):
    result = assess([icd_code("G89.29"), icd_code("S14.101A")], knowledge.families, "ketamine",
                    evidence_families=["spinal_cord_injury_pain"])
    assert result.primary.family.id == "spinal_cord_injury_pain"


def test_including_but_not_limited_to_families_give_an_advisory(knowledge):
    result = assess([icd_code("G50.0")], knowledge.families, "ketamine")
    assert result.outcome == "advisory" and result.primary.family.id == "other_neuropathic_pain"


def test_order_with_policy_indication_warns(knowledge, choice):
    decision = decide(screened(knowledge), OrderIndications((icd_code("F33.2"),), (), ()), None, choice,
                      knowledge.families)
    assert (decision.kind, decision.indicator, decision.section_id) == ("warning", "warning", "psychiatric")


def _procedure(code: str, name: str) -> ReasonProcedure:
    source = "reasonReference Procedure/p1"
    return ReasonProcedure(source, (IndicationCode(Code(SNOMED, code), source),), name)


def test_order_whose_reason_is_an_anesthesia_procedure_stays_quiet(knowledge, choice):
    anesthesia = _procedure("50697003", "General anesthesia")  # indication-anesthesia_sedation.json
    decision = decide(screened(knowledge), OrderIndications((), (anesthesia,), ()), None, choice,
                      knowledge.families)
    assert decision.kind == "quiet" and "procedure" in decision.quiet_reason


def test_a_procedure_coded_as_no_approved_use_does_not_silence_a_psychiatric_reason(knowledge, choice):
    other = ReasonProcedure("reasonReference Procedure/p1", (), "Ketamine infusion")
    decision = decide(screened(knowledge), OrderIndications((icd_code("F33.2"),), (other,), ()), None, choice,
                      knowledge.families)
    assert decision.kind == "warning" and decision.family.id == "depression"


def test_a_procedure_without_an_approved_use_code_alone_is_read_as_an_uncoded_reason(knowledge, choice):
    other = ReasonProcedure("reasonReference Procedure/p1", (), "Ketamine infusion")
    decision = decide(screened(knowledge), OrderIndications((), (other,), ()), None, choice, knowledge.families)
    assert decision.kind == "uncoded_reason" and decision.fires


def test_documented_indication_outside_the_policy_stays_quiet(knowledge, choice):
    decision = decide(screened(knowledge), OrderIndications((icd_code("I10"),), (), ()), None, choice,
                      knowledge.families)
    assert decision.kind == "quiet"


def test_undocumented_order_warns_from_the_problem_list(knowledge, choice):
    problems = [icd_code("I10", "problem list"), icd_code("F32.2", "problem list")]
    decision = decide(screened(knowledge), OrderIndications((), (), ()), problems, choice, knowledge.families)
    assert decision.kind == "warning_problem_list" and decision.family.id == "depression"


def test_undocumented_order_with_unrelated_problem_list_asks_for_the_indication(knowledge, choice):
    decision = decide(screened(knowledge), OrderIndications((), (), ()), [icd_code("I10")], choice,
                      knowledge.families)
    assert (decision.kind, decision.indicator) == ("undocumented", "info")


def test_problem_list_exemptions_do_not_silence_an_undocumented_order(knowledge, choice):
    problems = [icd_code("I47.20"), icd_code("F32.2")]
    decision = decide(screened(knowledge, "1010033"), OrderIndications((), (), ()), problems, choice,
                      knowledge.families)
    assert decision.kind == "warning_problem_list"


def test_unresolvable_reason_is_reported_not_silenced(knowledge, choice):
    decision = decide(screened(knowledge), OrderIndications((), (), ("Condition/x",)), [], choice,
                      knowledge.families)
    assert decision.kind == "indication_unavailable"
    assert any("Condition/x" in m for m in decision.missing)


def test_unavailable_problem_list_is_said_in_the_decision(knowledge, choice):
    decision = decide(screened(knowledge), OrderIndications((), (), ()), None, choice, knowledge.families)
    assert decision.kind == "undocumented" and "problem list" in decision.missing[0]


def test_part_of_a_problem_list_without_a_policy_condition_is_said_in_the_decision(knowledge, choice):
    decision = decide(screened(knowledge), OrderIndications((), (), ()), [icd_code("I10")], choice,
                      knowledge.families, ("part of the active conditions",), problem_list_partial=True)
    assert (decision.kind, decision.problem_list_partial, decision.problem_list_unavailable) == (
        "undocumented", True, False)


def test_a_policy_condition_on_part_of_the_problem_list_still_warns(knowledge, choice):
    decision = decide(screened(knowledge), OrderIndications((), (), ()), [icd_code("F32.2")], choice,
                      knowledge.families, ("part of the active conditions",), problem_list_partial=True)
    assert decision.kind == "warning_problem_list" and decision.family.id == "depression"


def test_reason_coded_only_in_an_unknown_system_is_uncoded_and_named(knowledge, choice):
    from cds_service.indications import order_indications
    order = med_request(rxnorm("238084"), reason=[{"coding": [
        {"system": "urn:oid:1.2.840.114350.1.13.0.1.7.2.728286", "code": "9", "display": "Fibromyalgia"}]}])
    indications = order_indications(order, ResourceIndex().resolve)
    assert indications.codes == () and indications.uncoded[0].name == "Fibromyalgia"
    decision = decide(screened(knowledge), indications, None, choice, knowledge.families)
    assert decision.kind == "uncoded_reason" and decision.indicator == "info"
    assert decision.uncoded[0].family.id == "fibromyalgia"


def test_a_coded_reason_outside_the_policy_beside_an_unknown_one_still_gives_a_card(knowledge, choice):
    from cds_service.indications import UncodedReason
    indications = OrderIndications((icd_code("I10"),), (), (), (UncodedReason("PHN", "reasonCode"),))
    decision = decide(screened(knowledge), indications, None, choice, knowledge.families)
    assert decision.kind == "uncoded_reason" and decision.uncoded[0].family.id == "postherpetic_neuralgia"


@pytest.mark.parametrize("text,family", [
    ("Bipolar depression", "bipolar"), ("treatment-resistant depression", "depression"),
    ("CRPS, left arm", "crps"), ("post-traumatic stress disorder", "ptsd"), ("hypertension", None),
    ("photosensitivity", None),  # no whole-word match inside another word
])
def test_reason_words_name_the_most_specific_family(knowledge, text, family):
    from cds_service.indications import family_named_in
    found = family_named_in(text, knowledge.families)
    assert (found.id if found else None) == family


def test_unmatched_plan_turns_a_warning_into_a_no_policy_card(knowledge):
    from cds_service.policy_choice import PolicyChoice, no_policy_on_file
    unmatched = PolicyChoice(no_policy_on_file("Medicare Part B"), "unmatched", "no match", plan="Medicare Part B")
    decision = decide(screened(knowledge), OrderIndications((icd_code("F33.2"),), (), ()), None, unmatched,
                      knowledge.families)
    assert (decision.kind, decision.indicator) == ("no_policy", "info")
    exempt = decide(screened(knowledge), OrderIndications((), (_procedure("50697003", "General anesthesia"),), ()),
                    None, unmatched, knowledge.families)
    assert exempt.kind == "quiet"


def test_two_policy_indications_are_both_named(knowledge, choice):
    decision = decide(screened(knowledge), OrderIndications((icd_code("F33.2"), icd_code("G90.511")), (), ()),
                      None, choice, knowledge.families)
    assert [m.family.id for m in decision.named] == ["depression", "crps"]


def test_problem_list_classification_reuses_one_index_instead_of_building_one_per_call(knowledge):
    from cds_service import indications
    from cds_service.decision import _flagging_families

    flagging = _flagging_families(knowledge.families)
    assert flagging is _flagging_families(knowledge.families)
    indications._FAMILY_INDEXES.clear()
    for _ in range(100):
        classify_code(Code(ICD10CM, "F33.1"), _flagging_families(knowledge.families))
        classify_code(Code(ICD10CM, "F33.1"), knowledge.families)
    assert len(indications._FAMILY_INDEXES) == 2
