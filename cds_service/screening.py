"""Which draft orders are in scope: IV ketamine or IV lidocaine (pure functions over dicts)."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any

import orjson

from .knowledge import Drug, MedicationRules
from .resource_index import Resource, dicts_in
from .terminology import HCPCS, NDC, RXNORM, Code, coding_displays, codings_of

INACTIVE_ORDER_STATUSES = frozenset({"cancelled", "entered-in-error", "stopped", "completed"})
RATE_KEYS = ("rateQuantity", "rateRatio", "rateRange")
# "without epinephrine", "w/o epinephrine", "no epinephrine", "(NO EPINEPHRINE)": a product name
# that says what it does not contain is not that product.
_NEGATION_BEFORE = re.compile(r"\b(?:without|w/o|no|non|free of)[\s-]+$")
_NEGATION_AFTER = ("-free", " free")



@dataclass(frozen=True)
class MedicationFinding:
    """What the order's medication is, as far as this service cares."""

    status: str  # target | excluded | other | unresolved | unreadable
    drug: Drug | None = None
    matched: Code | None = None
    description: str = ""  # product text or display, for the card
    source: str = "medicationCodeableConcept"
    injectable_product: bool = False
    iv_only_product: bool = False
    unresolved_reference: str | None = None
    # Clinical words for the card when the finding rests on weaker evidence than a Medication
    # record, e.g. only the order's medication name; empty otherwise.
    caveat: str = ""


@dataclass(frozen=True)
class RouteFinding:
    is_iv: bool
    explanation: str
    # False when nothing in the order says how it is given (no route this service can read, no
    # infusion rate, no dosage text naming IV): IV use is then not ruled out, so the order is
    # taken as in scope (fail closed) and the card says the route is not confirmed.
    confirmed: bool = True


@dataclass(frozen=True)
class ScreenedOrder:
    order_ref: str
    order: Resource
    medication: MedicationFinding
    route: RouteFinding


@dataclass(frozen=True)
class ScreeningResult:
    in_scope: tuple[ScreenedOrder, ...]
    unresolved: tuple[tuple[str, str], ...]  # (order_ref, medication reference)
    considered: int  # MedicationRequests looked at
    # Every order of a target drug, IV or not: these are validated as FHIR R4 before deciding,
    # so a malformed ketamine or lidocaine order gets a 400 instead of a guess.
    target_orders: tuple[tuple[str, Resource], ...] = ()
    # Orders whose medication element is there but cannot be read: (order_ref, element).
    unreadable: tuple[tuple[str, str], ...] = ()
    # order-select selections naming no draft order in any form: then every order was screened.
    unmatched_selections: tuple[str, ...] = ()


def _has_malformed_coding(concept: dict[str, Any], codes: list[Code]) -> bool:
    """A coding that is not an object, or whose ``system`` or ``code`` is not a string."""
    codings = concept.get("coding")
    if not isinstance(codings, list) or len(codings) == len(codes):  # the common case: all read
        return False
    return any(not isinstance(c, dict) or any(k in c and not isinstance(c[k], str) for k in ("system", "code"))
               for c in codings)


def _concept_text(concept: dict[str, Any], codes: Iterable[Code]) -> str:
    parts = [concept.get("text")] if isinstance(concept.get("text"), str) else []
    parts.extend(c.display for c in codes if c.display)
    codings = concept.get("coding")
    if isinstance(codings, list) and len(codings) != len(codes):  # a coding without system or code:
        parts.extend(coding_displays(concept))  # its display still names the product
    unique = list(dict.fromkeys(p.strip() for p in parts if p.strip()))
    return " | ".join(unique)


