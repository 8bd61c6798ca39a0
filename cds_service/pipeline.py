"""One hook call, one direction: parse, screen, gather, decide, render.

Recording (audit) happens in the HTTP layer after this returns.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from fhir.resources.R4B.medicationrequest import MedicationRequest
from pydantic import ValidationError

from .card_render import CardText, render_card
from .crd.coverage_info import CoverageMatch, match_coverages
from .decision import Decision, decide
from .errors import ApiError, Issue
from .gather import DataSource, build_index
from .hook_request import HookRequest
from .indications import order_indications, problem_list_codes
from .knowledge import Knowledge
from .policy_choice import choose_policy
from .resource_index import draft_order_entries
from .screening import screen_orders


@dataclass
class Evaluation:
    cards: list[dict]
    decisions: list[Decision] = field(default_factory=list)
    fast_path: bool = False  # decided "not in scope" from the raw bytes alone
    # Da Vinci CRD: the patient's Coverages and the policy each payer matched (crd/).
    coverages: tuple[CoverageMatch, ...] = ()

    def carded_decisions(self) -> list[tuple[Decision, dict]]:
        """Each decision that produced a card, with that card (cards follow decision order)."""
        return list(zip([d for d in self.decisions if d.fires], self.cards, strict=True))


def mentions_target_drug(raw_body: bytes, knowledge: Knowledge) -> bool:
    return knowledge.scanner.mentions_target(raw_body)


def _validate_orders(orders: tuple[tuple[str, dict], ...]) -> None:
    """Parse ketamine/lidocaine orders with the R4B model; a malformed one is a 400, not a guess."""
    issues = []
    for order_ref, order in orders:
        try:
            MedicationRequest.model_validate(order)
        except ValidationError as exc:
            for err in exc.errors()[:5]:
                where = ".".join(str(p) for p in err["loc"])
                issues.append(Issue(f"{order_ref}: {where}: {err['msg']}",
                                    expression=(f"{order_ref}.{where}",)))
    if issues:
        raise ApiError(400, issues)


def evaluate(
    request: HookRequest,
    raw_body: bytes,
    knowledge: Knowledge,
    card_text: CardText,
    default_policy_id: str,
    data_source_factory: Callable[..., DataSource] = DataSource,
    new_uuid: Callable[[], str] = lambda: str(uuid.uuid4()),
) -> Evaluation:
    if not mentions_target_drug(raw_body, knowledge):
        return Evaluation(cards=[], fast_path=True)

    index = build_index(request)
    data = data_source_factory(request, index)
    entries = list(draft_order_entries(request.draft_orders))
    rules = knowledge.medications

    screening = screen_orders(entries, request.selections, data.resolve, rules)
    if screening.unresolved:
        data.fetch_references([ref for _, ref in screening.unresolved])
        screening = screen_orders(entries, request.selections, data.resolve, rules)
    if screening.unresolved:
        raise ApiError(412, [
            Issue(f"{order_ref}: medication {ref} is neither in the request nor retrievable "
                  "from the FHIR server, so the service cannot tell whether the order is IV "
                  "ketamine or lidocaine.", "incomplete", expression=(order_ref,))
            for order_ref, ref in screening.unresolved
        ])
    _validate_orders(screening.target_orders)
    if not screening.in_scope:
        return Evaluation(cards=[])
    data.prepare_patient_data()

    per_order = [(o, order_indications(o.order, data.resolve)) for o in screening.in_scope]
    unresolved_reasons = [ref for _, ind in per_order for ref in ind.unresolved]
    if unresolved_reasons:
        data.fetch_references(unresolved_reasons)
        per_order = [(o, order_indications(o.order, data.resolve)) for o, _ in per_order]

    need_problem_list = any(not ind.documented for _, ind in per_order)
    patient = data.patient_data(need_problem_list)
    policy_choice = choose_policy(patient.coverages or [], knowledge.policies, default_policy_id,
                                  data.resolve, patient.coverage_unavailable)
    problem_list = (problem_list_codes(patient.conditions, request.patient_id)
                    if patient.conditions is not None else None)

    decisions = [
        decide(order, indications, problem_list, policy_choice, knowledge.families,
               tuple(patient.unavailable))
        for order, indications in per_order
    ]
    cards = [render_card(d, card_text, new_uuid()) for d in decisions if d.fires]
    coverages = match_coverages(patient.coverages, knowledge.policies, default_policy_id,
                                data.resolve)  # for CRD coverage information (crd/)
    return Evaluation(cards=cards, decisions=decisions, coverages=coverages)
