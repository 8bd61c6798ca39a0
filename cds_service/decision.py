"""The decision for one in-scope order (pure: plain data in, plain data out)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, replace

from .identity_memo import IdentityMemo
from .indications import (
    ClassifiedCode,
    IndicationCode,
    OrderIndications,
    ReasonProcedure,
    UncodedReason,
    assess,
    classify_code,
    family_named_in,
)
from .knowledge import QUIET_SECTIONS, Family, PolicySection
from .policy_choice import PolicyChoice
from .screening import ScreenedOrder

PROCEDURAL_USE = "the order's reason is a procedure (anesthetic or procedural use)"
KINDS = ("warning", "warning_problem_list", "advisory", "undocumented", "indication_unavailable",
         "uncoded_reason", "no_policy", "quiet")


@dataclass(frozen=True)
class Decision:
    order: ScreenedOrder
    kind: str  # one of KINDS
    policy_choice: PolicyChoice
    primary: ClassifiedCode | None = None
    matches: tuple[ClassifiedCode, ...] = ()
    quiet_reason: str = ""
    missing: tuple[str, ...] = ()  # what could not be retrieved, in words (for the log)
    uncoded: tuple[UncodedReason, ...] = ()  # reasons the value sets cannot classify
    problem_list_unavailable: bool = False  # the active problem list could not be obtained
    problem_list_partial: bool = False  # only part of it could be read (pages not retrieved)
    named: tuple[ClassifiedCode, ...] = ()  # every policy indication found, primary first

    @property
    def reads_unlisted_code(self) -> bool:
        """A reason is coded outside the value sets and read by its words (see _unlisted_reasons)."""
        return any(u.unlisted for u in self.uncoded)

    @property
    def fires(self) -> bool:
        return self.kind != "quiet"

    @property
    def indicator(self) -> str:
        return "warning" if self.kind in ("warning", "warning_problem_list") else "info"

    @property
    def basis(self) -> str:
        return {
            "warning": "order",
            "advisory": "order",
            "warning_problem_list": "problem-list",
            "undocumented": "undocumented",
            "indication_unavailable": "unavailable",
            "uncoded_reason": "uncoded",
            "no_policy": "no-policy",
        }.get(self.kind, "none")

    @property
    def family(self) -> Family | None:
        return self.primary.family if self.primary else None

    @property
    def section_id(self) -> str | None:
        return self.primary.family.section if self.primary else None


def decide(
    order: ScreenedOrder,
    indications: OrderIndications,
    problem_list: list[IndicationCode] | None,
    policy_choice: PolicyChoice,
    families: tuple[Family, ...],
    unavailable: tuple[str, ...] = (),
    problem_list_partial: bool = False,
) -> Decision:
    """Apply the policy to one IV ketamine/lidocaine order.

    ``problem_list`` is None when the active conditions could not be obtained; ``unavailable``
    names data that could not be retrieved (for the log; the card says it in clinical words);
    ``problem_list_partial`` says ``problem_list`` is only the part of it that could be read.
    When the plan has no policy on file (``policy_choice.basis == "unmatched"``), an order that
    would get a card gets an info card saying so instead (or none, per ``announce``).
    """
    decision = _decide(order, indications, problem_list, policy_choice, families, unavailable,
                       problem_list_partial)
    if policy_choice.basis != "unmatched" or not decision.fires:
        return decision
    if not policy_choice.announce:
        return replace(decision, kind="quiet", quiet_reason="no policy on file for the patient's plan")
    return replace(decision, kind="no_policy")


def _decide(
    order: ScreenedOrder,
    indications: OrderIndications,
    problem_list: list[IndicationCode] | None,
    policy_choice: PolicyChoice,
    families: tuple[Family, ...],
    unavailable: tuple[str, ...],
    problem_list_partial: bool = False,
) -> Decision:
    drug_id = order.medication.drug.id if order.medication.drug else ""
    evidence_families = policy_choice.policy.evidence.keys()
    drug_label = order.medication.drug.label if order.medication.drug else ""
    drug_sections = _DRUG_SECTIONS.get((policy_choice.policy,),
                                       lambda: _sections_naming(policy_choice.policy.sections, drug_label), drug_label)

    if any(_is_coded_procedural_use(p, families, drug_id) for p in indications.procedures):
        return Decision(order, "quiet", policy_choice, quiet_reason=PROCEDURAL_USE)
    # A procedure only named as an anesthetic use (CPT or local codes) explains the order unless
    # the order also gives a reason that warns or cannot be read: words never outweigh a code.
    named = [p for p in indications.procedures if _is_named_procedural_use(p, families, drug_id)]
    if indications.procedures:  # procedures whose code names no approved use: read as other reasons
        # Every procedure's codes are read (a code outweighs the words of the same procedure);
        # those only named as an anesthetic use add no words of their own.
        indications = replace(
            indications, procedures=(),
            codes=indications.codes + tuple(c for p in indications.procedures for c in p.codes),
            uncoded=indications.uncoded + tuple(UncodedReason(p.name, p.source) for p in indications.procedures
                                                if p not in named and not p.codes))
    if named:
        decision = _decide(order, indications, [], policy_choice, families, unavailable)
        if decision.kind in ("quiet", "undocumented"):
            return Decision(order, "quiet", policy_choice, quiet_reason=PROCEDURAL_USE)
        return decision

    uncoded = tuple(replace(u, family=family_named_in(u.name, families)) if u.name else u
                    for u in indications.uncoded)
    if indications.codes:
        result = assess(indications.codes, families, drug_id, evidence_families, drug_sections)
        if result.outcome == "exempt":
            return Decision(order, "quiet", policy_choice, result.primary, result.matches,
                            quiet_reason=f"indication outside the experimental list: {result.exempt_reason}")
        if result.outcome == "warn":
            return Decision(order, "warning", policy_choice, result.primary, result.matches,
                            uncoded=uncoded, named=result.named)
        if result.outcome == "advisory":
            return Decision(order, "advisory", policy_choice, result.primary, result.matches,
                            uncoded=uncoded, named=result.named)
        uncoded += _unlisted_reasons(indications.codes, result.matches, families)
        # Only a reason the service can trust says "not one the policy addresses": a Condition
        # whose status reads as refuted (may_exempt) is as good as none.
        if not indications.unresolved and not uncoded and any(c.may_exempt for c in indications.codes):
            return Decision(order, "quiet", policy_choice, None, result.matches,
                            quiet_reason="the documented indication is not one the policy addresses")

    if indications.unresolved:
        missing = tuple(f"the order's reason {ref}" for ref in indications.unresolved) + unavailable
        return Decision(order, "indication_unavailable", policy_choice, missing=missing, uncoded=uncoded)
    if uncoded:
        return Decision(order, "uncoded_reason", policy_choice, missing=unavailable, uncoded=uncoded)

    if problem_list is None:
        return Decision(order, "undocumented", policy_choice,
                        missing=("the patient's active problem list", *unavailable),
                        problem_list_unavailable=True)
    # Without an indication on the order, exemptions on the problem list do not silence the
    # card: the prescriber is asked to say which condition the order treats.
    candidates = [c for c in problem_list if c.code]
    result = assess(candidates, _flagging_families(families), drug_id, evidence_families, drug_sections)
    if result.outcome == "warn":
        return Decision(order, "warning_problem_list", policy_choice, result.primary, result.matches,
                        missing=unavailable, named=result.named)
    # Nothing found on part of the list does not mean nothing is on it: the card says which.
    return Decision(order, "undocumented", policy_choice, None, result.matches, missing=unavailable,
                    problem_list_partial=problem_list_partial and problem_list is not None)


def _is_coded_procedural_use(procedure: ReasonProcedure, families: Iterable[Family], drug_id: str) -> bool:
    """A Procedure coded as an approved use of this drug (anesthesia or procedural sedation): any
    other procedure, a "ketamine infusion" say, does not make the order an anesthetic use."""
    for indication in procedure.codes:
        family = classify_code(indication.code, families)
        if family is not None and family.section == "approved_use" and drug_id in family.drugs:
            return True
    return False


def _is_named_procedural_use(procedure: ReasonProcedure, families: Iterable[Family], drug_id: str) -> bool:
    """A Procedure whose words name an approved use of this drug (anesthesia procedures come coded
    in CPT or locally, too), unless they say it was not one ("without sedation")."""
    if not procedure.name or procedure.negated or _is_coded_procedural_use(procedure, families, drug_id):
        return False
    named = family_named_in(procedure.name, families, sections=("approved_use",))
    return named is not None and drug_id in named.drugs


def _unlisted_reasons(codes: Iterable[IndicationCode], matches: Iterable[ClassifiedCode],
                      families: Iterable[Family]) -> tuple[UncodedReason, ...]:
    """Reasons coded with a code no value set lists whose own words (display, else text) name a
    policy family: the value sets are not exhaustive (SNOMED CT descendants, new codes), so such
    a reason is not taken as "not one the policy addresses" (fail closed)."""
    classified = {m.indication for m in matches}
    found = []
    for code in codes:
        if code in classified:
            continue
        # The display, then the text: an EHR maps free text to a vague code ("R69 Illness,
        # unspecified", text "Major depressive disorder"), and the text still says what it is.
        for words in (code.code.display, code.text):
            name = " ".join(words.split())
            family = family_named_in(name, families) if name else None
            if family is not None:
                found.append(UncodedReason(name, code.source, (code.code,), family, unlisted=True))
                break
    return tuple(found)


def _sections_naming(sections: dict[str, PolicySection], drug: str) -> frozenset[str]:
    """The policy sections whose quoted statement names ``drug`` as a word."""
    if not drug:
        return frozenset()
    pattern = re.compile(rf"\b{re.escape(drug)}\b", re.IGNORECASE)
    return frozenset(sid for sid, section in sections.items() if pattern.search(section.statement))


def _flagging_families(families: Iterable[Family]) -> tuple[Family, ...]:
    """The families outside the quiet sections, as one tuple per tuple of families: the same
    tuple every call, so classify_code finds its look-up index for it (a new tuple per call
    built and dropped an index each time)."""
    if not isinstance(families, tuple):
        return tuple(f for f in families if f.section not in QUIET_SECTIONS)
    return _FLAGGING.get((families,), lambda: tuple(f for f in families if f.section not in QUIET_SECTIONS))


_FLAGGING: IdentityMemo[tuple[Family, ...]] = IdentityMemo(64)  # per tuple of families
_DRUG_SECTIONS: IdentityMemo[frozenset[str]] = IdentityMemo(64)  # per policy and drug
