"""Render a decision as a CDS Hooks 2.0 card (pure; the uuid is passed in)."""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from typing import Any

from .decision import Decision
from .knowledge import Policy

SUMMARY_LIMIT = 139  # the spec asks for fewer than 140 characters
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_\[\]|~])")
MAX_ESCAPED_LENGTH = 200
MAX_STUDY_LINKS = 6
EXTENSION_KEY = "iv-anesthetics-cds"


def escape_markdown(text: str, limit: int = MAX_ESCAPED_LENGTH) -> str:
    """Make request-supplied text inert in GitHub-flavoured Markdown (and raw HTML)."""
    text = " ".join(str(text).split())
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return _MARKDOWN_SPECIAL.sub(r"\\\1", html.escape(text, quote=False))


def first_sentence(quote: str) -> str:
    """The first sentence of a quoted passage, marking the cut with [...] as the policy files do."""
    match = re.search(r"(?<=[A-Za-z0-9)\]])\.\s+(?=[A-Z[])", quote)
    return quote if match is None else quote[: match.start() + 1] + " [...]"


@dataclass(frozen=True)
class CardText:
    raw: dict[str, Any]

    def get(self, *path: str) -> Any:
        node: Any = self.raw
        for key in path:
            node = node[key]
        return node


def _fit_summary(template: str, values: dict[str, str]) -> str:
    summary = " ".join(template.format(**values).split())
    if len(summary) > SUMMARY_LIMIT:
        summary = " ".join(template.replace(" {number}", "").format(**values).split())
    if len(summary) > SUMMARY_LIMIT:
        summary = summary[: SUMMARY_LIMIT - 1].rstrip() + "…"
    return summary


def _evidence_block(policy: Policy, family_id: str | None, section_id: str | None,
                    text: CardText, indication_label: str) -> tuple[list[str], list[dict]]:
    """Markdown lines and link objects for the evidence on one indication family."""
    lines: list[str] = []
    links: list[dict] = []
    general = f"{section_id}_general" if section_id == "chronic_pain" else "psychiatric_general"
    evidence = policy.evidence.get(family_id or "") or policy.evidence.get(general)
    if evidence is None:
        return lines, links
    if policy.evidence.get(family_id or ""):
        heading = text.get("headings", "evidence").format(indication=indication_label)
    else:
        section_name = text.get("labels", "section_names").get(section_id or "", "")
        heading = text.get("headings", "evidence_general").format(section=section_name)
    lines.append(f"**{heading}**")
    lines.append("")
    limits = text.get("limits")
    for study in evidence.get("studies", [])[: limits["studies"]]:
        citation = policy.citations.get(study["ref"], {})
        label = citation.get("label", study["ref"])
        url = citation.get("url")
        ref = f"[{label}]({url})" if url else label
        lines.append(f"- {ref}: {study['finding']}")
        if url and len(links) < MAX_STUDY_LINKS:
            links.append({"label": _short(label), "url": url, "type": "absolute"})
    for rating in evidence.get("ratings", []):
        lines.append(f"- {rating.get('source', 'Rating')} rating {rating.get('rating', '')}: "
                     f"{rating.get('text', '')}".rstrip())
    for guideline in evidence.get("guidelines", [])[: limits["guidelines"]]:
        citation = policy.citations.get(guideline.get("ref", ""), {})
        label = citation.get("label") or guideline.get("ref", "Guideline")
        lines.append(f"- {label}: {first_sentence(guideline.get('text', ''))}")
        url = citation.get("url")
        if url and len(links) < MAX_STUDY_LINKS and all(link["url"] != url for link in links):
            links.append({"label": _short(label), "url": url, "type": "absolute"})
    lines.append("")
    return lines, links


