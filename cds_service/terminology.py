"""Code systems and value-set matching over plain data."""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from .config import default_cards_dir

RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
SNOMED = "http://snomed.info/sct"
ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
NDC = "http://hl7.org/fhir/sid/ndc"
HCPCS = "https://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets"

SYSTEM_NAMES = {
    RXNORM: "RxNorm",
    SNOMED: "SNOMED CT",
    ICD10CM: "ICD-10-CM",
    NDC: "NDC",
    HCPCS: "HCPCS",
}


CODE_SYSTEMS_FILE = default_cards_dir() / "code-systems.json"  # the bundled copy, until load_knowledge reads CARDS_DIR


def read_system_aliases(path: Path) -> dict[str, str]:
    """Other names of code systems (HL7 OIDs) -> canonical FHIR system URI (``code-systems.json``)."""
    data = json.loads(path.read_text(encoding="utf-8"))
    return {a["alias"].strip(): a["system"] for a in data["aliases"]}


_ALIASES: dict[str, str] = {}
READ_CACHE_SIZE = 4096  # distinct codings remembered per process (least recently used go first)
READ_MAX_CHARS = 512  # longer codings are read every time


_LOOSE: dict[str, str] = {}  # loose spelling (see _loose) of each known system and alias -> canonical URI


def _loose(system: str) -> str:
    """A system URI as clients misspell it, folded: case, a trailing slash, https for http
    (``https://snomed.info/sct/``, ``http://www.nlm.nih.gov/research/umls/RxNorm``)."""
    folded = system.strip().casefold().rstrip("/")
    return "http://" + folded[len("https://"):] if folded.startswith("https://") else folded


def _set_aliases(aliases: dict[str, str]) -> None:
    _ALIASES.clear()
    _ALIASES.update(aliases)
    _LOOSE.clear()
    for canonical in {*SYSTEM_NAMES, *aliases.values()}:
        _LOOSE[_loose(canonical)] = canonical
    for alias, canonical in aliases.items():
        _LOOSE.setdefault(_loose(alias), canonical)


def use_system_aliases(aliases: dict[str, str]) -> None:
    """Set the aliases :func:`codings_of` applies (``load_knowledge`` reads them from cards/)."""
    _set_aliases(aliases)
    _read_short_coding.cache_clear()  # codings read under the old aliases


_set_aliases(read_system_aliases(CODE_SYSTEMS_FILE))  # nothing read yet: no cache to clear


def canonical_system(system: str) -> str:
    """The canonical URI of ``system``: itself, the URI an alias (an HL7 OID) names, or the known
    URI it is a misspelling of (case, trailing slash, https); else ``system`` unchanged."""
    system = system.strip()
    known = _ALIASES.get(system)
    if known is not None:
        return known
    return _LOOSE.get(_loose(system), system)


@dataclass(frozen=True)
class Code:
    system: str
    code: str
    display: str = ""

    @property
    def system_name(self) -> str:
        return SYSTEM_NAMES.get(self.system, self.system)

    def label(self) -> str:
        text = f"{self.system_name} {self.code}"
        return f"{text} ({self.display})" if self.display else text


def _ndc_11(code: str) -> str:
    """NDC as 11 digits (5-4-2). A hyphenated 10-digit NDC (4-4-2, 5-3-2 or 5-4-1) is padded
    with a zero in its short part; an unhyphenated 10-digit NDC is ambiguous and kept as is."""
    parts = code.split("-")
    if len(parts) == 3 and all(p.isdigit() for p in parts):
        widths = tuple(len(p) for p in parts)
        if widths in {(4, 4, 2), (5, 3, 2), (5, 4, 1)}:
            return "".join(p.zfill(w) for p, w in zip(parts, (5, 4, 2), strict=True))
    return code.replace("-", "")


def normalize_code(system: str, code: str) -> str:
    """Canonical form used for matching: ICD-10-CM upper case and dotted, NDC as 11 digits."""
    code = code.strip()
    if system == ICD10CM:
        code = code.upper()
        if "." not in code and len(code) > 3:
            code = f"{code[:3]}.{code[3:]}"
    elif system == NDC:
        code = _ndc_11(code)
    elif system == HCPCS:
        code = code.upper()
    return code


