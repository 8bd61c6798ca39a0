"""Render a decision as a CDS Hooks 2.0 card (pure; the uuid is passed in).

The card follows the CRD card guidance (davinci-crd.md §1.5): an actionable summary, then the
decision and the policy's own words first, why in a line or two, and the two or three strongest
studies of the ordered drug; the rest stays behind the links. The detail is kept within
``limits.detail_chars`` of cards/card-text.json by dropping the least important lines first.
Nothing technical reaches the card: no code-system URLs, resource ids, server or settings words.
"""

from __future__ import annotations

import functools
import html
import re
from dataclasses import dataclass
from typing import Any, NamedTuple

from .decision import Decision
from .identity_memo import IdentityMemo
from .indications import ClassifiedCode, UncodedReason
from .knowledge import Family, Policy
from .policy_choice import PolicyChoice
from .screening import ScreenedOrder
from .terminology import RXNORM, SYSTEM_NAMES, Code, codings_of

SUMMARY_LIMIT = 139  # the spec asks for fewer than 140 characters
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_\[\]|~])")
MAX_ESCAPED_LENGTH = 200
EXTENSION_KEY = "iv-anesthetics-cds"
WARNING_KINDS = ("warning", "warning_problem_list", "advisory")

# Priorities of detail blocks: lower is kept longer when the detail must be shortened.
ESSENTIAL, IMPORTANT, USEFUL, EXTRA = 0, 1, 2, 3


ESCAPE_CACHE_SIZE = 4096  # distinct (text, limit) pairs kept per process
ESCAPE_CACHE_MAX_CHARS = 512  # longer texts are escaped every time


def escape_markdown(text: str, limit: int = MAX_ESCAPED_LENGTH) -> str:
    """Make request-supplied text inert in GitHub-flavoured Markdown (and raw HTML).

    A pure function of its arguments, and the texts repeat from call to call (drug names, code
    displays, routes, plan names), so short ones are kept in a bounded cache."""
    if type(text) is str and len(text) <= ESCAPE_CACHE_MAX_CHARS:
        return _escape_short(text, limit)
    return _escape(text, limit)


@functools.lru_cache(maxsize=ESCAPE_CACHE_SIZE)
def _escape_short(text: str, limit: int) -> str:
    return _escape(text, limit)


def _escape(text: object, limit: int) -> str:
    flat = " ".join(str(text).split())
    if len(flat) > limit:
        flat = flat[: limit - 1] + "…"
    return _MARKDOWN_SPECIAL.sub(r"\\\1", html.escape(flat, quote=False))


def first_sentence(quote: str) -> str:
    """The first sentence of a quoted passage, marking the cut with [...] as the policy files do."""
    match = re.search(r"(?<=[A-Za-z0-9)\]])\.\s+(?=[A-Z[])", quote)
    return quote if match is None else quote[: match.start() + 1] + " [...]"


def shorten(text: str, limit: int) -> str:
    """``text`` cut at a word boundary to at most ``limit`` characters, marked with an ellipsis."""
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    cut = text[: limit - 1].rsplit(" ", 1)[0].rstrip(",;:")
    return cut + "…"


@dataclass(frozen=True)
class CardText:
    raw: dict[str, Any]

    def get(self, *path: str) -> Any:
        node: Any = self.raw
        for key in path:
            node = node[key]
        return node


class Block(NamedTuple):  # a tuple: built ten times per card, a frozen dataclass cost 3x as much
    priority: int
    text: str
    links: tuple[dict[str, str], ...] = ()


def _fit_summary(template: str, values: dict[str, str]) -> str:
    summary = " ".join(template.format(**values).split())
    if len(summary) > SUMMARY_LIMIT:
        summary = " ".join(template.replace(" {number}", "").format(**values).split())
    if len(summary) > SUMMARY_LIMIT:  # at a word, never inside one, and no parenthesis left open
        cut = summary[: SUMMARY_LIMIT - 2]
        cut = cut[: cut.rfind(" ")] if " " in cut else cut
        summary = cut.rstrip(" ;,:(") + "…" + (")" if cut.count("(") > cut.count(")") else "")
    return summary[:1].upper() + summary[1:]  # "Ketamine (if IV): …"


