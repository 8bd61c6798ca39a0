"""Coverage-information assertions (CRD 2.0.1 ext-coverage-information), pure.

One assertion per (in-scope order, Coverage whose payer's policy made the decision). The
decision table is in the README section "Da Vinci CRD"; in short:

- ``warning`` (the order's coded indication is on the policy's experimental list):
  ``covered = not-covered`` (no ``pa-needed``: crd-ci-q2 as its description states it).
- every other known kind: no coverage ruling from this policy, so never ``covered`` and never
  ``not-covered``: ``covered = conditional``, ``pa-needed = conditional`` and
  ``info-needed = OTH`` (crd-ci-q2, crd-ci-q3), with the reason saying what is needed.
- an unknown kind, a Coverage without an id, or a payer with no policy here: no assertion.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date
from typing import Any

from ..decision import Decision
from ..knowledge import Policy
from ..policy_choice import choose_policy, coverage_applies
from ..resource_index import Resource

EXTENSION_URL = "http://hl7.org/fhir/us/davinci-crd/StructureDefinition/ext-coverage-information"


@dataclass(frozen=True)
class CoverageMatch:
    """A Coverage from the request or the FHIR server, and the policy its payer matched."""

    reference: str  # "Coverage/<id>", as the client knows it
    policy_id: str | None  # None: no policy on file here for this payer


@dataclass(frozen=True)
class Assertion:
    """One kept coverage assertion (found-11)."""

    assertion_id: str
    order_ref: str
    coverage_ref: str
    policy_id: str
    policy_version: str
    decision_kind: str
    covered: str
    extension: dict[str, Any]


def match_coverages(
    coverages: Iterable[Resource] | None,
    policies: dict[str, Policy],
    default_policy_id: str,
    resolve: Callable[[str, Resource], Resource | None],
    patient_id: str | None = None,
) -> tuple[CoverageMatch, ...]:
    """Each of the patient's Coverages in force today with an id, with the policy its payer
    matches (if any)."""
    matches: dict[str, CoverageMatch] = {}
    today = date.today()
    for coverage in coverages or ():
        if not isinstance(coverage, dict) or not coverage_applies(coverage, patient_id, today):
            continue
        if not isinstance(coverage.get("id"), str):
            continue
        reference = f"Coverage/{coverage['id']}"
        choice = choose_policy([coverage], policies, default_policy_id, resolve, when=today, patient_id=patient_id)
        policy_id = choice.policy.id if choice.basis == "coverage" else None
        matches.setdefault(reference, CoverageMatch(reference, policy_id))
    return tuple(matches.values())


_CONDITIONAL_NEEDS = {
    "warning_problem_list": "Diagnosis needed: the order states no indication. The patient's "
                            "problem list shows {indication}, which {policy_name} calls "
                            "experimental/investigational ({section}); document the order's "
                            "indication for a coverage ruling.",
    "undocumented": "Diagnosis needed: the order states no indication. {policy_name} calls IV "
                    "{drug} for chronic pain and psychiatric disorders "
                    "experimental/investigational; document the order's indication for a "
                    "coverage ruling.",
    "indication_unavailable": "Diagnosis needed: the order's indication could not be retrieved "
                              "or is not coded. {policy_name} calls IV {drug} for chronic pain "
                              "and psychiatric disorders experimental/investigational; a coded "
                              "indication is needed for a coverage ruling.",
    "advisory": "Clinical review needed: the indication {indication} may fall under "
                "{section} of {policy_name}, which calls such uses "
                "experimental/investigational; this service gives no coverage ruling on it.",
    "quiet": "No ruling: {policy_name} gives no coverage ruling on this order ({quiet_reason}); "
             "coverage follows the plan's other terms.",
}


def _policy_name(policy: Policy) -> str:
    number = f" {policy.number}" if policy.number else ""
    version = f", version {policy.version}" if policy.version else ""
    return f"{policy.payer_name} medical policy{number} \"{policy.title}\"{version}"


def _indication(decision: Decision) -> str:
    if decision.primary is None:
        return "none documented"
    code = decision.primary.indication.code
    return f"{decision.primary.family.label} ({code.system_name} {code.code})"


def reason_text(decision: Decision) -> str | None:
    """The reason for one assertion, naming plan, policy, version, section and indication."""
    policy = decision.policy_choice.policy
    section = policy.sections.get(decision.section_id or "")
    values = {
        "policy_name": _policy_name(policy),
        "section": f"section \"{section.label}\"" if section else "its chronic pain and "
                                                                   "psychiatric sections",
        "indication": _indication(decision),
        "drug": decision.order.medication.drug.label if decision.order.medication.drug else "anesthetic",
        "quiet_reason": decision.quiet_reason or "outside its experimental list",
    }
    if decision.kind == "warning":
        return ("Not covered: {policy_name}, {section}: IV {drug} for {indication} is "
                "experimental/investigational.").format(**values)
    template = _CONDITIONAL_NEEDS.get(decision.kind)
    return template.format(**values) if template else None


def _code(url: str, code: str) -> dict[str, Any]:
    """A coded sub-extension (value[x] is a FHIR ``code`` bound to a 2.0.1 value set)."""
    return {"url": url, "valueCode": code}


def repetition(decision: Decision, coverage_ref: str, assertion_id: str, today: str) -> dict | None:
    """One ext-coverage-information repetition, or None when this decision asserts nothing."""
    reason = reason_text(decision)
    if reason is None:
        return None
    parts: list[dict[str, Any]] = [{"url": "coverage", "valueReference": {"reference": coverage_ref}}]
    if decision.kind == "warning":
        parts.append(_code("covered", "not-covered"))
    else:
        parts += [_code("covered", "conditional"), _code("pa-needed", "conditional"),
                  _code("info-needed", "OTH")]
    parts += [
        {"url": "reason", "valueCodeableConcept": {"text": reason}},
        {"url": "date", "valueDate": today},
        {"url": "coverage-assertion-id", "valueString": assertion_id},
    ]
    return {"url": EXTENSION_URL, "extension": parts}


def covered_value(extension: dict[str, Any]) -> str:
    return next((p["valueCode"] for p in extension["extension"] if p["url"] == "covered"), "")


def _applies(decision: Decision, match: CoverageMatch) -> bool:
    """An assertion is made only for an order known to be IV: one whose route is not confirmed
    gets the card (fail closed) but no coverage determination on the order."""
    choice = decision.policy_choice
    return (choice.basis == "coverage" and match.policy_id == choice.policy.id
            and decision.order.route.confirmed)


def annotated_order(order: Resource, repetitions: list[dict]) -> dict[str, Any]:
    """The order exactly as received plus our repetitions (ours replace older ones we made
    for the same Coverage)."""
    ours = {r["extension"][0]["valueReference"]["reference"] for r in repetitions}
    resource = dict(order)  # shallow: only "extension" is replaced, nothing nested is changed
    kept = [
        ext for ext in resource.get("extension") or []
        if not (isinstance(ext, dict) and ext.get("url") == EXTENSION_URL
                and _coverage_of(ext) in ours)
    ]
    resource["extension"] = [*kept, *repetitions]
    return resource


def _coverage_of(ext: dict) -> str | None:
    for part in ext.get("extension") or []:
        if isinstance(part, dict) and part.get("url") == "coverage":
            ref = part.get("valueReference")
            return ref.get("reference") if isinstance(ref, dict) else None
    return None


def asserts_coverage(decision: Decision, matches: Iterable[CoverageMatch]) -> bool:
    """Whether :func:`coverage_assertions` makes an assertion for ``decision`` (without making it)."""
    return any(_applies(decision, match) for match in matches) and reason_text(decision) is not None


def coverage_assertions(
    decisions: Iterable[Decision],
    matches: Iterable[CoverageMatch],
    today: str,
    new_id: Callable[[], str],
) -> tuple[list[tuple[Decision, dict[str, Any]]], list[Assertion]]:
    """Per decision with at least one assertion: (decision, annotated MedicationRequest).

    The same Coverage reuses one coverage-assertion-id within a response; different
    Coverages get distinct ids (the Inferno 2.0.1 check).
    """
    matches = tuple(matches)
    ids: dict[str, str] = {}
    annotated: list[tuple[Decision, dict[str, Any]]] = []
    assertions: list[Assertion] = []
    for decision in decisions:
        order_id = decision.order.order.get("id")
        if not isinstance(order_id, str) or not order_id.strip():
            continue  # an update the EHR could not apply: the order has no id to replace it by
        repetitions = []
        for match in matches:
            if not _applies(decision, match):
                continue
            assertion_id = ids.get(match.reference) or ids.setdefault(match.reference, new_id())
            rep = repetition(decision, match.reference, assertion_id, today)
            if rep is None:
                continue
            repetitions.append(rep)
            policy = decision.policy_choice.policy
            assertions.append(Assertion(assertion_id, decision.order.order_ref, match.reference,
                                        policy.id, policy.version, decision.kind,
                                        covered_value(rep), rep))
        if repetitions:
            annotated.append((decision, annotated_order(decision.order.order, repetitions)))
    return annotated, assertions
