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

from .terminology import ValueSetMatcher, read_system_aliases, use_system_aliases

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


@cache
def _compiled(name: str) -> Any:
    import jsonschema_rs

    return jsonschema_rs.validator_for(_schema(name), validate_formats=False)


@cache
def _reference(name: str) -> Any:
    """The jsonschema validator of a schema, the schema itself checked once (as jsonschema.validate
    does on every call)."""
    from jsonschema.validators import validator_for

    schema = _schema(name)
    cls = validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def _validate(data: Any, schema_name: str) -> None:
    """Raise jsonschema's ValidationError when ``data`` fails the schema. The compiled check
    answers the usual case (valid) in microseconds; ``jsonschema`` is imported, and its
    validator runs, only to word what is wrong (the error ``jsonschema.validate`` would raise)."""
    try:
        if _compiled(schema_name).is_valid(data):
            return
    except Exception:  # the compiled check cannot tell: the reference decides
        pass
    from jsonschema.exceptions import best_match

    error = best_match(_reference(schema_name).iter_errors(data))
    if error is not None:
        raise error


def _schema_error() -> type[Exception]:
    # Used as an ``except`` expression, which Python evaluates only once an exception is
    # raised: jsonschema is not imported while every file passes.
    from jsonschema import ValidationError

    return ValidationError


def _check_file(data: Any, schema_name: str, path: Path) -> None:
    """:func:`_validate`, with a failure raised as a ValueError naming the file and the element."""
    try:
        _validate(data, schema_name)
    except _schema_error() as exc:
        where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in exc.absolute_path).lstrip(".")
        raise ValueError(f"{path.parent.name}/{path.name}: {where or '(root)'}: {exc.message}") from exc


def _load_valuesets(directory: Path) -> dict[str, ValueSetMatcher]:
    """Each file must be a FHIR R4 ValueSet the service can read: schemas/valueset.schema.json,
    which refuses everything the fhir.resources R4B ValueSet model refuses (tests/test_knowledge.py)
    without its ~0.1 s of imports and validation at every start."""
    matchers: dict[str, ValueSetMatcher] = {}
    for path in sorted(directory.glob("*.json")):
        data = _read_json(path)
        _check_file(data, "valueset.schema.json", path)
        matcher = ValueSetMatcher.from_fhir(data)
        matchers[path.stem] = matcher
    return matchers


