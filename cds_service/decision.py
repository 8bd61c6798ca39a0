"""The decision for one in-scope order (pure: plain data in, plain data out)."""

from __future__ import annotations

from dataclasses import dataclass

from .indications import (
    ClassifiedCode,
    IndicationCode,
    OrderIndications,
    assess,
)
from .knowledge import QUIET_SECTIONS, Family
from .policy_choice import PolicyChoice
from .screening import ScreenedOrder


@dataclass(frozen=True)
class Decision:
    order: ScreenedOrder
    kind: str  # warning | warning_problem_list | advisory | undocumented | indication_unavailable | quiet
    policy_choice: PolicyChoice
    primary: ClassifiedCode | None = None
    matches: tuple[ClassifiedCode, ...] = ()
    quiet_reason: str = ""
    missing: tuple[str, ...] = ()  # what could not be retrieved, in words
    uncoded: tuple[str, ...] = ()  # reasons the order gives without a code, in words

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
) -> Decision:
    """Apply the policy to one IV ketamine/lidocaine order.

    ``problem_list`` is None when the active conditions could not be obtained; ``unavailable``
    names data that could not be retrieved (for the card to say so).
    """
    drug_id = order.medication.drug.id if order.medication.drug else ""
    evidence_families = policy_choice.policy.evidence.keys()

    if indications.procedures:
        return Decision(order, "quiet", policy_choice,
                        quiet_reason="the order's reason is a procedure (anesthetic or procedural use)")

    if indications.codes:
        result = assess(indications.codes, families, drug_id, evidence_families)
        if result.outcome == "exempt":
            return Decision(order, "quiet", policy_choice, result.primary, result.matches,
                            quiet_reason=f"indication outside the experimental list: {result.exempt_reason}")
        if result.outcome == "warn":
            return Decision(order, "warning", policy_choice, result.primary, result.matches)
        if result.outcome == "advisory":
            return Decision(order, "advisory", policy_choice, result.primary, result.matches)
        if not indications.unresolved and not indications.uncoded:
            return Decision(order, "quiet", policy_choice, None, result.matches,
                            quiet_reason="the documented indication is not one the policy addresses")

    if indications.unresolved or indications.uncoded:
        missing = tuple(f"the order's reason {ref}" for ref in indications.unresolved) + unavailable
        return Decision(order, "indication_unavailable", policy_choice, missing=missing,
                        uncoded=indications.uncoded)

    if problem_list is None:
        return Decision(order, "undocumented", policy_choice,
                        missing=("the patient's active problem list", *unavailable))
    # Without an indication on the order, exemptions on the problem list do not silence the
    # card: the prescriber is asked to say which condition the order treats.
    candidates = [c for c in problem_list if c.code]
    result = assess(candidates, tuple(f for f in families if f.section not in QUIET_SECTIONS),
                    drug_id, evidence_families)
    if result.outcome == "warn":
        return Decision(order, "warning_problem_list", policy_choice, result.primary, result.matches,
                        missing=unavailable)
    return Decision(order, "undocumented", policy_choice, None, result.matches, missing=unavailable)
