"""The CRD response: cards shaped by the request's configuration, plus coverage information.

``build`` is pure; ``respond`` adds the clock, ids and keeping the assertions (found-11).
"""

from __future__ import annotations

import copy
import logging
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import date
from typing import Any

from ..card_render import escape_markdown
from ..db import Database
from ..decision import Decision
from ..hook_request import HookRequest
from ..pipeline import Evaluation
from ..resource_index import draft_order_entries
from .coverage_info import Assertion, coverage_assertions
from .settings import CrdSettings, read_settings
from .store import save_assertions
from .topic import card_topic

log = logging.getLogger(__name__)

ADDS_WITH_ACTION = (
    "The coverage determination for this order is in its coverage information "
    "(coverage-assertion-id {ids}); this card adds the policy statement, the evidence and links."
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


def _shape_card(card: dict, decision: Decision, topic: dict[str, str], multi_order: bool,
                assertion_ids: list[str]) -> dict:
    card = copy.deepcopy(card)
    card["source"]["topic"] = dict(topic)
    lines = []
    if multi_order:  # dev-24: a multi-order request's card names its order
        lines.append(f"**Order: {_drug_label(decision)}, {escape_markdown(decision.order.order_ref)}**")
        lines.append("")
    lines.append(card.get("detail", ""))
    if assertion_ids:  # resp-12: say what the card adds to the coverage information
        lines += ["", "*" + ADDS_WITH_ACTION.format(ids=", ".join(assertion_ids)) + "*"]
    card["detail"] = "\n".join(lines).strip()
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
          new_id: Callable[[], str]) -> tuple[dict[str, Any], Evaluation, list[Assertion]]:
    annotated, assertions = coverage_assertions(
        evaluation.decisions, evaluation.coverages, today, new_id)
    if not settings.coverage_info:
        annotated, assertions = [], []
    ids_by_order: dict[str, list[str]] = {}
    for a in assertions:
        ids_by_order.setdefault(a.order_ref, [])
        if a.assertion_id not in ids_by_order[a.order_ref]:
            ids_by_order[a.order_ref].append(a.assertion_id)

    orders = [r for _, r in draft_order_entries(request.draft_orders)
              if r.get("resourceType") not in ("Medication", None)]
    multi_order = len(orders) > 1
    carded = evaluation.carded_decisions() if settings.cards else []
    carded = carded[: settings.max_cards]
    kept = [(d, _shape_card(c, d, topic, multi_order, ids_by_order.get(d.order.order_ref, [])))
            for d, c in carded]
    kept_ids = {id(d) for d, _ in kept}
    shaped = replace(
        evaluation,
        cards=[c for _, c in kept],
        decisions=[d for d in evaluation.decisions if not d.fires or id(d) in kept_ids],
    )
    body: dict[str, Any] = {"cards": shaped.cards}
    if annotated:
        body["systemActions"] = [_action(d, resource) for d, resource in annotated]
    return body, shaped, assertions


def respond(request: HookRequest, evaluation: Evaluation, *, service_id: str,
            client_iss: str | None, config: Mapping[str, Any],
            database: Database | None) -> CrdResponse:
    settings = read_settings(request.raw)
    if settings.ignored:
        log.info("hookInstance=%s CRD settings ignored: %s", request.hook_instance,
                 ", ".join(settings.ignored))
    topic = card_topic(settings, client_iss, config.get("CARD_TOPIC_BY_ISS"))
    body, shaped, assertions = build(request, evaluation, settings, topic,
                                     date.today().isoformat(), lambda: str(uuid.uuid4()))
    if assertions:
        try:
            if database is None:
                raise RuntimeError("no database configured (AUDIT_ENABLED is off)")
            save_assertions(database, assertions, hook_instance=request.hook_instance,
                            service_id=service_id, client_iss=client_iss,
                            patient_id=request.patient_id, crd_version=settings.version)
        except Exception as exc:  # an assertion that cannot be kept is not given (found-11)
            log.error("coverage assertions not kept (%s); coverage information withheld "
                      "(hookInstance=%s)", type(exc).__name__, request.hook_instance)
            body, shaped, assertions = build(request, evaluation,
                                             replace(settings, coverage_info=False), topic,
                                             date.today().isoformat(), lambda: "")
    return CrdResponse(body, shaped, assertions, settings)
