"""Find an order's indication and classify it into the policy's indication families."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from .knowledge import QUIET_SECTIONS, WARNING_SECTIONS, Family
from .resource_index import Resource, dicts_in
from .terminology import ICD10CM, Code, codings_of

# ICD-10-CM 7th characters for a later phase of an injury: D subsequent encounter, S sequela.
LATE_PHASE_7TH_CHARACTERS = frozenset({"D", "S"})
INACTIVE_CLINICAL_STATUSES = frozenset({"inactive", "resolved", "remission"})
EXCLUDED_VERIFICATION = frozenset({"refuted", "entered-in-error"})


@dataclass(frozen=True)
class IndicationCode:
    code: Code
    source: str  # e.g. "reasonCode", "reasonReference Condition/123", "problem list Condition/9"
    text: str = ""  # the Condition's or CodeableConcept's own text

    def describe(self) -> str:
        name = self.code.display or self.text
        return f"{self.code.system_name} {self.code.code}" + (f" ({name})" if name else "")


@dataclass(frozen=True)
class OrderIndications:
    codes: tuple[IndicationCode, ...]
    procedures: tuple[str, ...]  # reasonReference to a Procedure: a procedural (anesthetic) use
    unresolved: tuple[str, ...]  # references that could not be resolved
    uncoded: tuple[str, ...] = ()  # reasons given without any code, described in words

    @property
    def documented(self) -> bool:
        return bool(self.codes or self.procedures or self.unresolved or self.uncoded)


@dataclass(frozen=True)
class ClassifiedCode:
    indication: IndicationCode
    family: Family


@dataclass(frozen=True)
class IndicationAssessment:
    """The result for one set of indication codes."""

    outcome: str  # warn | advisory | exempt | none
    primary: ClassifiedCode | None
    matches: tuple[ClassifiedCode, ...]
    exempt_reason: str = ""


def _concept_codes(concept: object, source: str) -> list[IndicationCode]:
    text = concept.get("text", "") if isinstance(concept, dict) else ""
    return [IndicationCode(c, source, text if isinstance(text, str) else "")
            for c in codings_of(concept)]


def order_indications(
    order: Resource, resolve: Callable[[str, Resource], Resource | None]
) -> OrderIndications:
    codes: list[IndicationCode] = []
    procedures: list[str] = []
    unresolved: list[str] = []
    uncoded: list[str] = []
    for concept in dicts_in(order.get("reasonCode")):
        found = _concept_codes(concept, "reasonCode")
        codes.extend(found)
        if not found and isinstance(concept.get("text"), str):
            uncoded.append(f"the order's reasonCode is text only ('{concept['text']}')")
    for reference in dicts_in(order.get("reasonReference")):
        if not isinstance(reference.get("reference"), str):
            continue
        ref = reference["reference"]
        target = resolve(ref, order)
        if target is None:
            unresolved.append(ref)
        elif target.get("resourceType") == "Condition":
            found = _concept_codes(target.get("code"), f"reasonReference {ref}")
            codes.extend(found)
            if not found:
                uncoded.append(f"the order's reason {ref} is a Condition without a code")
        elif target.get("resourceType") == "Procedure":
            procedures.append(ref)
    return OrderIndications(tuple(codes), tuple(procedures), tuple(unresolved), tuple(uncoded))


def is_active_condition(condition: Resource, patient_id: str | None = None) -> bool:
    def first_code(field: str) -> str | None:
        concept = condition.get(field)
        codes = list(codings_of(concept))
        return codes[0].code if codes else None

    clinical = first_code("clinicalStatus")
    if clinical in INACTIVE_CLINICAL_STATUSES or (clinical is None and condition.get("abatementDateTime")):
        return False
    if first_code("verificationStatus") in EXCLUDED_VERIFICATION:
        return False
    subject = condition.get("subject")
    if patient_id and isinstance(subject, dict) and isinstance(subject.get("reference"), str):
        return subject["reference"].rstrip("/").split("/")[-1] == patient_id
    return True


def problem_list_codes(conditions: Iterable[Resource], patient_id: str | None) -> list[IndicationCode]:
    codes: list[IndicationCode] = []
    for condition in conditions:
        if condition.get("resourceType") != "Condition" or not is_active_condition(condition, patient_id):
            continue
        label = f"problem list Condition/{condition.get('id', '?')}"
        codes.extend(_concept_codes(condition.get("code"), label))
    return codes


def classify_code(code: Code, families: Iterable[Family]) -> Family | None:
    """The most specific family whose value set holds ``code``."""
    best: tuple[int, Family] | None = None
    for family in families:
        rank = family.valueset.specificity(code)
        if rank and (best is None or rank > best[0]):
            best = (rank, family)
    return best[1] if best else None


def _late_phase_injury(code: Code) -> bool:
    compact = code.code.replace(".", "")
    return code.system == ICD10CM and len(compact) == 7 and compact[-1] in LATE_PHASE_7TH_CHARACTERS


def assess(
    codes: Iterable[IndicationCode],
    families: tuple[Family, ...],
    drug_id: str,
    evidence_families: Iterable[str] = (),
) -> IndicationAssessment:
    """Decide what a set of indication codes means under the policy.

    * A flag family warns. A ``context`` family (post-stroke, spinal cord injury) only warns next
      to a chronic-pain code, or for an injury code in its late phase (7th character D or S); it
      then names the family when the policy has evidence for it. An ``advisory`` family
      ("including but not limited to") gives a softer, info card.
    * A use outside the experimental list, stated on the order, is exempt for the sections it
      answers (``exempts`` in cards/indications.json): an FDA-labeled use for this drug (lidocaine
      for ventricular arrhythmia, anesthesia or procedural sedation) explains the whole order;
      neoplasm-related pain only answers a chronic-pain code, so a psychiatric code beside it
      still warns. Acute pain and other unlisted codes exempt nothing.
    """
    matches: list[ClassifiedCode] = []
    for indication in codes:
        family = classify_code(indication.code, families)
        if family is not None:
            matches.append(ClassifiedCode(indication, family))

    exemptions = [m for m in matches if m.family.section in QUIET_SECTIONS and m.family.exempts
                  and (not m.family.drugs or drug_id in m.family.drugs)]
    exempt_sections = {section for m in exemptions for section in m.family.exempts}

    policy_matches = [m for m in matches if m.family.section in WARNING_SECTIONS]
    flags = [m for m in policy_matches if m.family.role == "flag"]
    contexts = [m for m in policy_matches if m.family.role == "context"]
    advisories = [m for m in policy_matches if m.family.role == "advisory"]
    known_evidence = set(evidence_families)

    primary: ClassifiedCode | None = None
    outcome = "none"
    live_flags = [m for m in flags if m.family.section not in exempt_sections]
    late = [c for c in contexts if _late_phase_injury(c.indication.code)
            and c.family.section not in exempt_sections]
    live_advisories = [m for m in advisories if m.family.section not in exempt_sections]
    if live_flags:
        primary, outcome = live_flags[0], "warn"
        refining = [c for c in contexts if c.family.section == primary.family.section
                    and c.family.id in known_evidence]
        if primary.family.id.endswith("_general") and refining:
            primary = refining[0]
    elif late:
        primary, outcome = late[0], "warn"
    elif live_advisories:
        primary, outcome = live_advisories[0], "advisory"
    elif exemptions:
        return IndicationAssessment("exempt", exemptions[0], tuple(matches), exemptions[0].family.label)
    return IndicationAssessment(outcome, primary, tuple(matches))
