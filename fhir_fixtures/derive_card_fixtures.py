"""Derive the card-content fixtures (other payers, replaced versions, local codes, evidence for the
ordered drug, several indications) from fixtures made by generate.py, and list them in expected.json.

Run from the repository root after generate.py:  python fhir_fixtures/derive_card_fixtures.py
Deterministic: each fixture is an existing one with the named fields changed. Codes are those of
the source fixtures; the local code system OID is an Epic-style customer OID (1.2.840.114350...).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

REQ_DIR = Path(__file__).resolve().parent / "hook-requests"
SIGN = "iv-anesthetics-order-sign"
MDD_ORDER = "MedicationRequest/mr-ket-mdd-13"
LOCAL_DX_SYSTEM = "urn:oid:1.2.840.114350.1.13.0.1.7.2.728286"


def load(name: str) -> dict:
    return json.loads((REQ_DIR / name).read_text(encoding="utf-8"))


def order_of(request: dict) -> dict:
    return request["context"]["draftOrders"]["entry"][0]["resource"]


def card(indicator: str, policy: str, section: str | None, family: str | None, basis: str, order: str) -> dict:
    return {"indicator": indicator, "policy": policy, "section": section, "family": family,
            "basis": basis, "order": order}


def build() -> list[tuple[str, dict, dict]]:
    out: list[tuple[str, dict, dict]] = []

    medicare = load("13-depression-ketamine-f33.json")
    coverage = medicare["prefetch"]["coverage"]["entry"][0]["resource"]
    coverage["payor"] = [{"display": "Medicare Part B"}]
    out.append(("c01-ketamine-depression-medicare-part-b.json", medicare, {
        "outcome": "info-no-policy",
        "cards": [card("info", "none", "psychiatric", "depression", "no-policy", "MedicationRequest/mr-ket-mdd-13")],
        "note": "As 13, but the active Coverage's payor is Medicare Part B: no bundled policy, so an info "
                "card names the plan and states no other plan's ruling (UNMATCHED_PAYER_CARD=info)."}))

    local = load("01-crps-ketamine-reasoncode.json")
    order_of(local)["reasonCode"] = [{"coding": [{"system": LOCAL_DX_SYSTEM, "code": "1018374",
                                                  "display": "Fibromyalgia"}], "text": "Fibromyalgia"}]
    out.append(("c02-ketamine-local-code-fibromyalgia.json", local, {
        "outcome": "info-uncoded",
        "cards": [card("info", "bcbsmn-ii-271", None, None, "uncoded", "MedicationRequest/mr-ket-crps-01")],
        "note": "As 01, but the reason is coded only in a local EHR code system (display and text "
                "'Fibromyalgia'): an info card says it reads as a chronic-pain indication; code it to confirm."}))

    before = load("13-depression-ketamine-f33.json")
    order_of(before)["authoredOn"] = "2024-06-03T09:14:00-05:00"
    out.append(("c03-ketamine-depression-authored-before-mn-replacement.json", before, {
        "outcome": "fires-psych",
        "cards": [card("warning", "bcbsmn-ii-271", "psychiatric", "depression", "order", MDD_ORDER)],
        "note": "As 13, authored 2024-06-03, before the Minnesota version on file was replaced "
                "(2025-01-27): the card does not say it was replaced. 13 itself (2026-05-21) does."}))

    lidocaine = load("13-depression-ketamine-f33.json")
    lido_order = order_of(lidocaine)
    lido_order["medicationCodeableConcept"] = copy.deepcopy(
        order_of(load("03-phn-lidocaine-prefetch-condition.json"))["medicationCodeableConcept"])
    lido_order["dosageInstruction"] = copy.deepcopy(
        order_of(load("03-phn-lidocaine-prefetch-condition.json"))["dosageInstruction"])
    out.append(("c04-lidocaine-depression.json", lidocaine, {
        "outcome": "fires-psych",
        "cards": [card("warning", "bcbsmn-ii-271", "psychiatric", "depression", "order", MDD_ORDER)],
        "note": "IV lidocaine (the product and dosage of 03) for depression (F33.2): the policy cites only "
                "ketamine studies for depression, and the card says so."}))

    both = load("31-no-reason-problem-list-depression.json")
    entries = both["prefetch"]["conditions"]["entry"]
    crps = copy.deepcopy(entries[-1])
    crps["fullUrl"] = crps["fullUrl"].rsplit("/", 1)[0] + "/cond-crps-c05"
    crps["resource"]["id"] = "cond-crps-c05"
    crps["resource"]["code"] = copy.deepcopy(order_of(load("01-crps-ketamine-reasoncode.json"))["reasonCode"][0])
    entries.append(crps)
    both["prefetch"]["conditions"]["total"] = len(entries)
    expected31 = next(c for c in json.loads((REQ_DIR / "expected.json").read_text())["fixtures"]
                      if c["file"] == "31-no-reason-problem-list-depression.json")
    out.append(("c05-no-reason-problem-list-depression-and-crps.json", both, {
        "outcome": expected31["outcome"],
        "cards": copy.deepcopy(expected31["cards"]),
        "note": "As 31, with CRPS (G90.511) also on the problem list: the card names both indications "
                "as experimental/investigational."}))
    return out


def main() -> None:
    manifest_path = REQ_DIR / "expected.json"
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    listed = {c["file"] for c in manifest["fixtures"]}
    for name, request, expected in build():
        (REQ_DIR / name).write_text(json.dumps(request, indent=2) + "\n", encoding="utf-8")
        if name not in listed:
            manifest["fixtures"].append({"file": name, "service": SIGN, "status": 200, **expected})
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