def classify_medication_concept(
    concept: Any, rules: MedicationRules, *, source: str = "medicationCodeableConcept"
) -> MedicationFinding:
    """Classify a medication CodeableConcept as a target drug, an excluded product, or other.

    Codes decide first (excluded products, then the IV-capable product value sets, then
    HCPCS J-codes); free text is used only when no code is recognised.
    """
    if not isinstance(concept, dict):
        return MedicationFinding("other", source=source)
    codes = list(codings_of(concept))
    if _has_malformed_coding(concept, codes):  # e.g. a code sent as a JSON number: not a guess
        return MedicationFinding("unreadable", source=source)
    text = _concept_text(concept, codes)
    lowered = text.lower()

    excluded = [c for c in codes if rules.excluded.contains(c)]
    if excluded:
        return MedicationFinding("excluded", matched=excluded[0], description=text, source=source)

    iv_only = any(rules.iv_only_products.contains(c) for c in codes)
    for drug in rules.drugs:
        hits = sorted((c for c in codes if drug.valueset.contains(c)),
                      key=drug.valueset.specificity, reverse=True)
        if hits:
            matched = hits[0]
            known_display = drug.valueset.display_for(matched)
            dose_text = f"{lowered} {known_display.lower()}"
            injectable = matched.system == NDC or any(
                w in dose_text for w in rules.injectable_dose_form_words
            )
            return MedicationFinding(
                "target", drug, matched, text or known_display, source,
                injectable_product=injectable or iv_only, iv_only_product=iv_only,
            )

    by_id = {d.id: d for d in rules.drugs}
    for code in codes:
        if code.system == HCPCS and rules.hcpcs.get(code.code) in by_id:
            drug = by_id[rules.hcpcs[code.code]]  # type: ignore[index]
            return MedicationFinding("target", drug, code, text, source, injectable_product=True)

    for drug in rules.drugs:
        if any(p in lowered for p in drug.text_patterns):
            if _names_an_excluded_product(lowered, drug.exclude_text_patterns):
                return MedicationFinding("excluded", description=text, source=source)
            injectable = any(w in lowered for w in rules.injectable_dose_form_words)
            return MedicationFinding(
                "target", drug, None, text, source, injectable_product=injectable
            )
    return MedicationFinding("other", description=text, source=source)


def read_route(route: dict[str, Any], rules: MedicationRules) -> tuple[bool | None, str]:
    """(True, why) when the route says IV, (False, why) when it names another route, and
    (None, why) when it cannot be read (an unknown code system, no text): then the dosage decides.
    """
    codes = list(codings_of(route))
    text = route.get("text") if isinstance(route.get("text"), str) else ""
    for code in codes:
        if (rules.iv_routes.contains(code) or code.code.upper() in rules.iv_route_codes
                or rules.iv_route_words.search(code.display)):
            return True, f"route {code.label()}"
    if text and rules.iv_route_words.search(text):
        return True, f"route text '{text}'"
    for code in codes:
        if (rules.non_iv_routes.contains(code) or code.code.upper() in rules.non_iv_route_codes
                or rules.non_iv_route_words.search(code.display)):
            return False, code.label()
    if text and rules.non_iv_route_words.search(text):
        return False, f"route text '{text}'"
    unread = ", ".join(c.label() for c in codes) or (f"text '{text}'" if text else "empty route")
    return None, f"route not recognised ({unread})"


def _has_infusion_rate_or_duration(dosage: dict[str, Any]) -> bool:
    if any(any(k in dose_and_rate for k in RATE_KEYS) for dose_and_rate in dicts_in(dosage.get("doseAndRate"))):
        return True
    timing = dosage.get("timing")
    repeat = timing.get("repeat") if isinstance(timing, dict) else None
    return isinstance(repeat, dict) and "duration" in repeat


def _names_an_excluded_product(lowered: str, patterns: tuple[str, ...]) -> bool:
    """True when ``lowered`` mentions an excluded word (epinephrine, patch, ...) other than
    in a negation ("without epinephrine", "epinephrine-free")."""
    for pattern in patterns:
        start = lowered.find(pattern)
        while start != -1:
            end = start + len(pattern)
            if not (_NEGATION_BEFORE.search(lowered, max(0, start - 12), start)
                    or lowered.startswith(_NEGATION_AFTER, end)):
                return True
            start = lowered.find(pattern, end)
    return False