def _fit_detail(blocks: list[Block], limit: int) -> list[Block]:
    """Drop the lowest-priority blocks (the last of equal priority first) until the detail fits."""
    kept = list(blocks)
    # With no block empty or padded (the rule), the joined length is the blocks' lengths and two
    # characters between each two: the lengths are counted, and the detail is not joined here.
    counted = bool(blocks) and all(b.text and b.text == b.text.strip() for b in blocks)
    length = sum(len(b.text) for b in blocks) + 2 * (len(blocks) - 1)
    if (length if counted else len(_join(kept))) <= limit:
        return kept
    drop_order = sorted((i for i, b in enumerate(blocks) if b.priority > ESSENTIAL),
                        key=lambda i: (blocks[i].priority, i), reverse=True)
    dropped: set[int] = set()
    for position in drop_order:
        dropped.add(position)
        if counted:
            length -= len(blocks[position].text) + 2
            if length > limit:
                continue
        kept = [b for i, b in enumerate(blocks) if i not in dropped]
        if len(_join(kept)) <= limit:
            return kept
    return [b for i, b in enumerate(blocks) if i not in dropped]


def _join(blocks: list[Block]) -> str:
    return "\n\n".join(b.text for b in blocks).strip()


# -- the order, in words --------------------------------------------------------------------


def _rxnorm_of(order: ScreenedOrder) -> Code | None:
    """The RxNorm coding of the ordered product, when the order or its contained Medication has one."""
    raw = order.order
    concepts = [raw.get("medicationCodeableConcept")]
    ref = raw.get("medicationReference")
    if isinstance(ref, dict) and isinstance(ref.get("reference"), str) and ref["reference"].startswith("#"):
        contained = raw.get("contained")
        for resource in contained if isinstance(contained, list) else []:
            if isinstance(resource, dict) and resource.get("id") == ref["reference"][1:]:
                concepts.append(resource.get("code"))
    for concept in concepts:
        for code in codings_of(concept):
            if code.system == RXNORM:
                return code
    return None


def _medication_words(order: ScreenedOrder, drug: str) -> str:
    medication = order.medication
    name = (medication.description or "").split(" | ")[0].strip() or drug
    code = medication.matched
    if code is None or code.system != RXNORM:
        code = _rxnorm_of(order) or code
    known = code is not None and code.system in SYSTEM_NAMES
    suffix = f" ({code.system_name} {escape_markdown(code.code)})" if known and code else ""
    return escape_markdown(name) + suffix


def _route_words(order: ScreenedOrder) -> str:
    """The route by its display or text; for an order without one, why it counts as IV."""
    dosages = order.order.get("dosageInstruction")
    for dosage in dosages if isinstance(dosages, list) else [dosages]:
        route = dosage.get("route") if isinstance(dosage, dict) else None
        if not isinstance(route, dict):
            continue
        names = [c.display for c in codings_of(route) if c.display.strip()]
        text = route.get("text") if isinstance(route.get("text"), str) else ""
        name = text.strip() or (names[0] if names else "")
        if name.casefold().endswith(" route"):
            name = name[: -len(" route")]
        if name:
            return f", route {escape_markdown(name, 60)}"
    explanation = order.route.explanation
    if not order.route.confirmed:
        return ""  # the card's route_unconfirmed line says it
    if "premixed IV bag" in explanation:
        return ", a premixed IV bag"
    if "infusion rate or duration" in explanation:
        return ", given as an infusion (rate or duration set)"
    return ""


def _code_words(match: ClassifiedCode) -> str:
    code = match.indication.code
    name = code.display or match.indication.text
    words = f"{code.system_name} {code.code}" + (f" ({name})" if name else "")
    return escape_markdown(words, 120)


# -- blocks -----------------------------------------------------------------------------------


def _indication_list(named: tuple[ClassifiedCode, ...]) -> str:
    labels = [f"**{m.family.label}**" for m in named]
    if len(labels) <= 1:
        return "".join(labels)
    return ", ".join(labels[:-1]) + " and " + labels[-1]


def _quote_blocks(policy: Policy, named: tuple[ClassifiedCode, ...]) -> list[Block]:
    sections = list(dict.fromkeys(m.family.section for m in named))
    return [Block(ESSENTIAL, f"> **{policy.sections[s].label}** {policy.sections[s].statement}")
            for s in sections if s in policy.sections]


class _Replaced(NamedTuple):
    """The "this policy version was replaced" line of a policy, but for the order's date."""

    template: str  # formatted with ``when`` and ``fill``
    fill: dict[str, str]
    links: tuple[dict[str, str], ...]