def _load_policy(path: Path) -> Policy:
    data = _read_json(path)
    _check_file(data, "policy.schema.json", path)
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

    Words (drug and brand names, ``medicationReference``) are found case-insensitively as
    substrings of the lower-cased body; codes (every RxNorm, NDC and HCPCS code of the in-scope products,
    NDCs in their 11-digit and hyphenated 10-digit forms) are looked up in a set, one JSON
    string token at a time. A ``medicationReference`` counts as a hint because the referenced
    Medication may live elsewhere. False positives only cost the slower path; false negatives
    are not allowed, so whenever the bytes may read differently once parsed the scan says
    "maybe": any ``\\u`` escape (it can spell any letter or digit) takes the full path; a code
    string may carry spaces or whitespace escapes (``\\t``, ``\\n`` …) around the code, which
    the parser strips; and a body with non-ASCII bytes is rescanned as decoded, lower-cased
    text, the way the screening code compares text (``str.lower`` folds the Kelvin sign into
    ``k``; ``str.strip`` removes non-ASCII spaces). Other escapes (``\\"``, ``\\/``, ``\\\\``,
    common in narrative XHTML) cannot make a drug name or code appear, so they do not
    force the full path. The body is UTF-8 by then: :func:`cds_service.hook_request.parse_body`
    refuses other encodings.
    """

    words: tuple[bytes, ...]  # lower case
    codes: frozenset[bytes]  # lower case

    _TEXT_CODE_TOKEN = re.compile(r'"(?:\s|\\[tnrf])*+([0-9a-z][0-9a-z.\-]{2,15})(?:\s|\\[tnrf])*+"')
    # A code sent as a JSON number ("code": 238084): malformed, but the full path must see it
    # (it answers 400: the coding cannot be read), not the fast lane's "no cards".
    _NUMERIC_CODE = re.compile(rb'"code"\s*:\s*(\d+)')
    _WHITESPACE_ESCAPES = (b"\\t", b"\\n", b"\\r", b"\\f")

    def mentions_target(self, raw: bytes) -> bool:
        lowered = raw.lower()  # ASCII letters only: one fast pass, then plain substring searches
        if b"\\u" in lowered or any(word in lowered for word in self.words):
            return True
        if b"\\" in lowered:  # a code written with whitespace escapes around it, e.g. "\t238084"
            for escape in self._WHITESPACE_ESCAPES:
                lowered = lowered.replace(escape, b" ")
        # Every stretch between two quote bytes, stripped, looked up in one set operation: each
        # JSON string token is such a stretch (other stretches only add harmless candidates).
        codes = self.codes
        if not codes.isdisjoint(map(bytes.strip, lowered.split(b'"'))):
            return True
        # An NDC hyphenated some other way ("2502106822-0") reads as its 11 digits once parsed.
        if b"-" in lowered and not codes.isdisjoint(map(bytes.strip, lowered.replace(b"-", b"").split(b'"'))):
            return True
        if not codes.isdisjoint(self._NUMERIC_CODE.findall(lowered)):
            return True
        if raw.isascii():
            return False
        text = raw.decode("utf-8", "replace").lower()
        return any(word.decode() in text for word in self.words) or any(
            token.encode("utf-8", "replace") in codes or token.replace("-", "").encode("utf-8", "replace") in codes
            for token in self._TEXT_CODE_TOKEN.findall(text)
        )


def ndc_spellings(code: str) -> set[str]:
    """The hyphenated spellings of an 11-digit NDC: 5-4-2, and the 10-digit 4-4-2, 5-3-2 and
    5-4-1 forms it was padded from (a leading zero in the labeler, product or package part)."""
    if not (code.isdigit() and len(code) == 11):
        return set()
    forms = {f"{code[:5]}-{code[5:9]}-{code[9:]}"}
    if code[0] == "0":
        forms.add(f"{code[1:5]}-{code[5:9]}-{code[9:]}")
    if code[5] == "0":
        forms.add(f"{code[:5]}-{code[6:9]}-{code[9:]}")
    if code[9] == "0":
        forms.add(f"{code[:5]}-{code[5:9]}-{code[10]}")
    return forms


def _drug_scanner(medications: dict, valuesets: dict[str, ValueSetMatcher]) -> DrugScanner:
    # R5's "medication" element (a CodeableReference) may name a Medication as medicationReference does.
    words = {"medicationreference", '"medication"'}
    words |= {p.lower() for d in medications["drugs"] for p in d["text_patterns"]}
    codes: set[bytes] = set()
    for drug in medications["drugs"]:
        for _system, code in valuesets[drug["valueset"]].concepts:
            codes.add(code.lower().encode())
            codes.update(form.encode() for form in ndc_spellings(code))
    codes.update(code.lower().encode() for code, drug_id in medications.get("hcpcs", {}).items() if drug_id)
    return DrugScanner(tuple(sorted(w.encode() for w in words)), frozenset(codes))


def load_knowledge(cards_dir: str | Path) -> Knowledge:
    cards = Path(cards_dir)
    code_systems = cards / "code-systems.json"
    if code_systems.exists():  # HL7 OIDs and other aliases of code systems, applied by codings_of
        use_system_aliases(read_system_aliases(code_systems))
    valuesets = _load_valuesets(cards / "valuesets")

    index = _read_json(cards / "indications.json")
    _check_file(index, "indications.schema.json", cards / "indications.json")
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
