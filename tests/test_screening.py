"""Which orders are in scope: IV, single-ingredient ketamine or lidocaine injectables."""

from __future__ import annotations

import pytest

from cds_service.resource_index import ResourceIndex
from cds_service.screening import classify_medication_concept, screen_orders

from .factories import IM, hcpcs, med_request, rxnorm


@pytest.fixture(scope="module")
def rules(app):
    return app.extensions["cds"].knowledge.medications


def screen(rules, *orders, selections=None, index=None):
    index = index or ResourceIndex()
    return screen_orders([(None, o) for o in orders], selections, index.resolve, rules)


def test_iv_ketamine_product_is_in_scope(rules):
    result = screen(rules, med_request(rxnorm("238084")))
    assert [o.medication.drug.id for o in result.in_scope] == ["ketamine"]
    assert "47625008" in result.in_scope[0].route.explanation


def test_intramuscular_ketamine_is_out_of_scope(rules):
    assert not screen(rules, med_request(rxnorm("238084"), route=IM)).in_scope


def test_injectable_without_route_but_with_infusion_rate_counts_as_iv(rules):
    result = screen(rules, med_request(rxnorm("238084"), route=None, rate=True))
    assert result.in_scope and "infusion rate" in result.in_scope[0].route.explanation


def test_injectable_without_route_or_rate_is_in_scope_with_the_route_not_confirmed(rules):
    # Nothing says how it is given, so IV use is not ruled out: fail closed, and say so.
    [order] = screen(rules, med_request(rxnorm("238084"), route=None)).in_scope
    assert order.route.confirmed is False and "IV use not ruled out" in order.route.explanation


def test_ingredient_code_without_route_is_not_confirmed_iv_even_with_rate(rules):
    # IN 6130 says nothing about the dose form, so a rate alone does not make it an IV product.
    [order] = screen(rules, med_request(rxnorm("6130", "ketamine"), route=None, rate=True)).in_scope
    assert order.route.confirmed is False


@pytest.mark.parametrize("route", [
    {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-RouteOfAdministration", "code": "IVINFUS"}]},
    {"coding": [{"system": "urn:oid:1.2.840.114350.1.13.0.1.7.4.698288.330", "code": "11"}]},
    {"text": "Central line"},
], ids=["v3-code-not-in-the-value-sets", "local-code-without-display", "unknown-text"])
def test_unreadable_route_without_rate_is_in_scope_with_the_route_not_confirmed(rules, route):
    order = med_request(rxnorm("238084"), route=route)
    [screened] = screen(rules, order).in_scope
    assert screened.route.confirmed is False and "route not recognised" in screened.route.explanation


def test_dosage_text_naming_iv_confirms_the_route_when_no_route_element_is_given(rules):
    order = med_request(rxnorm("238084"), route=None)
    order["dosageInstruction"] = [{"text": "0.5 mg/kg IV over 40 minutes"}]
    [screened] = screen(rules, order).in_scope
    assert screened.route.confirmed is True and "dosage text" in screened.route.explanation


def test_a_stated_non_iv_route_stays_out_of_scope(rules):
    order = med_request(rxnorm("238084"), route={"coding": [{"system": "http://snomed.info/sct", "code": "78421000"}]})
    assert not screen(rules, order).in_scope


def test_premixed_lidocaine_bag_without_route_counts_as_iv(rules):
    result = screen(rules, med_request(rxnorm("1737742"), route=None))
    assert result.in_scope and "premixed IV bag" in result.in_scope[0].route.explanation


@pytest.mark.parametrize("code,what", [
    ("2119381", "esketamine nasal spray"),
    ("1745091", "lidocaine patch"),
    ("1010751", "lidocaine with epinephrine"),
])
def test_excluded_products_stay_out_even_with_an_iv_route(rules, code, what):
    finding = classify_medication_concept(rxnorm(code), rules)
    assert finding.status == "excluded", what
    assert not screen(rules, med_request(rxnorm(code))).in_scope


def test_hcpcs_lidocaine_jcode_identifies_lidocaine(rules):
    concept = {"coding": [hcpcs("J2002")]}
    result = screen(rules, med_request(concept))
    assert result.in_scope[0].medication.drug.id == "lidocaine"


def test_unclassified_drug_jcode_alone_does_not_identify_a_drug(rules):
    assert classify_medication_concept({"coding": [hcpcs("J3490")]}, rules).status == "other"


def test_jcode_beside_rxnorm_is_accepted_as_supporting(rules):
    concept = {"coding": [*rxnorm("1737742")["coding"], hcpcs("J2002")]}
    finding = classify_medication_concept(concept, rules)
    assert finding.status == "target" and finding.matched.code == "1737742"


def test_free_text_ketamine_injection_with_iv_route_is_in_scope(rules):
    result = screen(rules, med_request({"text": "Ketamine 50 mg/mL injection"}))
    assert result.in_scope[0].medication.drug.id == "ketamine"


def test_free_text_esketamine_is_excluded(rules):
    assert classify_medication_concept({"text": "Esketamine 28 mg nasal"}, rules).status == "excluded"


def test_route_given_as_text_iv_counts(rules):
    assert screen(rules, med_request(rxnorm("238084"), route={"text": "IV"})).in_scope


def test_other_drugs_are_ignored(rules):
    assert not screen(rules, med_request(rxnorm("199390", "Etodolac 500 MG Oral Tablet"))).in_scope


def test_contained_medication_is_resolved(rules):
    order = med_request(None, contained=[{"resourceType": "Medication", "id": "m1",
                                          "code": rxnorm("238084")}],
                        medicationReference={"reference": "#m1"})
    assert screen(rules, order).in_scope


def test_unresolvable_medication_reference_is_reported(rules):
    order = med_request(None, medicationReference={"reference": "Medication/nowhere"})
    result = screen(rules, order)
    assert result.unresolved == (("MedicationRequest/mr1", "Medication/nowhere"),)


def test_order_select_only_screens_the_selected_orders(rules):
    a = med_request(rxnorm("238084"), id="a")
    b = med_request(rxnorm("238084"), id="b")
    result = screen(rules, a, b, selections=("MedicationRequest/b",))
    assert [o.order_ref for o in result.in_scope] == ["MedicationRequest/b"]


def test_cancelled_orders_are_skipped(rules):
    assert not screen(rules, med_request(rxnorm("238084"), status="cancelled")).in_scope