def _replaced_parts(policy: Policy, text: CardText, values: dict[str, str]) -> _Replaced | None:
    if policy.effective_end is None:
        return None
    fill = {"version": policy.version or policy.number or policy.title, "end": policy.effective_end.isoformat()}
    links: tuple[dict[str, str], ...] = ()
    if policy.find_current:
        hint = policy.find_current
        if policy.find_current_url:
            hint = f"[{policy.find_current}]({policy.find_current_url})"
            label = " ".join(text.get("labels", "find_current_link").format(**values).split())
            links = ({"label": label, "url": policy.find_current_url, "type": "absolute"},)
        return _Replaced(text.get("lines", "replaced"), {**fill, "find_current": hint}, links)
    return _Replaced(text.get("lines", "replaced_no_hint"), fill, links)


def _replaced_block(choice: PolicyChoice, replaced: _Replaced | None) -> list[Block]:
    if not choice.replaced or replaced is None or choice.when is None:
        return []
    return [Block(IMPORTANT, replaced.template.format(when=choice.when.isoformat(), **replaced.fill),
                  replaced.links)]


def _uncoded_lines(reasons: tuple[UncodedReason, ...], text: CardText) -> list[Block]:
    blocks = []
    section_names = text.get("labels", "section_names")
    for reason in reasons:
        if reason.family is not None:
            codes = "; ".join(f"{c.system_name} {c.code}" for c in reason.local_codes)
            line = text.get("lines", "reads_as_unlisted" if reason.unlisted else "reads_as").format(
                name=escape_markdown(reason.name, 80), family=reason.family.label,
                code=escape_markdown(codes, 80),  # read by the unlisted line only
                section=section_names.get(reason.family.section, reason.family.section))
        elif reason.name:
            line = text.get("lines", "not_coded").format(name=escape_markdown(reason.name, 80))
        elif reason.unread_type:
            line = text.get("lines", "reason_not_read").format(resource=escape_markdown(reason.unread_type, 40))
        else:
            line = text.get("lines", "condition_without_code")
        blocks.append(Block(IMPORTANT, line))
    return blocks


def _studies_blocks(policy: Policy, primary: ClassifiedCode, drug_id: str, drug: str,
                    text: CardText) -> list[Block]:
    family = primary.family
    section = family.section
    general = "chronic_pain_general" if section == "chronic_pain" else "psychiatric_general"
    evidence = policy.evidence.get(family.id) or policy.evidence.get(general) or {}
    label = family.label if policy.evidence.get(family.id) else \
        text.get("labels", "section_names").get(section, section).replace("-", " ")
    studies = list(evidence.get("studies", []))
    if not studies:
        return [Block(USEFUL, text.get("lines", "no_studies").format(indication=label))]
    of_drug = [s for s in studies if s.get("drug") == drug_id]
    ordered = of_drug + [s for s in studies if s.get("drug") != drug_id]
    limits = text.get("limits")
    heading = "evidence" if of_drug else "no_study_of_drug"  # one line: what the studies are of
    blocks = [Block(USEFUL, text.get("lines", heading).format(drug=drug, indication=label))]
    for rank, study in enumerate(ordered[: limits["studies"]]):
        citation = policy.citations.get(study["ref"], {})
        name = citation.get("label", study["ref"])
        url = citation.get("url") or ""
        ref = f"[{name}]({url})" if url.startswith("https://") else name
        finding = shorten(study["finding"], limits["finding_chars"])
        links = ({"label": shorten(name, 100), "url": url, "type": "absolute"},) if url.startswith("https://") else ()
        priority = USEFUL if rank < 2 else EXTRA  # the two strongest stay; a third only if it fits
        blocks.append(Block(priority, f"- {ref} — *{study.get('drug', '')}*: {finding}", links))
    return blocks


def _plan_block(choice: PolicyChoice, text: CardText, values: dict[str, str]) -> list[Block]:
    if choice.basis == "coverage":
        key = "plan_coverage"
    elif choice.basis == "unmatched":  # the no-policy lead names the plan; say what was not read
        return [Block(ESSENTIAL, text.get("lines", "no_policy_coverage_unknown"))] if choice.coverage_unknown else []
    elif choice.plan:
        key = "plan_default_unmatched"
    elif choice.coverage_unknown:
        key = "plan_default_unknown"
    else:
        key = "plan_default_no_coverage"
    # Which plan's policy this is, and why, is never dropped: without it a default policy reads as
    # the patient's own plan.
    return [Block(ESSENTIAL, text.get("lines", key).format(plan=escape_markdown(choice.plan, 80), **values))]


