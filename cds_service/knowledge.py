"""Load the policy knowledge in ``cards/`` into immutable, typed structures.

Everything a decision needs -- payer policies, indication families, value sets and
medication rules -- is data. Adding a payer or a policy version means adding files to
``cards/``; nothing here names a payer, a drug code or a diagnosis code.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import date
from functools import cache
from itertools import pairwise
from pathlib import Path
from typing import Any

import jsonschema
from fhir.resources.R4B.valueset import ValueSet

from .terminology import ValueSetMatcher

SCHEMA_DIR = Path(__file__).parent / "schemas"
WARNING_SECTIONS = ("chronic_pain", "psychiatric")
QUIET_SECTIONS = ("approved_use", "not_addressed")


@dataclass(frozen=True)
class Family:
    """An indication family (e.g. CRPS) and the policy section it falls under."""

    id: str
    label: str
    section: str
    role: str  # flag | context | advisory | approved | out_of_scope
    valueset: ValueSetMatcher
    drugs: frozenset[str]
    exempts: frozenset[str] = frozenset()  # sections this (never-warn) use silences on the order
    synonyms: tuple[str, ...] = ()  # names of the family in words (seed wording)


@dataclass(frozen=True)
class Drug:
    id: str
    label: str
    valueset: ValueSetMatcher
    text_patterns: tuple[str, ...]
    exclude_text_patterns: tuple[str, ...]


@dataclass(frozen=True)
class PolicySection:
    id: str
    label: str
    statement: str


@dataclass(frozen=True)
class Policy:
    id: str
    payer_name: str
    payer_short_name: str
    aliases: tuple[str, ...]
    identifiers: tuple[tuple[str, str], ...]
    title: str
    number: str
    version: str
    url: str | None
    sections: dict[str, PolicySection]
    evidence: dict[str, dict[str, Any]]
    citations: dict[str, dict[str, Any]]
    override_reasons: tuple[dict[str, str], ...]
    summary_of_evidence: str
    raw: dict[str, Any] = field(repr=False)
    key: str = ""  # groups the versions of one plan's policy (cards/policies/*.json "policy_key")
    effective_start: date | None = None  # inclusive; None: open
    effective_end: date | None = None  # exclusive: the date this version was replaced; None: open
    find_current: str = ""  # how to find the current version, in words
    find_current_url: str = ""

    def in_effect(self, when: date) -> bool:
        return ((self.effective_start is None or self.effective_start <= when)
                and (self.effective_end is None or when < self.effective_end))


@dataclass(frozen=True)
class MedicationRules:
    drugs: tuple[Drug, ...]
    hcpcs: dict[str, str | None]
    excluded: ValueSetMatcher
    iv_only_products: ValueSetMatcher
    iv_routes: ValueSetMatcher
    non_iv_routes: ValueSetMatcher
    injectable_dose_form_words: tuple[str, ...]
    iv_route_codes: frozenset[str]  # codes that mean IV in whatever system (NCI, HL7 v3)
    non_iv_route_codes: frozenset[str]
    iv_route_words: re.Pattern[str]
    non_iv_route_words: re.Pattern[str]


@dataclass(frozen=True)
class Knowledge:
    policies: dict[str, Policy]
    families: tuple[Family, ...]
    medications: MedicationRules
    valuesets: dict[str, ValueSetMatcher]
    scanner: DrugScanner = field(repr=False)

    def family(self, family_id: str) -> Family:
        return next(f for f in self.families if f.id == family_id)


def _read_json(path: Path) -> Any:
    with path.open(encoding="utf-8") as handle:
        return json.load(handle)


@cache
def _schema(name: str) -> dict:
    return _read_json(SCHEMA_DIR / name)


def _load_valuesets(directory: Path) -> dict[str, ValueSetMatcher]:
    matchers: dict[str, ValueSetMatcher] = {}
    for path in sorted(directory.glob("*.json")):
        data = _read_json(path)
        ValueSet.model_validate(data)  # raises on anything that is not a FHIR ValueSet
        matcher = ValueSetMatcher.from_fhir(data)
        matchers[path.stem] = matcher
    return matchers


def _load_policy(path: Path) -> Policy:
    data = _read_json(path)
    jsonschema.validate(data, _schema("policy.schema.json"))
    payer, policy = data["payer"], data["policy"]
    return Policy(
        id=data["id"],
        payer_name=payer["name"],
        payer_short_name=payer.get("short_name") or payer["name"],
        aliases=tuple(payer.get("aliases", [])),
        identifiers=tuple(
            (ident.get("system", ""), ident["value"]) for ident in payer.get("identifiers", [])
        ),
        title=policy["title"],
        number=policy.get("number") or "",
        version=policy.get("version") or "",
        url=policy.get("url"),
        sections={
            s["id"]: PolicySection(s["id"], s["label"], s["statement"]) for s in data["sections"]
        },
        evidence=data.get("evidence", {}),
        citations=data.get("citations", {}),
        override_reasons=tuple(data.get("override_reasons", [])),
        summary_of_evidence=data.get("summary_of_evidence", ""),
        raw=data,
        key=data.get("policy_key") or data["id"],
        effective_start=_date_or_none(policy.get("effective", {}).get("start")),
        effective_end=_date_or_none(policy.get("effective", {}).get("end")),
        find_current=policy.get("find_current", {}).get("text", ""),
        find_current_url=policy.get("find_current", {}).get("url", ""),
    )


def _date_or_none(value: str | None) -> date | None:
    return date.fromisoformat(value) if value else None


def _check_versions(policies: dict[str, Policy]) -> None:
    """Versions of one plan's policy (same key, same payer) must not overlap in time."""
    by_key: dict[str, list[Policy]] = {}
    for policy in policies.values():
        by_key.setdefault(policy.key, []).append(policy)
    for key, versions in by_key.items():
        ordered = sorted(versions, key=lambda p: p.effective_start or date.min)
        for earlier, later in pairwise(ordered):
            if earlier.payer_name != later.payer_name:
                raise ValueError(f"policy key {key}: versions name different payers")
            if earlier.effective_end is None or (later.effective_start or date.min) < earlier.effective_end:
                raise ValueError(f"policy key {key}: {earlier.id} and {later.id} overlap in time")


