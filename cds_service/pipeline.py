"""One hook call, one direction: parse, screen, gather, decide, render.

Recording (audit) happens in the HTTP layer after this returns.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import date
from typing import Any

import orjson
from fhir.resources.R4B.codeableconcept import CodeableConcept
from fhir.resources.R4B.dosage import DosageDoseAndRate
from fhir.resources.R4B.extension import Extension
from fhir.resources.R4B.reference import Reference
from fhir.resources.R4B.timing import TimingRepeat
from pydantic import BaseModel, ValidationError

from .card_render import CardText, render_card
from .crd.coverage_info import EXTENSION_URL as COVERAGE_INFORMATION_URL
from .crd.coverage_info import CoverageMatch, match_coverages
from .decision import Decision, decide
from .errors import ApiError, Issue
from .fhir_shape import needs_normalizing, normalize_resource
from .gather import DataSource, build_index
from .hook_request import HookRequest
from .ids import new_uuid as random_uuid
from .indications import order_indications, problem_list_codes
from .knowledge import Knowledge
from .policy_choice import PolicySettings, choose_policy, order_date
from .resource_index import Resource, draft_order_entries
from .screening import screen_orders

log = logging.getLogger(__name__)


@dataclass
class Evaluation:
    cards: list[dict]
    decisions: list[Decision] = field(default_factory=list)
    fast_path: bool = False  # decided "not in scope" from the raw bytes alone
    # Da Vinci CRD: the patient's Coverages and the policy each payer matched (crd/).
    coverages: tuple[CoverageMatch, ...] = ()
    card_reserves: tuple[int, ...] = ()  # per card: the characters its detail left for the CRD lines

    def carded_decisions(self) -> list[tuple[Decision, dict]]:
        """Each decision that produced a card, with that card (cards follow decision order)."""
        return list(zip([d for d in self.decisions if d.fires], self.cards, strict=True))


def mentions_target_drug(raw_body: bytes, knowledge: Knowledge) -> bool:
    return knowledge.scanner.mentions_target(raw_body)


def _read_parts(order: Resource) -> list[tuple[str, type[BaseModel], Any]]:
    """The parts of a MedicationRequest the decision reads, each with its R4B type.

    Only these are validated: the decision must not depend on unrelated fields being perfect.
    """
    parts: list[tuple[str, type[BaseModel], Any]] = []
    if "medicationCodeableConcept" in order:
        parts.append(("medicationCodeableConcept", CodeableConcept, order["medicationCodeableConcept"]))
    if "medicationReference" in order:
        parts.append(("medicationReference", Reference, order["medicationReference"]))
    for name, model in (("reasonCode", CodeableConcept), ("reasonReference", Reference)):
        items = order.get(name)
        if items is not None and not isinstance(items, list):
            parts.append((name, model, items))  # a scalar where R4 has objects: unreadable
        for i, item in enumerate(items if isinstance(items, list) else []):
            parts.append((f"{name}[{i}]", model, item))
    # The CRD layer keeps the order's own extensions and replaces coverage information it finds
    # there (crd/coverage_info.annotated_order): what it reads must be Extension objects.
    extensions = order.get("extension")
    if extensions is not None and not isinstance(extensions, list):
        parts.append(("extension", Extension, extensions))
    for i, extension in enumerate(extensions if isinstance(extensions, list) else []):
        if not isinstance(extension, dict) or extension.get("url") == COVERAGE_INFORMATION_URL:
            parts.append((f"extension[{i}]", Extension, extension))
    dosages = order.get("dosageInstruction")
    if dosages is not None and not isinstance(dosages, list):
        parts.append(("dosageInstruction", DosageDoseAndRate, dosages))
    for i, dosage in enumerate(dosages if isinstance(dosages, list) else []):
        where = f"dosageInstruction[{i}]"
        if not isinstance(dosage, dict):
            parts.append((where, DosageDoseAndRate, dosage))  # any non-object fails validation
            continue
        if "route" in dosage:
            parts.append((f"{where}.route", CodeableConcept, dosage["route"]))
        rates = dosage.get("doseAndRate")
        if rates is not None and not isinstance(rates, list):
            parts.append((f"{where}.doseAndRate", DosageDoseAndRate, rates))
        for j, dose_and_rate in enumerate(rates if isinstance(rates, list) else []):
            parts.append((f"{where}.doseAndRate[{j}]", DosageDoseAndRate, dose_and_rate))
        timing = dosage.get("timing")
        repeat = timing.get("repeat") if isinstance(timing, dict) else None
        if isinstance(repeat, dict) and "duration" in repeat:
            parts.append((f"{where}.timing.repeat", TimingRepeat,
                          {k: repeat[k] for k in ("duration", "durationUnit") if k in repeat}))
    return parts


def _validate_orders(orders: tuple[tuple[str, dict], ...]) -> None:
    """Validate what the decision reads of each ketamine/lidocaine order with the R4B models.

    A part that cannot be read is a 400, not a guess. Other fields are not looked at.
    """
    issues = []
    for order_ref, order in orders:
        for part, model, value in _read_parts(order):
            for loc, message in validation_errors(model, value):
                where = ".".join([part, *loc])
                issues.append(Issue(f"{order_ref}: {where}: {message}", expression=(f"{order_ref}.{where}",)))
    if issues:
        raise ApiError(400, issues)


_Errors = tuple[tuple[tuple[str, ...], str], ...]
_VALIDATED: dict[tuple[type[BaseModel], bytes], _Errors] = {}
VALIDATED_MAX = 4096  # distinct (model, JSON) pairs remembered per process; then it starts again
VALIDATED_MAX_BYTES = 2048  # larger parts are validated every time (at most ~8 MiB remembered)


def validation_errors(model: type[BaseModel], value: Any) -> _Errors:
    """The first five errors of validating ``value`` with ``model`` (locations and messages).

    R4B validation is a pure function of the JSON, and the parts an EHR sends for these orders
    repeat (the same drug coding, route, reason codes and dose forms in order after order), so
    the outcome is remembered per exact JSON text (orjson, keys in the order sent), up to
    ``VALIDATED_MAX`` of them: a part seen before costs one serialisation instead of a model
    validation (about 60 µs each). A value orjson cannot write (an integer beyond 64 bits) or
    writes as ``null`` (also NaN and infinities, which must not share an outcome with null) is
    validated every time."""
    try:
        text = orjson.dumps(value)
        key = (model, text) if b"null" not in text and len(text) <= VALIDATED_MAX_BYTES else None
    except TypeError:
        key = None
    if key is not None:
        known = _VALIDATED.get(key)
        if known is not None:
            return known
    try:
        model.model_validate(value)
        errors: _Errors = ()
    except ValidationError as exc:
        errors = tuple((tuple(str(p) for p in err["loc"]), err["msg"]) for err in exc.errors()[:5])
    if key is not None:
        if len(_VALIDATED) >= VALIDATED_MAX:
            _VALIDATED.clear()
        _VALIDATED[key] = errors
    return errors


def normalize_request(request: HookRequest) -> HookRequest:
    """The request with its FHIR resources in R4 shape (single objects read as arrays).

    Deviations are logged at debug level (paths only), never put on a card.
    """
    if not needs_normalizing([request.draft_orders, *request.prefetch.values()]):
        return request  # the common case: one scan of all of them, no walk
    changes: list[str] = []
    draft_orders = normalize_resource(request.draft_orders, changes, "context.draftOrders")
    prefetch = {key: normalize_resource(value, changes, f"prefetch.{key}")
                for key, value in request.prefetch.items()}
    if not changes:  # copy-on-write: nothing was changed, so nothing is new
        return request
    log.debug("read single objects as arrays at: %r", changes[:20])
    return replace(request, draft_orders=draft_orders, prefetch=prefetch)


def evaluate(
    request: HookRequest,
    raw_body: bytes,
    knowledge: Knowledge,
    card_text: CardText,
    default_policy_id: str | PolicySettings,
    data_source_factory: Callable[..., DataSource] = DataSource,
    new_uuid: Callable[[], str] = random_uuid,
    max_cards: int | None = None,
    today: date | None = None,
    card_reserve: Callable[[Decision, tuple[CoverageMatch, ...]], int] | None = None,
) -> Evaluation:
    """``card_reserve`` tells, per decision, how many characters of the detail a caller will add
    (the CRD layer, :func:`cds_service.crd.respond.card_reserve`), so each card is rendered once."""
    if not mentions_target_drug(raw_body, knowledge):
        return Evaluation(cards=[], fast_path=True)

    request = normalize_request(request)
    index = build_index(request)
    data = data_source_factory(request, index)
    entries = list(draft_order_entries(request.draft_orders))
    rules = knowledge.medications

    screening = screen_orders(entries, request.selections, data.resolve, rules)
    if screening.unresolved:
        data.fetch_references([ref for _, ref in screening.unresolved])
        screening = screen_orders(entries, request.selections, data.resolve, rules,
                                  display_fallback=True)
    if screening.unresolved:
        raise ApiError(412, [
            Issue(f"{order_ref}: medication {ref} is neither in the request nor retrievable "
                  "from the FHIR server, so the service cannot tell whether the order is IV "
                  "ketamine or lidocaine.", "incomplete", expression=(order_ref,))
            for order_ref, ref in screening.unresolved
        ])
    if screening.unreadable:
        raise ApiError(400, [
            Issue(f"{order_ref}: {element} cannot be read, so the service cannot tell whether "
                  "the order is IV ketamine or lidocaine.", expression=(f"{order_ref}.{element}",))
            for order_ref, element in screening.unreadable
        ])
    if screening.unmatched_selections:
        log.warning("order-select: %d selection(s) name no draft order; every draft order was checked",
                    len(screening.unmatched_selections))
    _validate_orders(screening.target_orders)
    if not screening.in_scope:
        return Evaluation(cards=[])
    if max_cards is not None and len(screening.in_scope) > max_cards:
        raise ApiError.single(
            413, f"The request holds {len(screening.in_scope)} IV ketamine or lidocaine orders; "
                 f"this service answers at most {max_cards} cards in one call (setting "
                 "MAX_CARDS). Send the orders in smaller groups.",
            expression=("context.draftOrders",))
    data.prepare_patient_data()

    per_order = [(o, order_indications(o.order, data.resolve)) for o in screening.in_scope]
    unresolved_reasons = [ref for _, ind in per_order for ref in ind.unresolved]
    if unresolved_reasons:
        data.fetch_references(unresolved_reasons)
        per_order = [(o, order_indications(o.order, data.resolve)) for o, _ in per_order]

    need_problem_list = any(not ind.documented for _, ind in per_order)
    patient = data.patient_data(need_problem_list)
    problem_list = (problem_list_codes(patient.conditions, request.patient_id)
                    if patient.conditions is not None else None)

    # Policy choice per order: the plan's policy version is the one in effect on the order's date.
    today = today or date.today()
    decisions = [
        decide(order, indications, problem_list,
               choose_policy(patient.coverages or [], knowledge.policies, default_policy_id,
                             data.resolve, patient.coverage_unavailable,
                             when=order_date(order.order, today), patient_id=request.patient_id),
               knowledge.families, tuple(patient.unavailable), patient.conditions_partial)
        for order, indications in per_order
    ]
    # The technical details stay in the log; cards say it clinically. At INFO the one line per
    # hook call already names the decisions and the policy, so a decision gets its own line only
    # at DEBUG, or when data it needed could not be retrieved.
    debug = log.isEnabledFor(logging.DEBUG)
    for decision in decisions:
        if debug or decision.missing:
            log.info("decision order=%s kind=%s policy=%s (%s)%s", decision.order.order_ref, decision.kind,
                     decision.policy_choice.policy.id, decision.policy_choice.explanation,
                     "; could not be retrieved: " + "; ".join(decision.missing) if decision.missing else "")
    coverages = match_coverages(patient.coverages, knowledge.policies, default_policy_id,
                                data.resolve, request.patient_id)  # for CRD coverage information (crd/)
    fired = [d for d in decisions if d.fires]
    reserves = tuple(card_reserve(d, coverages) if card_reserve else 0 for d in fired)
    cards = [render_card(d, card_text, new_uuid(), reserve_chars=r) for d, r in zip(fired, reserves, strict=True)]
    return Evaluation(cards=cards, decisions=decisions, coverages=coverages, card_reserves=reserves)
