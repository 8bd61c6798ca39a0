"""Checks CRD coverage-information system actions against the CRD 2.0.1 package files.

Everything is read from ``shared/reference/crd-ig-2.0.1-package`` (beside the clone): the
sub-extension urls, cardinalities and value types from the extension's StructureDefinition,
the codes from the bound ValueSets, and the invariants crd-ci-q1..q5 (their FHIRPath is
evaluated with fhirpathpy, and what their descriptions state is checked as well, since the
expressions are loosely written). The MedicationRequest must still parse as FHIR R4 (R4B model).
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from fhir.resources.R4B.medicationrequest import MedicationRequest
from pydantic import ValidationError

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT.parent / "shared" / "reference" / "crd-ig-2.0.1-package"
EXTENSION_URL = "http://hl7.org/fhir/us/davinci-crd/StructureDefinition/ext-coverage-information"
TEMP = "http://hl7.org/fhir/us/davinci-crd/CodeSystem/temp"


def _load(name: str) -> dict:
    return json.loads((PACKAGE / name).read_text(encoding="utf-8"))


@cache
def structure() -> dict:
    return _load("StructureDefinition-ext-coverage-information.json")


@cache
def valueset_codes(url: str) -> frozenset[str]:
    """The codes a package ValueSet includes (enumerated concepts; descendent-of filters)."""
    for path in PACKAGE.glob("ValueSet-*.json"):
        vs = json.loads(path.read_text(encoding="utf-8"))
        if vs.get("url") != url:
            continue
        codes: set[str] = set()
        for include in vs.get("compose", {}).get("include", []):
            codes.update(c["code"] for c in include.get("concept", []))
            for f in include.get("filter", []):
                if f.get("op") == "descendent-of" and include.get("system") == TEMP:
                    codes.update(_descendants(f["value"]))
        return frozenset(codes)
    raise KeyError(f"ValueSet {url} is not in the package")


def _descendants(code: str) -> set[str]:
    def walk(concepts: list[dict], inside: bool) -> set[str]:
        found: set[str] = set()
        for c in concepts:
            if inside:
                found.add(c["code"])
            found |= walk(c.get("concept", []), inside or c["code"] == code)
        return found

    return walk(_load("CodeSystem-temp.json")["concept"], False)


@cache
def card_type_codes() -> frozenset[str]:
    return valueset_codes("http://hl7.org/fhir/us/davinci-crd/ValueSet/cardType")


@cache
def slices(prefix: str = "Extension.extension") -> dict[str, dict[str, Any]]:
    """Sub-extension slices under ``prefix``: url -> {min, max, types, binding}."""
    elements = {e["id"]: e for e in structure()["snapshot"]["element"]}
    result: dict[str, dict[str, Any]] = {}
    for eid, element in elements.items():
        head, _, name = eid.rpartition(":")
        if head != prefix or "." in name:
            continue
        value = elements.get(f"{eid}.value[x]", {})
        url = elements[f"{eid}.url"].get("fixedUri", name)
        result[url] = {
            "min": element.get("min", 0),
            "max": element.get("max", "*"),
            "types": [t["code"] for t in value.get("type", [])],
            "value_max": value.get("max", "1"),
            "binding": value.get("binding"),
            "id": eid,
        }
    return result


@cache
def invariants() -> dict[str, str]:
    root = structure()["snapshot"]["element"][0]
    return {c["key"]: c["expression"] for c in root.get("constraint", []) if c["key"].startswith("crd-ci-")}


def _value_key(part: dict) -> list[str]:
    return [k for k in part if k.startswith("value")]


def _check_parts(parts: list, prefix: str, where: str) -> list[str]:
    problems: list[str] = []
    allowed = slices(prefix)
    counts: dict[str, int] = {}
    for i, part in enumerate(parts):
        url = part.get("url") if isinstance(part, dict) else None
        if url not in allowed:
            problems.append(f"{where}.extension[{i}]: url {url!r} is not a sub-extension of the SD")
            continue
        counts[url] = counts.get(url, 0) + 1
        spec = allowed[url]
        keys = _value_key(part)
        if spec["value_max"] == "0" or not spec["types"]:  # complex (e.g. detail)
            if keys:
                problems.append(f"{where}.{url}: has a value, but it is a complex sub-extension")
            problems += _check_parts(part.get("extension", []), f"{spec['id']}.extension",
                                     f"{where}.{url}")
            continue
        wanted = ["value" + t[0].upper() + t[1:] for t in spec["types"]]
        if len(keys) != 1 or keys[0] not in wanted:
            problems.append(f"{where}.{url}: value must be one of {wanted}, got {keys}")
            continue
        binding = spec["binding"] or {}
        value = part[keys[0]]
        if binding.get("strength") == "required" and keys[0] == "valueCode":
            codes = valueset_codes(binding["valueSet"])
            if value not in codes:
                problems.append(f"{where}.{url}: code {value!r} is not in {binding['valueSet']}")
        if keys[0] == "valueCodeableConcept":
            codings = value.get("coding", []) if isinstance(value, dict) else []
            if not codings and not (isinstance(value, dict) and value.get("text")):
                problems.append(f"{where}.{url}: CodeableConcept with neither coding nor text")
            for coding in codings:
                if coding.get("system") == TEMP and binding.get("valueSet") and \
                        coding.get("code") not in valueset_codes(binding["valueSet"]):
                    problems.append(f"{where}.{url}: {coding.get('code')!r} not in {binding['valueSet']}")
        if keys[0] == "valueReference" and not (isinstance(value, dict) and value.get("reference")):
            problems.append(f"{where}.{url}: reference without a reference string")
        if keys[0] == "valueDate" and not (isinstance(value, str) and len(value) == 10):
            problems.append(f"{where}.{url}: not a FHIR date: {value!r}")
    for url, spec in allowed.items():
        n = counts.get(url, 0)
        if n < spec["min"] or (spec["max"] != "*" and n > int(spec["max"])):
            problems.append(f"{where}: {n} x {url}, cardinality is {spec['min']}..{spec['max']}")
    return problems


def _codes(ext: dict, url: str) -> list[str]:
    return [p.get("valueCode") for p in ext.get("extension", []) if p.get("url") == url]


def stated_invariant_problems(ext: dict, where: str) -> list[str]:
    """crd-ci-q1..q5 as their descriptions state them."""
    covered, pa = _codes(ext, "covered"), _codes(ext, "pa-needed")
    doc, purpose = _codes(ext, "doc-needed"), _codes(ext, "doc-purpose")
    urls = {p.get("url") for p in ext.get("extension", [])}
    problems = []
    if urls & {"questionnaire", "response"} and not (doc and all(d != "no-doc" for d in doc)):
        problems.append(f"{where}: crd-ci-q1: questionnaire without doc-needed")
    if "not-covered" in covered and pa:
        problems.append(f"{where}: crd-ci-q2: not-covered with pa-needed")
    if any(c != "not-covered" for c in covered) and not pa:
        problems.append(f"{where}: crd-ci-q2 (expression): covered other than not-covered needs pa-needed")
    if "info-needed" in urls and "conditional" not in covered + pa + doc:
        problems.append(f"{where}: crd-ci-q3: info-needed without a conditional")
    if "satisfied" in pa and any(p in ("PA", "withpa") for p in purpose):
        problems.append(f"{where}: crd-ci-q4: satisfied with doc-purpose PA")
    if ("satisfied" in pa) != ("satisfied-pa-id" in urls):
        problems.append(f"{where}: crd-ci-q5: satisfied-pa-id iff pa-needed satisfied")
    return problems


def as_boolean_tests(expression: str) -> str:
    """The package's FHIRPath uses ``extension.where(...)`` as a boolean operand; fhirpathpy
    (rightly) refuses a non-boolean there. Read each such ``where(...)`` as ``.exists()``."""
    out, i = [], 0
    while (start := expression.find("where(", i)) != -1:
        depth, j = 0, start + len("where")
        while True:
            depth += {"(": 1, ")": -1}.get(expression[j], 0)
            j += 1
            if depth == 0:
                break
        out.append(expression[i:j])
        if not expression[j:].lstrip().startswith("."):
            out.append(".exists()")
        i = j
    out.append(expression[i:])
    return "".join(out)


def fhirpath_invariant_problems(ext: dict, where: str) -> list[str]:
    """crd-ci-q1..q5 evaluated with fhirpathpy on the R4 model (``value`` is value[x])."""
    from fhirpathpy import evaluate
    from fhirpathpy.models import models

    problems = []
    for key, expression in sorted(invariants().items()):
        result = evaluate(ext, as_boolean_tests(expression), {}, models["r4"])
        if result != [True]:
            problems.append(f"{where}: {key} evaluates to {result}: {expression}")
    return problems


def coverage_information_problems(payload: dict, request: dict | None = None) -> list[str]:
    """Problems with the coverage-information system actions of one hook response."""
    problems: list[str] = []
    ids_by_coverage: dict[str, set[str]] = {}
    for a, action in enumerate(payload.get("systemActions", [])):
        where = f"systemActions[{a}]"
        resource = action.get("resource") or {}
        reps = [e for e in resource.get("extension", []) if e.get("url") == EXTENSION_URL]
        if not reps:
            continue
        if action.get("type") != "update":
            problems.append(f"{where}: coverage information must be an update")
        if "resourceId" in action:
            problems.append(f"{where}: update carries resourceId")
        if not action.get("description"):
            problems.append(f"{where}: no description")
        if resource.get("resourceType") != "MedicationRequest":
            problems.append(f"{where}: resource is not a MedicationRequest")
        try:
            MedicationRequest.model_validate(resource)
        except ValidationError as exc:
            problems.append(f"{where}: not valid R4: {exc.errors()[:3]}")
        for r, ext in enumerate(reps):
            rwhere = f"{where}.ext-coverage-information[{r}]"
            if _value_key(ext):
                problems.append(f"{rwhere}: has a value[x]")
            problems += _check_parts(ext.get("extension", []), "Extension.extension", rwhere)
            problems += stated_invariant_problems(ext, rwhere)
            problems += fhirpath_invariant_problems(ext, rwhere)
            coverage = next((p.get("valueReference", {}).get("reference")
                             for p in ext.get("extension", []) if p.get("url") == "coverage"), None)
            assertion = next((p.get("valueString") for p in ext.get("extension", [])
                              if p.get("url") == "coverage-assertion-id"), None)
            if coverage and assertion:
                ids_by_coverage.setdefault(coverage, set()).add(assertion)
        if request is not None:
            problems += _unchanged_problems(resource, request, where)
    for coverage, ids in ids_by_coverage.items():
        if len(ids) > 1:
            problems.append(f"coverage {coverage} carries several coverage-assertion-ids {sorted(ids)}")
    all_ids = [i for ids in ids_by_coverage.values() for i in ids]
    if len(all_ids) != len(set(all_ids)):
        problems.append("different Coverages share a coverage-assertion-id")
    return problems


def _unchanged_problems(resource: dict, request: dict, where: str) -> list[str]:
    """The resource is a draft order as received, with only coverage information added."""
    strip = {k: v for k, v in resource.items() if k != "extension"}
    others = [e for e in resource.get("extension", []) if e.get("url") != EXTENSION_URL]
    for entry in request.get("context", {}).get("draftOrders", {}).get("entry", []):
        sent = entry.get("resource", {})
        if sent.get("id") == resource.get("id") and sent.get("resourceType") == resource.get("resourceType"):
            sent_others = [e for e in sent.get("extension", []) if e.get("url") != EXTENSION_URL]
            if {k: v for k, v in sent.items() if k != "extension"} != strip or sent_others != others:
                return [f"{where}: the order changed beyond its coverage information"]
            return []
    return [f"{where}: the resource is not one of the draft orders"]


def discovery_crd_problems(service: dict, where: str) -> list[str]:
    ext = service.get("extension") or {}
    problems = []
    versions = ext.get("davinci-crd.version")
    if not (isinstance(versions, list) and versions and all(isinstance(v, str) for v in versions)):
        problems.append(f"{where}: davinci-crd.version must list at least one version (dev-1)")
    options = ext.get("davinci-crd.configuration-options") or []
    codes = [o.get("code") for o in options]
    if len(codes) != len(set(codes)):
        problems.append(f"{where}: configuration option codes are not unique (dev-8)")
    types = valueset_codes("http://hl7.org/fhir/us/davinci-crd/ValueSet/configTypes")
    for i, option in enumerate(options):
        for key in ("code", "type", "name", "description"):
            if not isinstance(option.get(key), str) or not option.get(key):
                problems.append(f"{where}.configuration-options[{i}]: {key} missing")
        if option.get("type") not in types:
            problems.append(f"{where}.configuration-options[{i}]: type not in configTypes")
        default = option.get("default")
        if default is not None and (option.get("type") == "boolean") != isinstance(default, bool):
            problems.append(f"{where}.configuration-options[{i}]: default does not match type")
    if not any(o.get("type") == "boolean" and o.get("code") in card_type_codes() - {"coverage-info"}
               for o in options):
        problems.append(f"{where}: no boolean option for a card type (dev-5)")
    return problems


def card_topic_problems(card: dict, where: str) -> list[str]:
    topic = (card.get("source") or {}).get("topic") or {}
    if topic.get("system") == TEMP and topic.get("code") not in card_type_codes():
        return [f"{where}: source.topic {topic.get('code')!r} is not in the 2.0.1 cardType value set"]
    return []
