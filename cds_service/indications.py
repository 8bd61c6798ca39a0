"""Find an order's indication and classify it into the policy's indication families."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace

from .identity_memo import IdentityMemo
from .knowledge import QUIET_SECTIONS, WARNING_SECTIONS, Family
from .resource_index import Resource, dicts_in
from .terminology import ICD10CM, SYSTEM_NAMES, Code, coding_displays, codings_of

# Code systems the value sets can place a code in (canonical URIs; HL7 OIDs arrive mapped to these).
KNOWN_SYSTEMS = frozenset(SYSTEM_NAMES)

# ICD-10-CM 7th characters for a later phase of an injury: D subsequent encounter, S sequela.
LATE_PHASE_7TH_CHARACTERS = frozenset({"D", "S"})
INACTIVE_CLINICAL_STATUSES = frozenset({"inactive", "resolved", "remission"})
EXCLUDED_VERIFICATION = frozenset({"refuted", "entered-in-error"})
EXCLUDED_PROCEDURE_STATUSES = frozenset({"not-done", "entered-in-error"})
EXCLUDED_OBSERVATION_STATUSES = frozenset({"cancelled", "entered-in-error"})


@dataclass(frozen=True)
class IndicationCode:
    code: Code
    source: str  # e.g. "reasonCode", "reasonReference Condition/123", "problem list Condition/9"
    text: str = ""  # the Condition's or CodeableConcept's own text
    # False for a code of a Condition whose status reads as refuted or entered in error without
    # saying so in the HL7 code (text only, another case, no system): it may still warn, but it
    # cannot make the order an approved use (fail closed).
    may_exempt: bool = True

    def describe(self) -> str:
        name = self.code.display or self.text
        return f"{self.code.system_name} {self.code.code}" + (f" ({name})" if name else "")


@dataclass(frozen=True)
class UncodedReason:
    """A reason the value sets cannot classify: text only, or coded only in unknown code systems."""

    name: str  # the reason's own words (text, else a coding's display); "" when it has none
    source: str  # reasonCode | reasonReference <ref>
    local_codes: tuple[Code, ...] = ()  # its codings, all in code systems the service does not know
    family: Family | None = None  # the policy family its words name (set by the decision)
    # Coded in a known system (ICD-10-CM, SNOMED CT) but with a code no value set lists, read
    # by its words because the value sets are not exhaustive (a SNOMED CT descendant, say).
    unlisted: bool = False
    unread_type: str = ""  # the resource type of a reason the service does not read (a Patient)


@dataclass(frozen=True)
class ReasonProcedure:
    """A Procedure the order's ``reasonReference`` names: an anesthetic or procedural use when
    its code says so (the decision checks that against the approved-use value sets)."""

    source: str  # reasonReference <ref>
    codes: tuple[IndicationCode, ...]  # its codings in code systems the service knows
    name: str  # its code's text, else a coding's display; "" when it has none
    # Its words say what was not done or given ("without sedation", "not planned"): they cannot
    # make it an anesthetic use.
    negated: bool = False


@dataclass(frozen=True)
class OrderIndications:
    codes: tuple[IndicationCode, ...]
    procedures: tuple[ReasonProcedure, ...]  # reasonReference to a Procedure that was (to be) done
    unresolved: tuple[str, ...]  # references that could not be resolved
    uncoded: tuple[UncodedReason, ...] = ()  # reasons the value sets cannot classify

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
    named: tuple[ClassifiedCode, ...] = ()  # every live policy indication, primary first


def _concept_codes(concept: object, source: str) -> list[IndicationCode]:
    """The concept's codings in code systems the service knows."""
    text = concept.get("text", "") if isinstance(concept, dict) else ""
    return [IndicationCode(c, source, text if isinstance(text, str) else "")
            for c in codings_of(concept) if c.system in KNOWN_SYSTEMS]


def _uncoded(concept: object, source: str) -> UncodedReason | None:
    """The concept as an unclassifiable reason when none of its codings is in a known system:
    coded locally, coded without a ``system`` (read by its display), or words only."""
    if not isinstance(concept, dict) or _concept_codes(concept, source):
        return None
    local = tuple(codings_of(concept))
    name = _concept_name(concept, local)
    if not name and not local and not dicts_in(concept.get("coding")):
        return None
    return UncodedReason(name, source, local)


def _concept_name(concept: object, codes: Iterable[Code]) -> str:
    """A concept's own words: its text, else the first coding display (of a coding read as a
    code, else of any coding: one without a ``system`` still names the reason); "" when none."""
    text = concept.get("text") if isinstance(concept, dict) else None
    name = text if isinstance(text, str) and text.strip() else next((c.display for c in codes if c.display.strip()), "")
    if not name.strip():
        name = next((d for d in coding_displays(concept) if d.strip()), "")
    return " ".join(name.split())


# Words that say a procedure was not an anesthetic use although they name one: "ketamine
# infusion without sedation", "sub-anesthetic dose", "sedation not planned".
NEGATING_WORDS = frozenset({"no", "not", "non", "without", "sub", "never", "avoid", "none"})