class _Frame(NamedTuple):
    """The parts of a card that follow from knowledge alone: the policy, the card text, the
    ordered drug, the indication families named and the kind of decision."""

    values: dict[str, str]  # the card text's fields; read, never changed, by each card
    summary: str
    head: tuple[Block, ...]  # the lead line and the policy's own words
    tail: tuple[Block, ...]  # the studies and the "change the order" line
    policy_link: dict[str, str] | None
    source: dict[str, Any]
    override_reasons: tuple[dict[str, str], ...]
    replaced: _Replaced | None  # the line for an order dated after the policy's effective end


# Per policy, card text, drug and families (by identity), kind and problem-list state: a card's
# knowledge-only parts are worked out once per combination instead of on every card.
_FRAMES: IdentityMemo[_Frame] = IdentityMemo(512)


def _named(decision: Decision) -> tuple[ClassifiedCode, ...]:
    """Every policy indication the card names, primary first."""
    return decision.named or ((decision.primary,) if decision.primary else ())


def _reads_as(decision: Decision) -> Family | None:
    """The family an uncoded reason's words name, if any."""
    return next((u.family for u in decision.uncoded if u.family is not None), None)


def _frame(decision: Decision, text: CardText, named: tuple[ClassifiedCode, ...],
           reads_as: Family | None) -> _Frame:
    policy = decision.policy_choice.policy
    drug = decision.order.medication.drug
    primary = decision.primary.family if decision.primary else None
    objects = (policy, text, drug, reads_as, primary, *(m.family for m in named))
    return _FRAMES.get(objects, lambda: _build_frame(decision, text, named, reads_as),
                       decision.kind, decision.problem_list_unavailable, decision.problem_list_partial,
                       decision.reads_unlisted_code, decision.order.route.confirmed)


def _build_frame(decision: Decision, text: CardText, named: tuple[ClassifiedCode, ...],
                 reads_as: Family | None) -> _Frame:
    choice = decision.policy_choice
    policy = choice.policy
    order = decision.order
    drug_id = order.medication.drug.id if order.medication.drug else ""
    drug = order.medication.drug.label if order.medication.drug else "anesthetic"
    kind = decision.kind
    number = policy.number
    values = {
        "drug": drug,
        "indication": (" and ".join(m.family.label for m in named) if named
                       else reads_as.label if reads_as else ""),
        "indications": _indication_list(named),
        "payer": policy.payer_short_name,
        "payer_name": policy.payer_name,
        "number": number,
        "title": policy.title,
        "policy_name": f"{policy.payer_name} policy {number}" if number
        else f"{policy.payer_name} policy *{policy.title}*",
    }
    # The summary says "IV" only where the order's route says so (else: "ketamine (if IV)").
    values["iv_drug"] = text.get("labels", "iv_drug" if order.route.confirmed else "iv_drug_unconfirmed").format(
        drug=drug)
    unlisted = decision.reads_unlisted_code
    summary_key = kind
    if kind == "uncoded_reason" and reads_as:
        summary_key = "unlisted_reason_named" if unlisted else "uncoded_reason_named"
    summary = _fit_summary(text.get("summary", summary_key), values)
    if "…" in summary and len(named) > 1:  # the plan's name matters more than the second family's
        for shorter in (f"{named[0].family.label} (+{len(named) - 1} more)", named[0].family.label):
            values["indication"] = shorter
            summary = _fit_summary(text.get("summary", summary_key), values)
            if "…" not in summary:
                break

    lead_key = "unlisted_reason" if kind == "uncoded_reason" and unlisted else kind
    if kind == "undocumented" and decision.problem_list_unavailable:
        lead_key = "undocumented_unavailable"
    elif kind == "undocumented" and decision.problem_list_partial:
        lead_key = "undocumented_partial"
    head: list[Block] = [Block(ESSENTIAL, " ".join(text.get("lead", lead_key).format(**values).split()))]
    if kind in WARNING_KINDS:
        head.extend(_quote_blocks(policy, named))
    elif kind == "uncoded_reason" and reads_as is not None and reads_as.section in policy.sections:
        section = policy.sections[reads_as.section]
        head.append(Block(ESSENTIAL, f"> **{section.label}** {section.statement}"))

    tail: list[Block] = []
    if kind in WARNING_KINDS:
        tail.extend(_studies_blocks(policy, decision.primary, drug_id, drug, text) if decision.primary else ())
    if kind != "no_policy":
        tail.append(Block(EXTRA, text.get("lines", "change")))

    policy_link = None
    if policy.url:
        policy_link = {"label": " ".join(text.get("labels", "policy_link").format(**values).split()),
                       "url": policy.url, "type": "absolute"}
    source: dict[str, Any] = {"label": policy.payer_name, "topic": dict(text.get("topic"))}
    if policy.url:
        source["url"] = policy.url
    override_reasons = tuple(
        {"system": f"urn:iv-anesthetics-cds:override-reason:{policy.id}", "code": r["code"], "display": r["display"]}
        for r in policy.override_reasons)
    return _Frame(values, summary, tuple(head), tuple(tail), policy_link, source, override_reasons,
                  _replaced_parts(policy, text, values))


