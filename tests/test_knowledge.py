"""Clinical content in cards/ traces to the seeds and the reference; codes are real."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import pytest
import simple_icd_10_cm as icd
from fhir.resources.R4B.valueset import ValueSet

from cds_service.knowledge import _check_file
from cds_service.terminology import ICD10CM, RXNORM

ROOT = Path(__file__).resolve().parent.parent
CARDS = ROOT / "cards"
SHARED = ROOT.parent / "shared"
REFERENCE = json.loads((SHARED / "reference" / "codes-and-evidence.json").read_text())
SEEDS = {p.name: p.read_text(encoding="utf-8") for p in (SHARED / "seeds").glob("*.txt")}
VALUESETS = {p.name: json.loads(p.read_text()) for p in sorted((CARDS / "valuesets").glob("*.json"))}
POLICIES = {p.name: json.loads(p.read_text()) for p in sorted((CARDS / "policies").glob("*.json"))}


def _codes(valueset: dict, system: str):
    for include in valueset["compose"]["include"]:
        if include.get("system") != system:
            continue
        for concept in include.get("concept", []):
            yield concept["code"]
        for flt in include.get("filter", []):
            yield flt["value"]


def _reference_strings(node) -> set[str]:
    found: set[str] = set()
    if isinstance(node, dict):
        for value in node.values():
            found |= _reference_strings(value)
    elif isinstance(node, list):
        for value in node:
            found |= _reference_strings(value)
    elif isinstance(node, str | int):
        found.add(str(node))
    return found


REFERENCE_STRINGS = _reference_strings(REFERENCE)
CONFIRMED = json.loads((SHARED / "reference" / "evidence-identifiers-confirmed.json").read_text())


def _confirmed_identifiers() -> set[str]:
    """PMIDs, DOIs and URLs the confirmation pass printed, with their PubMed and DOI addresses."""
    found: set[str] = set()
    for entry in CONFIRMED:
        if entry.get("pmid"):
            found |= {entry["pmid"], f"https://pubmed.ncbi.nlm.nih.gov/{entry['pmid']}/"}
        if entry.get("doi"):
            found |= {entry["doi"], f"https://doi.org/{entry['doi']}"}
        if entry.get("url"):
            found.add(entry["url"])
    return found


# An http:// address from the reference is also accepted served over https (links are https only).
CITABLE = (REFERENCE_STRINGS | _confirmed_identifiers()
           | {"https://" + s.removeprefix("http://") for s in REFERENCE_STRINGS if s.startswith("http://")})
COMPANION_PAPER_DOIS = ("10.1001/jamapsychiatry.2017.0078", "10.1111/j.1533-2500.2010.00362.x")
# Codes also appear inside descriptive strings ("2119381 esketamine 140 MG/ML Nasal Spray").
REFERENCE_TOKENS = set(re.findall(r"[A-Za-z0-9.]+", " ".join(REFERENCE_STRINGS)))
# The notes list a few codes the JSON does not (ketamine's strength components, §1.1).
REFERENCE_NOTE_TOKENS = set(re.findall(r"[A-Za-z0-9.]+", (SHARED / "reference" / "codes-and-evidence.md").read_text()))


def _squash(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


@pytest.mark.parametrize("name", sorted(VALUESETS))
def test_valueset_is_a_fhir_valueset(name):
    ValueSet.model_validate(VALUESETS[name])
    _check_file(VALUESETS[name], "valueset.schema.json", CARDS / "valuesets" / name)  # the start-up check


def _r4b_refuses(data) -> bool:
    try:
        ValueSet.model_validate(data)
    except Exception:
        return True
    return False


def _start_up_check_refuses(data) -> bool:
    try:
        _check_file(data, "valueset.schema.json", Path("valuesets/x.json"))
    except ValueError:
        return True
    return False


ODD_VALUES = [None, True, 0, 1.5, "", " ", "a b", " lead", "trail ", "tab\tin", "x" * 65, "2024-13-01",
              "bad id!", [], {}, ["x"], {"x": 1}]


def _mutations(node, path=()):
    """Every value replaced by odd values, every key deleted, an unknown key in every object."""
    if isinstance(node, dict):
        yield (*path, "unknown-element"), "x"
        for key, value in node.items():
            yield (*path, key), ...  # deleted
            for odd in ODD_VALUES:
                yield (*path, key), odd
            if isinstance(value, str):
                yield (*path, key), value + "\n" + value
            yield from _mutations(value, (*path, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            for odd in ODD_VALUES:
                yield (*path, index), odd
            yield from _mutations(value, (*path, index))


def _mutated(base, path, value):
    data = copy.deepcopy(base)
    target = data
    for key in path[:-1]:
        target = target[key]
    if value is ...:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return data


def _small(name: str) -> dict:
    """A bundled value set cut to two concepts or filters per include (same element shapes)."""
    data = copy.deepcopy(VALUESETS[name])
    data["compose"]["include"] = data["compose"]["include"][:2]
    for include in data["compose"]["include"]:
        for key in ("concept", "filter"):
            if key in include:
                include[key] = include[key][:2]
    return data


@pytest.mark.parametrize("name", ["medication-ketamine-iv.json", "indication-crps.json", "route-iv.json"])
def test_the_start_up_check_refuses_every_value_set_the_r4b_model_refuses(name):
    base = _small(name)
    assert not _r4b_refuses(base) and not _start_up_check_refuses(base)
    refused = 0
    for path, value in _mutations(base):
        data = _mutated(base, path, value)
        if _r4b_refuses(data):
            refused += 1
            assert _start_up_check_refuses(data), (path, value)
    assert refused > 100  # the mutations do reach the model's checks


@pytest.mark.parametrize(("path", "value"), [
    (("compose", "exclude"), [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "concept": [{"code": "1"}]}]),
    (("compose", "include", 0, "valueSet"), ["urn:x"]),
    (("status",), "bogus"),
    (("experimental",), "false"),
    (("compose",), None),
    (("compose", "include"), []),
])
def test_the_start_up_check_also_refuses_what_the_service_would_misread(path, value):
    """Accepted by the R4B model, but the matcher would ignore it (exclude, valueSet) or misread it."""
    data = _mutated(_small("medication-ketamine-iv.json"), path, value)
    assert not _r4b_refuses(data) and _start_up_check_refuses(data)


def test_every_icd10cm_code_in_the_valuesets_is_a_real_code():
    codes = {c for vs in VALUESETS.values() for c in _codes(vs, ICD10CM)}
    assert len(codes) > 100
    invalid = sorted(c for c in codes if not icd.is_valid_item(c))
    assert not invalid


def test_every_rxnorm_code_in_the_valuesets_is_in_the_reference():
    codes = {c for vs in VALUESETS.values() for c in _codes(vs, RXNORM)}
    assert {"6130", "6387", "238084", "1010033", "2119365"} <= codes
    assert not sorted(codes - REFERENCE_TOKENS - REFERENCE_NOTE_TOKENS)
    assert {"330467", "330468", "328379"} <= codes - REFERENCE_TOKENS  # from the notes only


def test_unconfirmed_codes_are_left_out():
    all_codes = {c for vs in VALUESETS.values() for inc in vs["compose"]["include"]
                 for c in [x["code"] for x in inc.get("concept", [])]}
    # SNOMED chronic migraine concept and HCPCS J2004 are marked unconfirmed in the reference.
    assert "124171000119105" not in all_codes
    assert "J2004" not in all_codes


@pytest.mark.parametrize("name", sorted(POLICIES))
def test_policy_statements_are_quoted_verbatim_from_the_seed(name):
    policy = POLICIES[name]
    seed = _squash(SEEDS[policy["policy"]["seed"]])
    for section in policy["sections"]:
        assert _squash(section["statement"]) in seed, section["id"]


@pytest.mark.parametrize("name", sorted(POLICIES))
def test_every_citation_identifier_comes_from_the_reference(name):
    for ref, citation in POLICIES[name]["citations"].items():
        for key in ("url", "pmid", "doi"):
            value = citation.get(key)
            if value:
                assert value in CITABLE, (ref, key, value)


@pytest.mark.parametrize("name", sorted(POLICIES))
def test_citation_links_are_https_and_companion_paper_dois_are_not_attached(name):
    text = json.dumps({k: {f: c.get(f) for f in ("url", "pmid", "doi")}
                       for k, c in POLICIES[name]["citations"].items()})
    assert not any(doi in text for doi in COMPANION_PAPER_DOIS)
    assert all((c.get("url") or "https://").startswith("https://")
               for c in POLICIES[name]["citations"].values())


def test_identifiers_confirmed_since_are_used():
    citations = {**POLICIES["bcbsks-iv-anesthetics.json"]["citations"],
                 **POLICIES["bcbsmn-ii-271.json"]["citations"]}
    assert citations["amr2010"]["doi"] == "10.36076/ppj.2010/13/245"
    ks = POLICIES["bcbsks-iv-anesthetics.json"]["citations"]
    assert ks["anand2023"]["url"] == "https://pubmed.ncbi.nlm.nih.gov/37224232/"
    assert ks["decarvalho2022"]["pmid"] == "35582338"


@pytest.mark.parametrize("name", sorted(POLICIES))
def test_every_study_names_the_drug_it_tested(name):
    for family, evidence in POLICIES[name]["evidence"].items():
        for study in evidence.get("studies", []):
            assert study["drug"] in study["finding"].lower() or study["ref"] == "sharma2020", (family, study)


@pytest.mark.parametrize("name", sorted(POLICIES))
def test_every_evidence_entry_cites_a_known_study(name):
    policy = POLICIES[name]
    for family, evidence in policy["evidence"].items():
        for study in evidence.get("studies", []):
            assert study["ref"] in policy["citations"], (family, study["ref"])


def test_policy_urls_come_from_the_reference():
    for policy in POLICIES.values():
        url = policy["policy"]["url"]
        assert url is None or url in REFERENCE_STRINGS


def test_the_kansas_policy_has_no_invented_url():
    kansas = next(p for p in POLICIES.values() if "Kansas" in p["payer"]["name"])
    assert kansas["policy"]["url"] is None


def test_knowledge_loads_with_every_family_pointing_at_a_valueset(app):
    knowledge = app.extensions["cds"].knowledge
    assert {f.section for f in knowledge.families} == {
        "chronic_pain", "psychiatric", "approved_use", "not_addressed"}
    assert set(knowledge.policies) == {"bcbsmn-ii-271", "bcbsks-iv-anesthetics"}


def test_the_committed_knowledge_is_what_the_generator_builds():
    """tools/build_valuesets.py is the source of the generated files: a hand edit to one of them
    (a synonym, a dose-form word) would be lost the next time it runs, so it must be made there."""
    import importlib.util
    import sys

    path = Path(__file__).resolve().parent.parent / "tools" / "build_valuesets.py"
    spec = importlib.util.spec_from_file_location("build_valuesets", path)
    generator = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(spec.name, generator)  # its dataclasses look their module up there
    spec.loader.exec_module(generator)
    build = generator.Build(source=json.loads(generator.DEFAULT_SOURCE.read_text(encoding="utf-8")))
    generator.build_indications(build)
    generator.build_medications(build)
    cards = path.parent.parent / "cards"
    for relative, content in build.files.items():
        assert json.loads((cards / relative).read_text(encoding="utf-8")) == content, relative
    assert {p.name for p in (cards / "valuesets").glob("*.json")} == {
        Path(r).name for r in build.files if r.startswith("valuesets/")}