def assess_route(order: Resource, medication: MedicationFinding, rules: MedicationRules) -> RouteFinding:
    """IV when a dosage says so. A stated non-IV route decides unless another dosage says IV in
    its own way (an infusion rate or duration, IV in its text), or has a route that cannot be
    read: then that dosage is judged as an order without a route is."""
    dosages = dicts_in(order.get("dosageInstruction"))
    stated_non_iv: list[str] = []
    unreadable: list[str] = []
    open_dosages: list[dict[str, Any]] = []  # dosages whose route does not rule IV out
    for dosage in dosages:
        route = dosage.get("route")
        if isinstance(route, dict):
            is_iv, why = read_route(route, rules)
            if is_iv:
                return RouteFinding(True, why)
            if is_iv is False:
                stated_non_iv.append(why)
                continue
            unreadable.append(why)
        open_dosages.append(dosage)
    if stated_non_iv and not open_dosages:
        return RouteFinding(False, f"non-IV route: {', '.join(stated_non_iv)}")
    lead = f"{'; '.join(unreadable)}; " if unreadable else "no route given; "
    if stated_non_iv:
        lead = f"non-IV route in another dosage ({', '.join(stated_non_iv)}); " + lead
    if medication.iv_only_product:
        return RouteFinding(True, lead + "the product is a premixed IV bag labeled for IV use")
    if medication.injectable_product and any(_has_infusion_rate_or_duration(d) for d in open_dosages):
        return RouteFinding(True, lead + "injectable product with an infusion rate or duration")
    for dosage in open_dosages:
        text = dosage.get("text")
        if isinstance(text, str) and rules.iv_route_words.search(text):
            return RouteFinding(True, lead + f"dosage text '{text.strip()[:80]}'")
    if stated_non_iv and not unreadable:  # the others state no route and nothing that says IV
        return RouteFinding(False, f"non-IV route: {', '.join(stated_non_iv)}")
    return RouteFinding(True, lead + "no infusion rate or duration: IV use not ruled out", confirmed=False)


def order_reference(full_url: str | None, order: Resource, position: int) -> str:
    if isinstance(order.get("id"), str):
        return f"MedicationRequest/{order['id']}"
    return full_url or f"MedicationRequest (draftOrders entry {position})"


_HISTORY = re.compile(r"/_history/[^/]*$")


def reference_forms(reference: str | None) -> set[str]:
    """The spellings that name one draft order: as given (trimmed), without a ``/_history/N``
    version, and an absolute URL's trailing ``Type/id`` (selections are written each way)."""
    if not isinstance(reference, str) or not reference.strip():
        return set()
    value = _HISTORY.sub("", reference.strip()).rstrip("/")
    forms = {value}
    parts = value.split("/")
    if len(parts) > 2:
        forms.add("/".join(parts[-2:]))
    return forms


def _entry_forms(full_url: str | None, resource: Resource) -> set[str]:
    """The spellings that name one draftOrders entry: its fullUrl and its ``Type/id``."""
    forms = reference_forms(full_url)
    if isinstance(resource.get("id"), str) and isinstance(resource.get("resourceType"), str):
        forms |= reference_forms(f"{resource['resourceType']}/{resource['id']}")
    return forms


def _selected_forms(entries: list[tuple[str | None, Resource]],
                    selections: tuple[str, ...] | None) -> tuple[set[str] | None, tuple[str, ...]]:
    """The forms the selections name, or None (screen every order) when there are no selections
    or one of them names no draft order at all: the service cannot then tell which order was
    selected, so it does not guess that none of the target orders was (fail closed)."""
    if selections is None:
        return None, ()
    present = set().union(*(_entry_forms(full_url, resource) for full_url, resource in entries))
    wanted = [reference_forms(s) for s in selections]
    unmatched = tuple(s for s, forms in zip(selections, wanted, strict=True) if not forms & present)
    if unmatched:
        return None, unmatched
    return set().union(*wanted), ()


def screen_orders(
    entries: Iterable[tuple[str | None, Resource]],
    selections: tuple[str, ...] | None,
    resolve_medication: Callable[[str, Resource], Resource | None],
    rules: MedicationRules,
    *,
    display_fallback: bool = False,
) -> ScreeningResult:
    """Pick the in-scope orders. ``resolve_medication(reference, order)`` finds a Medication.

    With ``display_fallback``, a ``medicationReference`` whose Medication cannot be found is
    classified from the reference's ``display`` (see :func:`classify_medication_display`).
    """
    in_scope: list[ScreenedOrder] = []
    targets: list[tuple[str, Resource]] = []
    unresolved: list[tuple[str, str]] = []
    unreadable: list[tuple[str, str]] = []
    considered = 0
    entries = list(entries)
    selected, unmatched = _selected_forms(entries, selections)
    for position, (full_url, order) in enumerate(entries):
        if order.get("resourceType") != "MedicationRequest":
            continue
        ref = order_reference(full_url, order, position)
        if selected is not None and not _entry_forms(full_url, order) & selected:
            continue
        if str(order.get("status")) in INACTIVE_ORDER_STATUSES:  # a non-string status is not inactive
            continue
        if order.get("doNotPerform") is True:  # an order not to give the drug (only JSON true says so)
            continue
        considered += 1
        medication = _medication_of(order, resolve_medication, rules, display_fallback)
        if medication.status == "unresolved" and medication.unresolved_reference is not None:
            unresolved.append((ref, medication.unresolved_reference))
            continue
        if medication.status == "unreadable":
            unreadable.append((ref, medication.source))
            continue
        if medication.status != "target":
            continue
        targets.append((ref, order))
        route = assess_route(order, medication, rules)
        if route.is_iv:
            in_scope.append(ScreenedOrder(ref, order, medication, route))
    return ScreeningResult(tuple(in_scope), tuple(unresolved), considered, tuple(targets),
                           tuple(unreadable), unmatched)