def render_card(decision: Decision, text: CardText, card_uuid: str) -> dict[str, Any]:
    policy = decision.policy_choice.policy
    order = decision.order
    drug = order.medication.drug.label if order.medication.drug else "anesthetic"
    family = decision.family
    indication_label = family.label if family else ""
    values = {
        "drug": drug,
        "indication": indication_label,
        "payer": policy.payer_short_name,
        "payer_name": policy.payer_name,
        "number": policy.number,
        "title": policy.title,
    }
    kind = decision.kind
    summary = _fit_summary(text.get("summary", kind), values)

    detail: list[str] = [text.get("lead", kind).format(**values), ""]

    # The policy statement(s), quoted.
    sections = [policy.sections[decision.section_id]] if decision.section_id in policy.sections \
        else list(policy.sections.values())
    version = f", version {policy.version}" if policy.version else ""
    number = f" {policy.number}" if policy.number else ""
    detail.append(f"**{text.get('headings', 'policy')}: {policy.payer_name}{number}{version}** "
                  f"({escape_markdown(decision.policy_choice.explanation)})")
    detail.append("")
    for section in sections:
        detail.append(f"> **{section.label}** {section.statement}")
        detail.append("")

    # Why it matched.
    medication = order.medication
    med_desc = escape_markdown(medication.description or drug)
    med_code = f" — {escape_markdown(medication.matched.label())}" if medication.matched else ""
    detail.append(f"**{text.get('headings', 'why')}**")
    detail.append("")
    detail.append(f"- Order: {escape_markdown(order.order_ref)}")
    detail.append(f"- Medication: {med_desc}{med_code}")
    detail.append(f"- IV because: {escape_markdown(order.route.explanation)}")
    if decision.primary is not None:
        ind = decision.primary.indication
        detail.append(f"- Indication: {escape_markdown(ind.describe())} from "
                      f"{escape_markdown(ind.source)}; policy family: {decision.primary.family.label}")
    others = [m for m in decision.matches if m is not decision.primary][:5]
    for match in others:
        detail.append(f"- Also found: {escape_markdown(match.indication.describe())} "
                      f"({match.family.label}) from {escape_markdown(match.indication.source)}")
    for missing in decision.missing:
        detail.append(f"- Could not be retrieved: {escape_markdown(missing)}")
    for reason in decision.uncoded:
        detail.append(f"- Not coded: {escape_markdown(reason)}")
    detail.append("")

    evidence_lines, links = _evidence_block(policy, family.id if family else None,
                                            decision.section_id, text, indication_label)
    if kind in ("warning", "warning_problem_list", "advisory"):
        detail.extend(evidence_lines)
    else:
        links = []

    detail.append(f"**{text.get('headings', 'change')}**")
    detail.append("")
    detail.extend(f"- {item}" for item in text.get("change_items"))

    card_links = []
    if policy.url:
        card_links.append({
            "label": " ".join(text.get("labels", "policy_link").format(**values).split()),
            "url": policy.url,
            "type": "absolute",
        })
    card_links.extend(links)

    source: dict[str, Any] = {"label": policy.payer_name, "topic": dict(text.get("topic"))}
    if policy.url:
        source["url"] = policy.url

    card: dict[str, Any] = {
        "uuid": card_uuid,
        "summary": summary,
        "detail": "\n".join(line for line in detail).strip(),
        "indicator": decision.indicator,
        "source": source,
        "overrideReasons": [
            {"system": f"urn:iv-anesthetics-cds:override-reason:{policy.id}", "code": r["code"],
             "display": r["display"]}
            for r in policy.override_reasons
        ],
        "extension": {
            EXTENSION_KEY: _without_empty({
                "policy": policy.id,
                "policyBasis": decision.policy_choice.basis,
                "section": decision.section_id,
                "family": family.id if family else None,
                "basis": decision.basis,
                "order": order.order_ref,
                "drug": order.medication.drug.id if order.medication.drug else None,
            })
        },
    }
    if card_links:
        card["links"] = card_links
    return card


def _short(label: str, limit: int = 100) -> str:
    return label if len(label) <= limit else label[: limit - 1].rstrip() + "…"


def _without_empty(mapping: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in mapping.items() if v not in (None, "", [], {})}