def coding_displays(concept: object) -> list[str]:
    """The ``display`` of every coding of a raw CodeableConcept, read as a code or not: a coding
    without a ``system`` (or ``code``) still names what it means."""
    codings = concept.get("coding") if isinstance(concept, dict) else None
    return [c["display"] for c in codings if isinstance(c, dict) and isinstance(c.get("display"), str)] \
        if isinstance(codings, list) else []


def codings_of(concept: object) -> Iterator[Code]:
    """Yield the well-formed codings of a CodeableConcept given as a raw dict.

    A system named by an alias (an HL7 OID, ``cards/code-systems.json``) is read as its
    canonical URI, and the code is put in its canonical form (:func:`normalize_code`).
    """
    if not isinstance(concept, dict):
        return
    codings = concept.get("coding")
    if not isinstance(codings, list):
        return
    for coding in codings:
        if not isinstance(coding, dict):
            continue
        system, code = coding.get("system"), coding.get("code")
        if isinstance(system, str) and isinstance(code, str):
            display = coding.get("display")
            read = _read_coding(system, code, display if isinstance(display, str) else "")
            if read is not None:
                yield read


def _read_coding(system: str, code: str, display: str) -> Code | None:
    """The Code of one coding's strings, or None when the code is blank.

    A pure function of three strings, and the codings an EHR sends repeat (the same drug,
    route and diagnosis codes order after order), so each short one is worked out once and the
    frozen Code shared: ten or so codings are read per in-scope call, and canonical_system,
    normalize_code and a frozen dataclass cost a few microseconds each time. A coding longer
    than ``READ_MAX_CHARS`` is read every time, so the cache cannot be made to hold large text."""
    if len(system) + len(code) + len(display) <= READ_MAX_CHARS:
        return _read_short_coding(system, code, display)
    return _read_uncached(system, code, display)


@functools.lru_cache(maxsize=READ_CACHE_SIZE)
def _read_short_coding(system: str, code: str, display: str) -> Code | None:
    return _read_uncached(system, code, display)


def _read_uncached(system: str, code: str, display: str) -> Code | None:
    if not code.strip():
        return None
    canonical = canonical_system(system)
    return Code(canonical, normalize_code(canonical, code), display)


@dataclass(frozen=True)
class ValueSetMatcher:
    """A compiled FHIR ValueSet: enumerated concepts plus ``is-a`` filters.

    For ICD-10-CM an ``is-a`` filter matches the code itself and every code below it,
    which for that code system's dotted notation is a prefix match.
    """

    id: str
    title: str
    concepts: frozenset[tuple[str, str]]
    is_a: tuple[tuple[str, str], ...]
    displays: dict[tuple[str, str], str]

    @classmethod
    def from_fhir(cls, valueset: dict) -> ValueSetMatcher:
        concepts: set[tuple[str, str]] = set()
        is_a: list[tuple[str, str]] = []
        displays: dict[tuple[str, str], str] = {}
        for include in valueset.get("compose", {}).get("include", []):
            system = include.get("system", "")
            for concept in include.get("concept", []):
                key = (system, normalize_code(system, concept["code"]))
                concepts.add(key)
                if concept.get("display"):
                    displays[key] = concept["display"]
            for flt in include.get("filter", []):
                if flt.get("op") == "is-a" and flt.get("property") == "concept":
                    value = normalize_code(system, flt["value"])
                    is_a.append((system, value))
                    concepts.add((system, value))
                else:
                    raise ValueError(
                        f"ValueSet {valueset.get('id')}: unsupported filter {flt!r}"
                    )
        return cls(
            id=valueset["id"],
            title=valueset.get("title") or valueset.get("name") or valueset["id"],
            concepts=frozenset(concepts),
            is_a=tuple(is_a),
            displays=displays,
        )

    def specificity(self, code: Code) -> int:
        """0 when ``code`` is not in the value set, else a rank (longer match ranks higher)."""
        if (code.system, code.code) in self.concepts:
            return 1000 + len(code.code)
        best = 0
        for system, prefix in self.is_a:
            if system == code.system and code.code.startswith(prefix):
                best = max(best, len(prefix))
        return best

    def contains(self, code: Code) -> bool:
        return self.specificity(code) > 0

    def display_for(self, code: Code) -> str:
        return self.displays.get((code.system, code.code), "")