def classify_medication_display(display: Any, reference: str, rules: MedicationRules) -> MedicationFinding:
    """Classify an order from its ``medicationReference.display`` alone.

    Before February 2024 Epic named the drug only there (e.g. "KETAMINE HCL 50 MG/ML IJ SOLN")
    and sent no Medication resource. A display naming a target drug and an injectable form is
    decided from the display, with a caveat for the card; one naming a target drug without an
    injectable form stays unresolved (the caller answers 412, never a silent "no cards"); one
    naming no target drug is another drug.
    """
    if not isinstance(display, str) or not display.strip():
        return MedicationFinding("unresolved", source=reference, unresolved_reference=reference)
    display = display.strip()
    finding = classify_medication_concept({"text": display}, rules, source=reference)
    if finding.status != "target":
        return finding
    if not finding.injectable_product:
        return MedicationFinding("unresolved", finding.drug, description=display, source=reference,
                                 unresolved_reference=reference)
    return replace(finding, caveat=f"Identified from the order's medication name '{display}'; "
                                   "the Medication record was not available.")


def _injectable_words(medication: Resource, rules: MedicationRules) -> bool:
    """The Medication's code or form says injectable (a diluent bag, an admixture)."""
    words = f"{_concept_words(medication.get('code'))} {_concept_words(medication.get('form'))}"
    return any(w in words for w in rules.injectable_dose_form_words)


def _names_a_product(medication: Resource) -> bool:
    """True when the Medication is coded as a product (RxNorm or NDC, in its code or an
    ingredient): a record with only a local code, or only words ("IV admixture"), does not say
    what it is as surely as the order's own name for the drug does."""
    concepts = [medication.get("code"), *(i.get("itemCodeableConcept") for i in dicts_in(medication.get("ingredient")))]
    return any(c.system in (RXNORM, NDC) for concept in concepts for c in codings_of(concept))


def _named_by_display(finding: MedicationFinding, display: Any, reference: str,
                      rules: MedicationRules) -> MedicationFinding:
    """``finding`` (the Medication names no target drug), unless the reference's ``display``
    names ketamine or lidocaine: a record coded only locally, or not at all, says no more than
    a missing one, so the display decides, with a caveat for the card."""
    if not isinstance(display, str) or not display.strip():  # nothing names the drug anywhere
        return finding if finding.description else MedicationFinding("unreadable", source="medicationReference")
    named = classify_medication_concept({"text": display.strip()}, rules, source=reference)
    if named.status != "target":
        return finding
    return replace(named, caveat=f"Identified from the order's medication name '{display.strip()}'; "
                                 "the Medication record does not name the drug in a code this service reads.")


def _concept_words(concept: object) -> str:
    """A CodeableConcept's text and displays, lower case ("" for anything else)."""
    return _concept_text(concept, list(codings_of(concept))).lower() if isinstance(concept, dict) else ""