def _negated(text: str) -> bool:
    return any(word in NEGATING_WORDS for word in _words(text).split())


def _says(resource: Resource, element: str, statuses: frozenset[str]) -> bool:
    """Whether ``element`` (a CodeableConcept) says one of ``statuses`` in any way a person would
    read it: any coding's code whatever its system, any case, or the text ("Entered in error")."""
    concept = resource.get(element)
    if isinstance(concept, str):
        concept = {"text": concept}
    if not isinstance(concept, dict):
        return False
    wanted = {" ".join(_words(status).split()) for status in statuses}
    said = [c.get("code") for c in dicts_in(concept.get("coding"))] + [concept.get("text")]
    return any(isinstance(s, str) and " ".join(_words(s).split()) in wanted for s in said)


def _words(text: str) -> str:
    return " " + re.sub(r"[^a-z0-9]+", " ", text.casefold()).strip() + " "


def family_named_in(text: str, families: Iterable[Family],
                    sections: Iterable[str] = WARNING_SECTIONS) -> Family | None:
    """The policy family whose label or synonym (cards/indications.json) the text names.

    Whole words, case- and punctuation-insensitive; the longest name wins, so "bipolar
    depression" reads as bipolar disorder rather than depression. Only families of the
    sections the policy calls experimental/investigational are considered.
    """
    haystack = _words(text)
    best: tuple[int, Family] | None = None
    for family in families:
        if family.section not in sections:
            continue
        for name in (family.label, *family.synonyms):
            needle = _words(name)
            if needle.strip() and needle in haystack and (best is None or len(needle) > best[0]):
                best = (len(needle), family)
    return best[1] if best else None


def order_indications(
    order: Resource, resolve: Callable[[str, Resource], Resource | None]
) -> OrderIndications:
    codes: list[IndicationCode] = []
    procedures: list[str] = []
    unresolved: list[str] = []
    uncoded: list[UncodedReason] = []
    for concept in dicts_in(order.get("reasonCode")):
        codes.extend(_concept_codes(concept, "reasonCode"))
        reason = _uncoded(concept, "reasonCode")
        if reason is not None:
            uncoded.append(reason)
    for reference in dicts_in(order.get("reasonReference")):
        if not isinstance(reference.get("reference"), str):
            display = reference.get("display")  # a reason named only: read as its words
            if isinstance(display, str) and display.strip():
                uncoded.append(UncodedReason(" ".join(display.split()), "reasonReference"))
            else:  # named by identifier only, say: a reason the service cannot retrieve
                unresolved.append(_unliteral_reference(reference))
            continue
        ref = reference["reference"]
        target = resolve(ref, order)
        source = f"reasonReference {ref}"
        rtype = target.get("resourceType") if target is not None else None
        if target is None:
            unresolved.append(ref)
        elif rtype in ("Condition", "Observation"):  # R4: Condition | Observation
            if _first_code(target, "verificationStatus") in EXCLUDED_VERIFICATION:
                continue  # refuted or entered in error: not the order's reason (nor an exemption)
            if rtype == "Observation" and str(target.get("status")) in EXCLUDED_OBSERVATION_STATUSES:
                continue
            may_exempt = not (_says(target, "verificationStatus", EXCLUDED_VERIFICATION)
                              or _says(target, "status", EXCLUDED_OBSERVATION_STATUSES))
            # An Observation's finding may be its code or its value (SNOMED CT "Depressive disorder").
            concepts = [target.get("code")] + ([target.get("valueCodeableConcept")] if rtype == "Observation" else [])
            found = [replace(c, may_exempt=may_exempt) if not may_exempt else c
                     for concept in concepts for c in _concept_codes(concept, source)]
            codes.extend(found)
            reasons = [r for concept in concepts if (r := _uncoded(concept, source)) is not None]
            if not reasons and not found:
                reasons = [UncodedReason("", source)]  # no code or words the service can read
            uncoded.extend(reasons if not found else [r for r in reasons if r.name or r.local_codes])
        elif rtype == "Procedure":
            if _says(target, "status", EXCLUDED_PROCEDURE_STATUSES):
                continue  # a procedure not done (or recorded in error, however written) is no reason
            code = target.get("code")
            name = _concept_name(code, codings_of(code))
            procedures.append(ReasonProcedure(source, tuple(_concept_codes(code, source)), name,
                                              negated=_negated(name)))
        else:  # a reason the service does not read (a Patient, a DiagnosticReport): say so
            uncoded.append(UncodedReason("", source, unread_type=rtype if isinstance(rtype, str) else "unknown"))
    return OrderIndications(tuple(codes), tuple(procedures), tuple(unresolved), tuple(uncoded))


def _unliteral_reference(reference: Resource) -> str:
    """How a reasonReference without a literal reference is named in what could not be read."""
    rtype = reference.get("type")
    return f"{rtype if isinstance(rtype, str) and rtype.strip() else 'resource'} named by identifier only"


def _first_code(resource: Resource, element: str) -> str | None:
    codes = list(codings_of(resource.get(element)))
    return codes[0].code if codes else None


