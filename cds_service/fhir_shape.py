"""Read FHIR R4 JSON the way real clients write it: one object where R4 has an array.

The CDS Hooks sandbox writes ``MedicationRequest.category`` (and, on order-select,
``reasonCode``) as a single object; R4 has both as arrays (shared/reference/cds-hooks.md
section 3.3). :func:`normalize_resource` returns the value in which every such single object is
a one-element array, for the resource types and data types this service reads, and a Coding's
``system`` and ``code`` lose surrounding whitespace (copy-on-write: the input is never changed,
and what needs no change is shared, not copied). The changes made are reported (as JSON paths, never values) so the
caller can log them at debug level. Pure functions over plain data.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

# Elements that are arrays (0..*) in FHIR R4, by resource type, for the resources we read.
RESOURCE_ARRAYS: dict[str, frozenset[str]] = {
    "MedicationRequest": frozenset({
        "identifier", "instantiatesCanonical", "instantiatesUri", "category", "supportingInformation",
        "reasonCode", "reasonReference", "basedOn", "insurance", "note", "dosageInstruction",
        "detectedIssue", "eventHistory",
    }),
    "Medication": frozenset({"identifier", "ingredient"}),
    "Condition": frozenset({"identifier", "category", "bodySite", "stage", "evidence", "note"}),
    "Coverage": frozenset({"identifier", "payor", "class", "costToBeneficiary", "contract"}),
    "Bundle": frozenset({"link", "entry"}),
    "OperationOutcome": frozenset({"issue"}),
    "Organization": frozenset({"identifier", "type", "alias", "telecom", "address", "contact", "endpoint"}),
}
# Arrays on every resource and element.
COMMON_ARRAYS = frozenset({"extension", "modifierExtension", "contained"})
# Arrays inside data types, by the name of the element that holds the data type.
ELEMENT_ARRAYS: dict[str, frozenset[str]] = {
    "dosageInstruction": frozenset({"additionalInstruction", "doseAndRate"}),
    "timing": frozenset({"event"}),
    "repeat": frozenset({"dayOfWeek", "timeOfDay", "when"}),
    "evidence": frozenset({"code", "detail"}),
    "stage": frozenset({"assessment"}),
}
# CodeableConcept.coding is an array wherever a CodeableConcept appears.
ANYWHERE_ARRAYS = frozenset({"coding"})
# Coding elements read with surrounding whitespace removed.
CODING_STRINGS = frozenset({"system", "code"})


def normalize_resource(value: Any, changes: list[str] | None = None, path: str = "") -> Any:
    """``value`` with single objects wrapped where R4 has arrays.

    Copy-on-write: a dict or list in which nothing changes is returned as it is (the common
    case, and the cheap one); where something changes, the containers on the way to it are new
    and ``value`` itself is never modified. ``changes`` (if given) collects the JSON paths that
    were changed.
    """
    if not isinstance(value, _CONTAINERS) or not _may_change(value):
        return value
    return _normalize(value, "", changes if changes is not None else [], (None, path) if path else None)


# -- the scan: "nothing to change" decided from the value's JSON text, where that is sure -------
#
# orjson writes compact JSON: no space between tokens, a key as ``"name":`` (escaped only for a
# quote, a backslash or a control character, none of which is in an element name), a quote
# inside a string always as ``\"``, ``resourceType`` as ``"resourceType":"Type"``, control
# characters as escapes and other characters as they are. So a dict whose key K holds an object
# shows as ``"K":{``, and the walk can change something only if the text shows such a K that is
# an array in some context with that context in the text too (the element holding it, or the
# resource type), or some string that may begin or end with whitespace. When the text shows
# none of these, the walk would return the value unchanged; otherwise it runs, as it did for
# every value before the scan. Over-reading is safe (the walk runs); tests/test_normalize_scan.py
# pins that nothing is under-read.


def _contexts() -> dict[bytes, tuple[bytes, ...]]:
    """Per element name that is an array somewhere: the texts of which one must be in the JSON
    for it to be an array there (none: it is one everywhere)."""
    everywhere = COMMON_ARRAYS | ANYWHERE_ARRAYS
    where: dict[str, set[str]] = {}
    for element, names in ELEMENT_ARRAYS.items():
        for name in names - everywhere:
            where.setdefault(name, set()).add(f'"{element}":')
    for rtype, names in RESOURCE_ARRAYS.items():
        for name in names - everywhere:
            where.setdefault(name, set()).add(f'"resourceType":"{rtype}"')
    contexts = {name.encode(): () for name in everywhere}
    contexts.update({name.encode(): tuple(sorted(t.encode() for t in texts)) for name, texts in where.items()})
    return contexts


_ARRAY_CONTEXTS = _contexts()
_ARRAY_NAMES = frozenset(_ARRAY_CONTEXTS)
# Every character for which str.isspace() is true (tests/test_normalize_scan.py checks it against
# all of Unicode; computing it here cost a tenth of a second at every start).
_WHITESPACE = ("\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005"
               "\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000")
# What str.strip() removes, as orjson writes it at the start or the end of a string, besides a
# space: an escape (a string beginning with any escape, or ending with an escaped whitespace
# character; \u00XX stands for every control character written that way). Whitespace beyond
# ASCII is written as itself, and looked for (anywhere) only in text that is not ASCII.
_ESCAPED_SPACE = (b'"\\', b"\\u00",
                  *sorted({orjson.dumps(c)[1:-1] + b'"' for c in _WHITESPACE if c.isascii() and c != " "}))
_WIDE_SPACE = re.compile("[" + re.escape("".join(c for c in _WHITESPACE if not c.isascii())) + "]")


def needs_normalizing(values: list[Any]) -> bool:
    """False only when :func:`normalize_resource` would return each of ``values`` unchanged
    (one scan for all of them: a list is walked item by item, as each value on its own)."""
    return _may_change(values)


def _may_change(value: dict[str, Any] | list[Any]) -> bool:
    """False only when :func:`_normalize` would certainly return ``value`` unchanged."""
    try:
        text = orjson.dumps(value)
    except TypeError:  # what orjson cannot write (integers beyond 64 bits, other keys): walk it
        return True
    if b'" ' in text or b' "' in text:  # a string that begins or ends with a space
        return True
    if b"\\" in text and any(marker in text for marker in _ESCAPED_SPACE):  # memchr first: escapes are rare
        return True
    if not text.isascii() and _WIDE_SPACE.search(text.decode()):
        return True
    pieces = text.split(b'":{')
    names = {piece[piece.rfind(b'"') + 1:] for piece in pieces[:-1]}  # each ends with a key: ..."K
    for name in names & _ARRAY_NAMES:
        contexts = _ARRAY_CONTEXTS[name]
        if not contexts or any(c in text for c in contexts):
            return True
    return False


# A path is built only when something changes: (parent path, key or index) pairs, or None.
_Path = tuple[Any, Any] | None


def _path_text(path: _Path) -> str:
    parts: list[str] = []
    while path is not None:
        path, part = path
        parts.append(f"[{part}]" if isinstance(part, int) else part)
    text = ""
    for part in reversed(parts):
        text = text + part if part.startswith("[") or not text else f"{text}.{part}"
    return text


_ARRAYS: dict[tuple[str, str | None], frozenset[str]] = {}


def _arrays(element: str, rtype: str | None) -> frozenset[str]:
    arrays = _ARRAYS.get((element, rtype))
    if arrays is None:
        arrays = COMMON_ARRAYS | ANYWHERE_ARRAYS | ELEMENT_ARRAYS.get(element, frozenset())
        arrays = _ARRAYS.setdefault((element, rtype), arrays | RESOURCE_ARRAYS.get(rtype or "", frozenset()))
    return arrays


_CONTAINERS = (dict, list)  # a tuple: ``dict | list`` would build a union object at every check


def _normalize(value: Any, element: str, changes: list[str], path: _Path) -> Any:
    if isinstance(value, list):
        out_list: list[Any] | None = None
        for i, item in enumerate(value):
            new = _normalize(item, element, changes, (path, i)) if isinstance(item, _CONTAINERS) else item
            if new is not item and out_list is None:
                out_list = value[:i]
            if out_list is not None:
                out_list.append(new)
        return value if out_list is None else out_list
    if not isinstance(value, dict):
        return value
    rtype = value.get("resourceType")
    arrays = _arrays(element, rtype if isinstance(rtype, str) else None)
    in_coding = element == "coding"
    out: dict[str, Any] | None = None
    for key, item in value.items():
        if isinstance(item, _CONTAINERS):
            if key in arrays and isinstance(item, dict):
                changes.append(_path_text((path, key)))
                new = _normalize([item], key, changes, (path, key))
            else:
                new = _normalize(item, key, changes, (path, key))
        elif in_coding and key in CODING_STRINGS and isinstance(item, str) and item != item.strip():
            changes.append(_path_text((path, key)))
            new = item.strip()  # " 238084" is the code 238084 (R4 codes have no outer spaces)
        else:
            continue
        if new is not item:
            if out is None:
                out = dict(value)
            out[key] = new
    return value if out is None else out