def _whole_words(words: list[str]) -> re.Pattern[str]:
    """Match any of ``words`` as a whole word (not inside another word), case-insensitively."""
    if not words:
        return re.compile(r"(?!x)x")  # matches nothing
    alternation = "|".join(re.escape(w.lower()) for w in sorted(words, key=len, reverse=True))
    return re.compile(rf"(?<![a-z0-9])(?:{alternation})(?![a-z0-9])", re.IGNORECASE)


@dataclass(frozen=True)
class DrugScanner:
    """Finds any hint of a target drug in raw request bytes, before JSON models are built.

    Words (drug and brand names, ``medicationReference``) match case-insensitively with one
    small regular expression; codes (every RxNorm, NDC and HCPCS code of the in-scope products)
    are looked up in a set, one JSON string token at a time. A ``medicationReference`` counts as
    a hint because the referenced Medication may live elsewhere. False positives only cost the
    slower path; false negatives are not allowed.
    """

    words: re.Pattern[bytes]
    codes: frozenset[bytes]

    _CODE_TOKEN = re.compile(rb'"([0-9A-Za-z][0-9A-Za-z.\-]{2,15})"')

    def mentions_target(self, raw: bytes) -> bool:
        if self.words.search(raw):
            return True
        codes = self.codes
        return any(token.lower() in codes for token in self._CODE_TOKEN.findall(raw))


def _drug_scanner(medications: dict, valuesets: dict[str, ValueSetMatcher]) -> DrugScanner:
    words = {"medicationreference"} | {p.lower() for d in medications["drugs"] for p in d["text_patterns"]}
    codes: set[bytes] = set()
    for drug in medications["drugs"]:
        for _system, code in valuesets[drug["valueset"]].concepts:
            codes.add(code.lower().encode())
            if code.isdigit() and len(code) == 11:  # NDC-11 also arrives hyphenated (5-4-2)
                codes.add(f"{code[:5]}-{code[5:9]}-{code[9:]}".encode())
    codes.update(code.lower().encode() for code, drug_id in medications.get("hcpcs", {}).items() if drug_id)
    pattern = b"|".join(re.escape(w.encode()) for w in sorted(words, key=len, reverse=True))
    return DrugScanner(re.compile(pattern, re.IGNORECASE), frozenset(codes))


def load_knowledge(cards_dir: str | Path) -> Knowledge:
    cards = Path(cards_dir)
    valuesets = _load_valuesets(cards / "valuesets")

    index = _read_json(cards / "indications.json")
    jsonschema.validate(index, _schema("indications.schema.json"))
    families = tuple(
        Family(
            id=f["id"],
            label=f["label"],
            section=f["section"],
            role=f["role"],
            valueset=valuesets[f["valueset"]],
            drugs=frozenset(f.get("drugs", [])),
            exempts=frozenset(f.get("exempts", [])),
            synonyms=tuple(f.get("synonyms", [])),
        )
        for f in index["families"]
    )

    meds = _read_json(cards / "medications.json")
    rules = MedicationRules(
        drugs=tuple(
            Drug(
                id=d["id"],
                label=d["label"],
                valueset=valuesets[d["valueset"]],
                text_patterns=tuple(p.lower() for p in d["text_patterns"]),
                exclude_text_patterns=tuple(p.lower() for p in d.get("exclude_text_patterns", [])),
            )
            for d in meds["drugs"]
        ),
        hcpcs={code.upper(): drug for code, drug in meds.get("hcpcs", {}).items()},
        excluded=valuesets[meds["excluded_products"]],
        iv_only_products=valuesets[meds["iv_only_products"]],
        iv_routes=valuesets[meds["routes"]["iv"]],
        non_iv_routes=valuesets[meds["routes"]["non_iv"]],
        injectable_dose_form_words=tuple(w.lower() for w in meds["injectable_dose_form_words"]),
        iv_route_codes=frozenset(c.upper() for c in meds["routes"].get("iv_codes_any_system", [])),
        non_iv_route_codes=frozenset(c.upper() for c in meds["routes"].get("non_iv_codes_any_system", [])),
        iv_route_words=_whole_words(meds["routes"].get("iv_words", [])),
        non_iv_route_words=_whole_words(meds["routes"].get("non_iv_words", [])),
    )

    policies = {}
    for path in sorted((cards / "policies").glob("*.json")):
        policy = _load_policy(path)
        if policy.id in policies:
            raise ValueError(f"duplicate policy id {policy.id} in {path}")
        policies[policy.id] = policy
    if not policies:
        raise ValueError(f"no policies found in {cards / 'policies'}")
    _check_versions(policies)

    return Knowledge(
        policies=policies,
        families=families,
        medications=rules,
        valuesets=valuesets,
        scanner=_drug_scanner(meds, valuesets),
    )
