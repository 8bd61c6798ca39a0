"""The CRD response: cards shaped by the request's configuration, plus coverage information.

``build`` is pure; ``respond`` adds the clock, ids and keeping the assertions (found-11).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date
from typing import Any

from ..card_render import CardText, render_card
from ..decision import Decision
from ..hook_request import HookRequest
from ..ids import new_uuid
from ..pipeline import Evaluation
from ..resource_index import draft_order_entries
from ..screening import order_reference
from ..storage_safety import log_safe
from .coverage_info import Assertion, CoverageMatch, asserts_coverage, coverage_assertions
from .settings import CrdSettings, read_settings
from .topic import card_topic

log = logging.getLogger(__name__)

ADDS_WITH_ACTION = (
    "Also recorded on the order as coverage information; this card adds the policy statement, "
    "the evidence and links."
)


@dataclass(frozen=True)
class CrdResponse:
    body: dict[str, Any]
    evaluation: Evaluation  # with the cards as returned, for the audit trail
    assertions: list[Assertion]
    settings: CrdSettings


def _drug_label(decision: Decision) -> str:
    drug = decision.order.medication.drug
    return f"IV {drug.label}" if drug else "IV anesthetic"


DETAIL_LIMIT = 1500  # characters of Markdown, as card_render keeps them (cards/card-text.json)


def _head_lines(decision: Decision, position: str | None) -> list[str]:
    if not position:
        return []
    # dev-24: a multi-order request's card names its order (in words, not by its id)
    family = decision.family
    for_what = f" for {family.label}" if family else ""
    return [f"**{position}: {_drug_label(decision)}{for_what}**"]


def _tail_lines(asserted: bool) -> list[str]:
    return ["*" + ADDS_WITH_ACTION + "*"] if asserted else []  # resp-12: what the card adds


def _reserve(lines: list[str]) -> int:
    return sum(len(line) + 2 for line in lines)  # each line and the blank line after it


def _positions(request: HookRequest) -> dict[str, str]:
    orders = [order_reference(url, r, i) for i, (url, r) in enumerate(draft_order_entries(request.draft_orders))
              if r.get("resourceType") not in ("Medication", None)]
    return {ref: f"Order {n} of {len(orders)}" for n, ref in enumerate(orders, 1)} if len(orders) > 1 else {}


def card_reserve(request: HookRequest) -> Callable[[Decision, Sequence[CoverageMatch]], int]:
    """How many characters :func:`respond` will add to a decision's card, so the pipeline renders
    each card once with room for them (:func:`cds_service.pipeline.evaluate`'s ``card_reserve``)."""
    known: dict[str, Any] = {}  # read at the first card: most calls have none

    def reserve(decision: Decision, coverages: Sequence[CoverageMatch]) -> int:
        if not known:
            known.update(settings=read_settings(request.raw), positions=_positions(request))
        positions = known["positions"]
        position = positions.get(decision.order.order_ref, "Order" if positions else None)
        asserted = known["settings"].coverage_info and asserts_coverage(decision, coverages)
        return _reserve(_head_lines(decision, position) + _tail_lines(asserted))

    return reserve


def _shape_card(card: dict, decision: Decision, topic: dict[str, str], position: str | None,
                assertion_ids: list[str], card_text: CardText | None = None, rendered_reserve: int = 0) -> dict:
    # A new card and source (nothing nested below them is changed, so no deep copy).
    card = {**card, "source": {**card["source"], "topic": dict(topic)}}
    head, tail = _head_lines(decision, position), _tail_lines(bool(assertion_ids))
    reserve = _reserve(head + tail)
    if card_text is not None and reserve != rendered_reserve:  # render again, with room for the lines
        card["detail"] = render_card(decision, card_text, card["uuid"], reserve_chars=reserve)["detail"]
    blocks = card.get("detail", "").split("\n\n")
    # Without the card text (or if still too long): the renderer put the least important blocks
    # last (studies, what would change the outcome), so drop from the end until the lines fit.
    while len("\n\n".join(head + blocks + tail)) > DETAIL_LIMIT and len(blocks) > 3:
        blocks.pop()
    card["detail"] = "\n\n".join(head + blocks + tail).strip()
    return card


def _action(decision: Decision, resource: dict[str, Any]) -> dict[str, Any]:
    payer = decision.policy_choice.policy.payer_name
    return {
        "type": "update",
        "description": f"Coverage information from {payer} for {_drug_label(decision)} order "
                       f"{decision.order.order_ref}",
        "resource": resource,
    }


def build(request: HookRequest, evaluation: Evaluation, settings: CrdSettings,
          topic: dict[str, str], today: str,
          new_id: Callable[[], str],
          card_text: CardText | None = None) -> tuple[dict[str, Any], Evaluation, list[Assertion]]:
    annotated, assertions = (coverage_assertions(evaluation.decisions, evaluation.coverages, today, new_id)
                             if settings.coverage_info else ([], []))
    ids_by_order: dict[str, list[str]] = {}
    for a in assertions:
        ids_by_order.setdefault(a.order_ref, [])
        if a.assertion_id not in ids_by_order[a.order_ref]:
            ids_by_order[a.order_ref].append(a.assertion_id)

    position = _positions(request)
    rendered = evaluation.card_reserves or (0,) * len(evaluation.cards)  # what each card left room for
    carded = list(zip(evaluation.carded_decisions(), rendered, strict=True)) if settings.cards else []
    carded = carded[: settings.max_cards]
    kept = [(d, _shape_card(c, d, topic, position.get(d.order.order_ref, "Order" if position else None),
                            ids_by_order.get(d.order.order_ref, []), card_text, reserved))
            for (d, c), reserved in carded]
    kept_ids = {id(d) for d, _ in kept}
    shaped = replace(
        evaluation,
        cards=[c for _, c in kept],
        decisions=[d for d in evaluation.decisions if not d.fires or id(d) in kept_ids],
        card_reserves=(),  # these cards are final: nothing is added to them any more
    )
    body: dict[str, Any] = {"cards": shaped.cards}
    if annotated:
        body["systemActions"] = [_action(d, resource) for d, resource in annotated]
    return body, shaped, assertions


def respond(request: HookRequest, evaluation: Evaluation, *, client_iss: str | None,
            config: Mapping[str, Any], card_text: CardText | None = None,
            coverage_info: bool = True) -> CrdResponse:
    """The answer as the request's CRD configuration asks for it. Its ``assertions`` must be
    kept before it is given (found-11: the caller writes them with the audit record, see
    :mod:`cds_service.hook_call`); when they cannot be, the caller asks again with
    ``coverage_info=False`` and gives that answer instead."""
    settings = read_settings(request.raw)
    if settings.ignored and coverage_info:
        log.info("hookInstance=%s CRD settings ignored: %s", log_safe(request.hook_instance),
                 ", ".join(settings.ignored))
    if not evaluation.decisions:  # nothing in scope: no card to shape, no coverage to assert
        return CrdResponse({"cards": []}, evaluation, [], settings)
    if not coverage_info:
        settings = replace(settings, coverage_info=False)
    topic = card_topic(settings, client_iss, config.get("CARD_TOPIC_BY_ISS"))
    body, shaped, assertions = build(request, evaluation, settings, topic,
                                     date.today().isoformat(), new_uuid, card_text)
    return CrdResponse(body, shaped, assertions, settings)