def is_active_condition(condition: Resource, patient_id: str | None = None) -> bool:
    clinical = _first_code(condition, "clinicalStatus")
    if clinical in INACTIVE_CLINICAL_STATUSES or (clinical is None and condition.get("abatementDateTime")):
        return False
    if _first_code(condition, "verificationStatus") in EXCLUDED_VERIFICATION:
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
    """The most specific family whose value set holds ``code`` (the first of equals): an exact
    concept first, else the longest ``is-a`` prefix (ValueSetMatcher.specificity's ranking)."""
    if not isinstance(families, tuple):
        return _classify_by_scan(code, families)
    return _FAMILY_INDEXES.get((families,), lambda: _FamilyIndex(families)).classify(code)


def _classify_by_scan(code: Code, families: Iterable[Family]) -> Family | None:
    best: tuple[int, Family] | None = None
    for family in families:
        rank = family.valueset.specificity(code)
        if rank and (best is None or rank > best[0]):
            best = (rank, family)
    return best[1] if best else None


class _FamilyIndex:
    """The families' value sets as two look-ups, built once per tuple of families: a code is
    classified in a few dict look-ups instead of a pass over every family's filters."""

    def __init__(self, families: tuple[Family, ...]) -> None:
        self.exact: dict[tuple[str, str], Family] = {}
        self.prefix: dict[tuple[str, str], Family] = {}
        for family in families:  # the first family of equal rank wins, as in the scan
            for concept in family.valueset.concepts:
                self.exact.setdefault(concept, family)
            for system_prefix in family.valueset.is_a:
                self.prefix.setdefault(system_prefix, family)
        self.longest = max((len(prefix) for _, prefix in self.prefix), default=0)

    def classify(self, code: Code) -> Family | None:
        family = self.exact.get((code.system, code.code))
        if family is not None:
            return family
        for length in range(min(len(code.code), self.longest), 0, -1):
            family = self.prefix.get((code.system, code.code[:length]))
            if family is not None:
                return family
        return None


_FAMILY_INDEXES: IdentityMemo[_FamilyIndex] = IdentityMemo(64)  # per tuple of families


def _late_phase_injury(code: Code) -> bool:
    compact = code.code.replace(".", "")
    return code.system == ICD10CM and len(compact) == 7 and compact[-1] in LATE_PHASE_7TH_CHARACTERS


def assess(
    codes: Iterable[IndicationCode],
    families: tuple[Family, ...],
    drug_id: str,
    evidence_families: Iterable[str] = (),
    drug_sections: frozenset[str] = frozenset(),
) -> IndicationAssessment:
    """Decide what a set of indication codes means under the policy.

    Among several warning families, the first of a section whose statement names the drug
    (``drug_sections``: "ketamine or lidocaine" for chronic pain, "e.g., ketamine" for
    psychiatric disorders) leads the card; else the first found.

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
                  and (not m.family.drugs or drug_id in m.family.drugs) and m.indication.may_exempt]
    exempt_sections = {section for m in exemptions for section in m.family.exempts}

    policy_matches = [m for m in matches if m.family.section in WARNING_SECTIONS]
    flags = [m for m in policy_matches if m.family.role == "flag"]
    contexts = [m for m in policy_matches if m.family.role == "context"]
    advisories = [m for m in policy_matches if m.family.role == "advisory"]
    known_evidence = set(evidence_families)

    primary: ClassifiedCode | None = None
    outcome = "none"
    live_flags = [m for m in flags if m.family.section not in exempt_sections]
    if drug_sections:  # stable: the order found is kept within each group
        live_flags.sort(key=lambda m: m.family.section not in drug_sections)
    late = [c for c in contexts if _late_phase_injury(c.indication.code)
            and c.family.section not in exempt_sections]
    live_advisories = [m for m in advisories if m.family.section not in exempt_sections]
    others: list[ClassifiedCode] = []
    if live_flags:
        primary, outcome = live_flags[0], "warn"
        refining = [c for c in contexts if c.family.section == primary.family.section
                    and c.family.id in known_evidence]
        if primary.family.id.endswith("_general") and refining:
            primary = refining[0]
        others = live_flags + late
    elif late:
        primary, outcome = late[0], "warn"
        others = late
    elif live_advisories:
        primary, outcome = live_advisories[0], "advisory"
        others = live_advisories
    elif exemptions:
        return IndicationAssessment("exempt", exemptions[0], tuple(matches), exemptions[0].family.label)
    named = _one_per_family([primary, *others] if primary else [])
    return IndicationAssessment(outcome, primary, tuple(matches), named=named)


def _one_per_family(found: list[ClassifiedCode]) -> tuple[ClassifiedCode, ...]:
    """The first code found for each family, in order; a general family is dropped when a more
    specific family of the same section is named (Chronic pain beside CRPS adds nothing)."""
    first: dict[str, ClassifiedCode] = {}
    for match in found:
        first.setdefault(match.family.id, match)
    specific_sections = {m.family.section for m in first.values() if not m.family.id.endswith("_general")}
    return tuple(m for m in first.values()
                 if not (m.family.id.endswith("_general") and m.family.section in specific_sections))
