"""Read FHIR R4 JSON the way real clients write it: one object where R4 has an array.

The CDS Hooks sandbox writes ``MedicationRequest.category`` (and, on order-select,
``reasonCode``) as a single object; R4 has both as arrays (shared/reference/cds-hooks.md
section 3.3). :func:`normalize_resource` returns a copy in which every such single object is a
one-element array, for the resource types and data types this service reads, and a
Coding's ``system`` and ``code`` lose surrounding whitespace. Everything else is copied
unchanged. The changes made are reported (as JSON paths, never values) so the
caller can log them at debug level. Pure functions over plain data.
"""

from __future__ import annotations

from typing import Any

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
    """A copy of ``value`` with single objects wrapped where R4 has arrays.

    ``changes`` (if given) collects the JSON paths that were wrapped.
    """
    return _normalize(value, "", changes if changes is not None else [], path)


def _normalize(value: Any, element: str, changes: list[str], path: str) -> Any:
    if isinstance(value, list):
        return [_normalize(item, element, changes, f"{path}[{i}]") for i, item in enumerate(value)]
    if not isinstance(value, dict):
        return value
    rtype = value.get("resourceType")
    arrays = COMMON_ARRAYS | ANYWHERE_ARRAYS | ELEMENT_ARRAYS.get(element, frozenset())
    if isinstance(rtype, str):
        arrays = arrays | RESOURCE_ARRAYS.get(rtype, frozenset())
    out: dict[str, Any] = {}
    for key, item in value.items():
        where = f"{path}.{key}" if path else key
        if key in arrays and isinstance(item, dict):
            changes.append(where)
            item = [item]
        elif element == "coding" and key in CODING_STRINGS and isinstance(item, str) and item != item.strip():
            changes.append(where)
            item = item.strip()  # " 238084" is the code 238084 (R4 codes have no outer spaces)
        out[key] = _normalize(item, key, changes, where)
    return out