def render_card(decision: Decision, text: CardText, card_uuid: str, reserve_chars: int = 0) -> dict[str, Any]:
    """The card for one decision; ``reserve_chars`` leaves room under the detail limit for lines a
    caller adds (the Da Vinci CRD layer names the order and says what the card adds)."""
    named, reads_as = _named(decision), _reads_as(decision)
    frame = _frame(decision, text, named, reads_as)
    values = frame.values
    choice = decision.policy_choice
    policy = choice.policy
    order = decision.order
    drug_id = order.medication.drug.id if order.medication.drug else ""
    drug = values["drug"]
    kind = decision.kind

    blocks: list[Block] = list(frame.head)
    if kind != "no_policy":
        blocks.extend(_replaced_block(choice, frame.replaced))
    blocks.extend(_plan_block(choice, text, values))

    if kind in WARNING_KINDS and named:
        codes = "; ".join(_code_words(m) for m in named)
        key = "why_problem_list" if kind == "warning_problem_list" else "why_order"
        blocks.append(Block(IMPORTANT, text.get("lines", key).format(codes=codes)))
    blocks.extend(_uncoded_lines(decision.uncoded, text))

    blocks.append(Block(IMPORTANT, text.get("lines", "order").format(
        medication=_medication_words(order, drug), route=_route_words(order))))
    if not order.route.confirmed:
        # The card fires because the route could not be confirmed: that is never trimmed away.
        blocks.append(Block(ESSENTIAL, text.get("lines", "route_unconfirmed").format(drug=drug)))
    caveat = order.medication.caveat
    if caveat.strip():
        blocks.append(Block(IMPORTANT, f"**Note:** {escape_markdown(caveat, 300)}"))
    blocks.extend(frame.tail)

    blocks = _fit_detail(blocks, text.get("limits", "detail_chars") - reserve_chars)
    if not any(b.text.startswith("- ") for b in blocks):  # a studies heading without studies
        blocks = [b for b in blocks if not b.text.startswith(("**Studies", "**The policy cites no study"))]

    card_links: list[dict[str, str]] = [dict(frame.policy_link)] if frame.policy_link else []
    for block in blocks:
        for link in block.links:
            if all(link["url"] != known["url"] for known in card_links):
                card_links.append(dict(link))

    source = dict(frame.source, topic=dict(frame.source["topic"]))
    card: dict[str, Any] = {
        "uuid": card_uuid,
        "summary": frame.summary,
        "detail": _join(blocks),
        "indicator": decision.indicator,
        "source": source,
        "overrideReasons": [dict(r) for r in frame.override_reasons],
        "extension": {
            EXTENSION_KEY: _without_empty({
                "policy": policy.id,
                "policyBasis": choice.basis,
                "policyVersion": policy.version,
                "policyReplaced": choice.replaced or None,
                "section": decision.section_id,
                "family": decision.family.id if decision.family else None,
                "families": [m.family.id for m in named] if len(named) > 1 else None,
                "readsAs": reads_as.id if reads_as else None,
                "basis": decision.basis,
                "order": order.order_ref,
                "drug": drug_id or None,
            })
        },
    }
    if not card["overrideReasons"]:
        del card["overrideReasons"]
    if card_links:
        card["links"] = card_links
    return card


def _without_empty(mapping: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in mapping.items() if v not in (None, "", [], {})}