def classify_medication_resource(medication: Resource, rules: MedicationRules, source: str,
                                 resolve: Callable[[str], Resource | None] | None = None) -> MedicationFinding:
    """A Medication by its code, else by its ingredients: an IV admixture is often coded as the
    bag or the diluent (or only named "IV admixture"), its drug given as an ingredient.

    An ingredient that is a target drug makes the Medication that drug, unless another ingredient
    names one of the drug's excluded products (epinephrine, ...); the form is injectable when the
    ingredient's product or the Medication's ``form`` says so. An ingredient given by reference
    (``itemReference`` to a Substance or Medication) is read by the code of what ``resolve``
    finds and by the reference's display; one with neither may be the drug, so a Medication not
    coded as a product (RxNorm, NDC) is then unresolved (fetched, else a 412).
    """
    finding = classify_medication_concept(medication.get("code"), rules, source=source)
    if finding.status != "other":
        return finding
    concepts, pending = _ingredient_concepts(medication, resolve)
    for concept in concepts:
        found = classify_medication_concept(concept, rules, source=f"{source} ingredient")
        if found.status != "target" or found.drug is None:
            continue
        words = " ".join(map(_concept_words, concepts))
        if _names_an_excluded_product(words, found.drug.exclude_text_patterns):
            return MedicationFinding("excluded", description=words, source=found.source)
        form_words = _concept_words(medication.get("form"))
        injectable = found.injectable_product or any(w in form_words for w in rules.injectable_dose_form_words)
        return replace(found, injectable_product=injectable)
    # An unread ingredient may be the drug, unless the Medication is coded as a product that is
    # no injectable (an oral tablet with its ingredients by reference, say).
    if pending and (not _names_a_product(medication) or _injectable_words(medication, rules)):
        return MedicationFinding("unresolved", source=pending[0], unresolved_reference=pending[0])
    return finding


def _ingredient_concepts(medication: Resource, resolve: Callable[[str], Resource | None] | None
                         ) -> tuple[list[dict[str, Any]], list[str]]:
    """The ingredients' concepts (``itemCodeableConcept``, or the ``code`` of the Substance or
    Medication an ``itemReference`` names), and the references that could not be read."""
    concepts: list[dict[str, Any]] = []
    pending: list[str] = []
    for ingredient in dicts_in(medication.get("ingredient")):
        concept = ingredient.get("itemCodeableConcept")
        if isinstance(concept, dict):
            concepts.append(concept)
            continue
        item = ingredient.get("itemReference")
        if not isinstance(item, dict):
            continue
        reference, display = item.get("reference"), item.get("display")
        target = resolve(reference) if isinstance(reference, str) and resolve is not None else None
        found = (isinstance(target, dict) and target.get("resourceType") in ("Substance", "Medication")
                 and isinstance(target.get("code"), dict))
        if found:
            concepts.append(target["code"])  # type: ignore[index]
        if isinstance(display, str) and display.strip():  # the EHR's own words for it count too
            concepts.append({"text": display.strip()})
        elif not found and isinstance(reference, str):
            pending.append(reference)
    return concepts, pending


def _medication_of(
    order: Resource,
    resolve_medication: Callable[[str, Resource], Resource | None],
    rules: MedicationRules,
    display_fallback: bool = False,
) -> MedicationFinding:
    if "medicationCodeableConcept" in order:
        if not isinstance(order["medicationCodeableConcept"], dict):
            return MedicationFinding("unreadable", source="medicationCodeableConcept")
        return classify_medication_concept(order["medicationCodeableConcept"], rules)
    reference = order.get("medicationReference")
    if isinstance(reference, dict) and isinstance(reference.get("reference"), str) and reference["reference"].strip():
        ref = reference["reference"]
        medication = resolve_medication(ref, order)
        if medication is None or medication.get("resourceType") != "Medication":
            if display_fallback:
                return classify_medication_display(reference.get("display"), ref, rules)
            return MedicationFinding("unresolved", source=ref, unresolved_reference=ref)
        finding = classify_medication_resource(medication, rules, source=ref,
                                               resolve=lambda item: (resolve_medication(item, medication)
                                                                     or resolve_medication(item, order)))
        if finding.status == "other" and not _names_a_product(medication):
            return _named_by_display(finding, reference.get("display"), ref, rules)
        return finding
    if isinstance(reference, dict) and isinstance(reference.get("display"), str):
        finding = classify_medication_display(reference["display"], "medicationReference", rules)
        # Nothing to fetch without a reference: what the display cannot decide is unreadable.
        return finding if finding.status != "unresolved" else replace(
            finding, status="unreadable", source="medicationReference", unresolved_reference=None)
    if reference is not None:
        return MedicationFinding("unreadable", source="medicationReference")
    # No medication[x] (R4 requires one): out of scope, unless the order's words name a target
    # drug, or it has R5's ``medication`` (a CodeableReference this service does not read).
    try:
        words = orjson.dumps(order).decode().lower()
    except TypeError:  # what orjson cannot write (an integer beyond 64 bits)
        words = str(order).lower()
    if "medication" in order or any(p in words for drug in rules.drugs for p in drug.text_patterns):
        return MedicationFinding("unreadable", source="medication[x]")
    return MedicationFinding("other")
