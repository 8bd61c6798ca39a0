#!/usr/bin/env python3
"""Build the terminology data (FHIR R4 ValueSets plus family indexes) for the CDS service.

Source of truth: ``shared/reference/codes-and-evidence.json`` (a sibling of the repository).
This script writes:

* ``cards/valuesets/*.json``  FHIR R4 ValueSet resources
* ``cards/indications.json``  indication family index (order, section, role, ValueSet, drugs)
* ``cards/medications.json``  drug index (ValueSets, text patterns, HCPCS map, routes)

Rules: a code is only written when the reference lists it and does not mark it unconfirmed
(``confirmed: false``) or unknown (``null`` / ``"?"``). Every ICD-10-CM code or prefix is checked
with ``simple_icd_10_cm``. Every ValueSet is validated with ``fhir.resources`` (R4B model). Any
inconsistency stops the build before a file is written.

Usage (from the repository root)::

    /work/venv/bin/python tools/build_valuesets.py [path/to/codes-and-evidence.json]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import simple_icd_10_cm as icd
from fhir.resources.R4B.valueset import ValueSet

Json = dict[str, Any]
Concept = dict[str, str]

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SOURCE = REPO_ROOT / ".." / "shared" / "reference" / "codes-and-evidence.json"
SOURCE_LABEL = "shared/reference/codes-and-evidence.json"
CARDS_DIR = REPO_ROOT / "cards"
VALUESET_DIR = CARDS_DIR / "valuesets"
URL_PREFIX = "urn:iv-anesthetics-cds:ValueSet:"

ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
SNOMED = "http://snomed.info/sct"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
NDC = "http://hl7.org/fhir/sid/ndc"
HCPCS = "https://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets"

UNKNOWN_CODES = {None, "", "?"}
INJECTABLE_DOSE_FORMS = ("Injectable Solution", "Injection", "Prefilled Syringe", "IJ SOLN")
INJECTABLE_DOSE_FORMS_SOURCE = (
    "RxNorm dose-form names; 'IJ SOLN' is Epic's abbreviation for injectable solution, as in the "
    "medicationReference.display 'KETAMINE HCL 50 MG/ML IJ SOLN' quoted from Epic's CDS Hooks tutorial in "
    "issue 8 section 9"
)
# A family named in a reason's own words (written into cards/indications.json; see INDICATIONS_COMMENT).
FAMILY_SYNONYMS = {
    'chronic_pain_general': ['chronic pain'],
    'neuropathic_pain': ['neuropathic pain', 'chronic neuropathic pain'],
    'crps': ['complex regional pain syndrome', 'CRPS', 'reflex sympathetic dystrophy'],
    'postherpetic_neuralgia': ['postherpetic neuralgia', 'post-herpetic neuralgia', 'PHN'],
    'diabetic_neuropathy': ['diabetic neuropathy'],
    'phantom_limb': ['phantom limb pain'],
    'chronic_migraine': ['chronic migraine'],
    'migraine_any': ['migraine'],
    'chronic_daily_headache': ['chronic daily headache'],
    'fibromyalgia': ['fibromyalgia'],
    'depression': ['depression', 'treatment-resistant depression', 'TRD', 'major depressive disorder'],
    'bipolar': ['bipolar disorder', 'bipolar depression'],
    'ocd': ['obsessive-compulsive disorder', 'OCD'],
    'ptsd': ['post-traumatic stress disorder', 'PTSD'],
    'suicidal_ideation': ['suicidal ideation'],
    'anesthesia_sedation': ['anesthesia', 'sedation'],
}
INDICATIONS_COMMENT = (
    "Indication families. `synonyms` name a family in a reason's own words (text or display) when its cod"
    'es cannot be classified; each is worded as in the seeds (000_0bef50473c267421.txt, 003_01aa9851f9923'
    "09e.txt) or the reference (codes-and-evidence.md: 'anesthesia / procedural sedation'): a text match "
    "gives an info card ('code it to confirm'), never a warning; for the approved-use family it makes a r"
    'easonReference Procedure an anesthetic use, unless the order also gives a reason that warns or canno'
    "t be read, or the Procedure's words deny it ('without sedation')."
)
BOTH_DRUGS = ("ketamine", "lidocaine")

# HCPCS long descriptors printed in the CODING section of the BCBS Kansas policy
# (shared/seeds/003_01aa9851f992309e.txt): they confirm J2002/J2003 and supersede the JSON text.
SEED_HCPCS_DISPLAYS = {
    "J2002": "Injection, lidocaine hcl in 5% dextrose, 1 mg",
    "J2003": "Injection, lidocaine hydrochloride, 1 mg",
}
SEED_LABEL = "BCBS Kansas policy CODING section (shared/seeds/003_01aa9851f992309e.txt)"
# Drug identified by each HCPCS code. J3490 "Unclassified drugs" alone identifies no drug.
HCPCS_DRUG = {"J2001": "lidocaine", "J2002": "lidocaine", "J2003": "lidocaine", "J3490": None}

DRUG_TEXT = {
    "ketamine": {
        "text_patterns": ["ketamine", "ketalar"],
        "exclude_text_patterns": ["esketamine", "spravato"],
    },
    "lidocaine": {
        "text_patterns": ["lidocaine", "xylocaine"],
        "exclude_text_patterns": [
            "epinephrine",
            "prilocaine",
            "tetracaine",
            "menthol",
            "phenylephrine",
            "patch",
            "cream",
            "gel",
            "ointment",
            "spray",
            "topical",
            "lotion",
            "viscous",
            "jelly",
        ],
    },
}

ROLE_MEANING = {
    "flag": "an IV ketamine or IV lidocaine order for this indication is "
    "experimental/investigational under the policy (warning card)",
    "context": "flags only together with a chronic pain code (context, not a warning by itself)",
    "advisory": "covered by the policy's 'including but not limited to' wording (advisory card)",
    "approved": "FDA-labeled use; never warns",
    "not_addressed": "not addressed by the policy; never warns",
}


class BuildError(Exception):
    """The reference data is inconsistent or a generated resource is invalid."""


@dataclass(frozen=True)
class Family:
    """An indication family: one ValueSet and one entry in cards/indications.json."""

    id: str
    label: str
    section: str
    role: str
    source_group: str
    source_keys: tuple[str, ...]
    drugs: tuple[str, ...] = BOTH_DRUGS
    # For never-warn families: the policy sections whose warnings this use silences when it is
    # the order's stated reason. An FDA-labeled use explains the whole order; neoplasm-related pain
    # only answers a pain indication (a depression code beside it still warns); acute pain nothing.
    exempts: tuple[str, ...] = ()

    @property
    def file_stem(self) -> str:
        return f"indication-{self.id}"

    @property
    def resource_id(self) -> str:
        return f"indication-{self.id.replace('_', '-')}"


FAMILIES: tuple[Family, ...] = (
    Family(
        "chronic_pain_general",
        "Chronic pain",
        "chronic_pain",
        "flag",
        "indications",
        ("chronic_pain_general",),
    ),
    Family(
        "central_pain_post_stroke",
        "Central post-stroke pain",
        "chronic_pain",
        "flag",
        "indications",
        ("central_pain_post_stroke",),
    ),
    Family(
        "post_stroke_context",
        "Sequelae of stroke",
        "chronic_pain",
        "context",
        "indications",
        ("post_stroke_context",),
    ),
    Family(
        "neuropathic_pain",
        "Neuropathic pain",
        "chronic_pain",
        "flag",
        "indications",
        ("neuralgia_neuropathic_unspecified",),
    ),
    Family(
        "crps", "Complex regional pain syndrome", "chronic_pain", "flag", "indications", ("crps",)
    ),
    Family(
        "postherpetic_neuralgia",
        "Postherpetic neuralgia",
        "chronic_pain",
        "flag",
        "indications",
        ("postherpetic_neuralgia",),
    ),
    Family(
        "diabetic_neuropathy",
        "Diabetic neuropathy",
        "chronic_pain",
        "flag",
        "indications",
        ("diabetic_neuropathy",),
    ),
    Family(
        "phantom_limb",
        "Phantom limb pain",
        "chronic_pain",
        "flag",
        "indications",
        ("phantom_limb",),
    ),
    Family(
        "spinal_cord_injury_pain",
        "Spinal cord injury pain",
        "chronic_pain",
        "context",
        "indications",
        ("spinal_cord_injury",),
    ),
    Family(
        "other_neuropathic_pain",
        "Other neuropathic pain",
        "chronic_pain",
        "advisory",
        "indications",
        ("other_neuropathic_pain",),
    ),
    Family(
        "chronic_migraine",
        "Chronic migraine",
        "chronic_pain",
        "flag",
        "indications",
        ("chronic_migraine",),
    ),
    Family(
        "migraine_any", "Migraine", "chronic_pain", "advisory", "indications", ("migraine_any",)
    ),
    Family(
        "chronic_daily_headache",
        "Chronic daily headache",
        "chronic_pain",
        "flag",
        "indications",
        ("chronic_daily_headache_types",),
    ),
    Family(
        "fibromyalgia", "Fibromyalgia", "chronic_pain", "flag", "indications", ("fibromyalgia",)
    ),
    Family(
        "depression",
        "Depression (incl. TRD)",
        "psychiatric",
        "flag",
        "indications",
        ("depression",),
    ),
    Family("bipolar", "Bipolar disorder", "psychiatric", "flag", "indications", ("bipolar",)),
    Family("ocd", "Obsessive-compulsive disorder", "psychiatric", "flag", "indications", ("ocd",)),
    Family(
        "ptsd", "Post-traumatic stress disorder", "psychiatric", "flag", "indications", ("ptsd",)
    ),
    Family(
        "suicidal_ideation",
        "Suicidal ideation",
        "psychiatric",
        "advisory",
        "indications",
        ("suicidal_ideation",),
    ),
    Family(
        "ventricular_arrhythmia",
        "Ventricular arrhythmia",
        "approved_use",
        "approved",
        "approved_uses",
        ("approved_ventricular_arrhythmia",),
        ("lidocaine",),
        ("chronic_pain", "psychiatric"),
    ),
    Family(
        "anesthesia_sedation",
        "Anesthesia or procedural sedation",
        "approved_use",
        "approved",
        "approved_uses",
        ("ketamine_anesthesia_procedural_sedation", "lidocaine_local_regional_anesthesia"),
        BOTH_DRUGS,
        ("chronic_pain", "psychiatric"),
    ),
    Family(
        "cancer_pain",
        "Cancer pain (terminal, continuous infusion)",
        "not_addressed",
        "not_addressed",
        "out_of_scope",
        ("out_of_scope_cancer_pain",),
        BOTH_DRUGS,
        ("chronic_pain",),
    ),
    Family(
        "acute_pain",
        "Acute pain",
        "not_addressed",
        "not_addressed",
        "out_of_scope",
        ("acute_pain_not_in_policy",),
    ),
)


@dataclass
class Build:
    """Everything produced by one run, kept in memory until all checks have passed."""

    source: Json
    files: dict[str, Json] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)

    def skip(self, what: str) -> None:
        self.skipped.append(what)

    def add(self, relative_path: str, content: Json) -> None:
        if relative_path in self.files:
            raise BuildError(f"{relative_path} generated twice")
        self.files[relative_path] = content


# --------------------------------------------------------------------------- helpers


def usable(entry: Json, code_key: str) -> bool:
    """True when an entry has a real code and is not marked unconfirmed."""
    return entry.get("confirmed", True) is not False and entry.get(code_key) not in UNKNOWN_CODES


def concept(code: str, display: str | None = None) -> Concept:
    return {"code": code, "display": display} if display else {"code": code}


def add_concept(concepts: list[Concept], new: Concept) -> None:
    """Append a concept unless its code is already present (first display wins)."""
    if all(existing["code"] != new["code"] for existing in concepts):
        concepts.append(new)


def pascal(text: str) -> str:
    return "".join(part.capitalize() for part in re.split(r"[^A-Za-z0-9]+", text) if part)


def check_icd(code: str, where: str) -> str:
    if not icd.is_valid_item(code):
        raise BuildError(f"{where}: {code!r} is not a valid ICD-10-CM code or category")
    return code


def ndc10_to_11(ndc: str) -> str:
    """Convert a hyphenated FDA NDC (4-4-2, 5-3-2 or 5-4-1) to the 11-digit 5-4-2 form."""
    parts = ndc.split("-")
    widths = (5, 4, 2)
    if len(parts) != 3 or not all(p.isdigit() for p in parts):
        raise BuildError(f"unparseable NDC {ndc!r}")
    return "".join(p.zfill(w) for p, w in zip(parts, widths, strict=True))


def parse_rxcui_text(value: str) -> Concept:
    """Parse reference strings such as '2119381 esketamine 140 MG/ML Nasal Spray'."""
    match = re.fullmatch(r"(\d+)(?:\s+(.+))?", value.strip())
    if not match:
        raise BuildError(f"cannot read an RxCUI from {value!r}")
    return concept(match.group(1), match.group(2))


def value_set(
    *,
    stem: str,
    title: str,
    description: str,
    purpose: str,
    includes: Sequence[Json],
    resource_id: str | None = None,
) -> Json:
    if not includes:
        raise BuildError(f"{stem}: no usable codes; refusing to write an empty ValueSet")
    resource: Json = {
        "resourceType": "ValueSet",
        "id": resource_id or stem,
        "url": URL_PREFIX + stem,
        "name": pascal(stem),
        "title": title,
        "status": "active",
        "experimental": False,
        "description": description,
        "purpose": purpose,
        "compose": {"include": list(includes)},
    }
    try:
        ValueSet.model_validate(resource)
    except Exception as exc:  # pydantic ValidationError; report which resource failed
        raise BuildError(f"{stem}: FHIR ValueSet validation failed: {exc}") from exc
    return resource


def include(system: str, concepts: Sequence[Concept]) -> list[Json]:
    """An include block for a concept list, or nothing when the list is empty."""
    return [{"system": system, "concept": list(concepts)}] if concepts else []


def codes_of(resource: Json, system: str) -> list[str]:
    return [
        c["code"]
        for inc in resource["compose"]["include"]
        if inc["system"] == system
        for c in inc.get("concept", [])
    ]


def generated_by(source_path: str) -> str:
    return f"Generated by tools/build_valuesets.py from {SOURCE_LABEL} ({source_path})."


# --------------------------------------------------------------------------- indications


def build_indication(build: Build, family: Family) -> Json:
    group = build.source[family.source_group]
    prefixes: list[str] = []
    prefix_display: dict[str, str] = {}
    leaves: list[Concept] = []
    snomed: list[Concept] = []
    scopes: list[str] = []
    notes: list[str] = []

    for key in family.source_keys:
        entry: Json = group[key]
        where = f"{family.source_group}.{key}"
        if family.section in ("chronic_pain", "psychiatric") and entry.get("role") != family.role:
            raise BuildError(f"{where}: role {entry.get('role')!r} != expected {family.role!r}")
        scopes.append(entry["policy_scope"])
        if entry.get("notes"):
            notes.append(entry["notes"])
        for detail in entry.get("icd10cm_prefix_detail", []):
            prefix_display[detail["prefix"]] = detail["display"]
        for prefix in entry.get("icd10cm", []):
            if prefix in UNKNOWN_CODES:
                build.skip(f"{where}: ICD-10-CM prefix {prefix!r} (unknown)")
                continue
            if prefix not in prefixes:
                prefixes.append(check_icd(prefix, where))
        for leaf in entry.get("icd10cm_billable_codes_fy2025", []):
            code = check_icd(leaf["code"], where)
            if not any(code.startswith(p) for p in prefixes):
                raise BuildError(f"{where}: billable code {code} is under none of {prefixes}")
            add_concept(leaves, concept(code, leaf["display"]))
        for item in entry.get("snomed", []):
            if usable(item, "code"):
                add_concept(snomed, concept(item["code"], item["display"]))
            else:
                build.skip(
                    f"{where}: SNOMED {item.get('code')} {item.get('display')} (confirmed=false)"
                )

    includes: list[Json] = [
        {"system": ICD10CM, "filter": [{"property": "concept", "op": "is-a", "value": p}]}
        for p in prefixes
    ]
    includes += include(ICD10CM, leaves)
    includes += include(SNOMED, snomed)

    description = " / ".join(scopes) + "."
    if prefixes:
        listed = "; ".join(f"{p} {prefix_display.get(p, '')}".strip() for p in prefixes)
        description += f" ICD-10-CM prefixes (is-a = dotted-prefix match): {listed}." + (
            f" {len(leaves)} billable FY2025 leaf codes listed with displays."
            if leaves
            else " Billable leaves not enumerated (large category); match by prefix."
        )
    else:
        description += (
            " No ICD-10-CM diagnosis identifies this use; it shows through procedure context "
            "(linked Procedure, order set, location, route), see how_it_shows in the source."
        )
    if notes:
        description += " Notes: " + " ".join(notes)
    source_paths = ", ".join(f"{family.source_group}.{k}" for k in family.source_keys)
    purpose = (
        f"Section {family.section}, role {family.role}: {ROLE_MEANING[family.role]}. "
        f"Applies to: {', '.join(family.drugs)}. {generated_by(source_paths)}"
    )
    return value_set(
        stem=family.file_stem,
        resource_id=family.resource_id,
        title=f"Indication family: {family.label}",
        description=description,
        purpose=purpose,
        includes=includes,
    )


def build_indications(build: Build) -> None:
    index: list[Json] = []
    for family in FAMILIES:
        resource = build_indication(build, family)
        build.add(f"valuesets/{family.file_stem}.json", resource)
        index.append(
            {
                "id": family.id,
                "label": family.label,
                "section": family.section,
                "role": family.role,
                "valueset": family.file_stem,
                "drugs": list(family.drugs),
                **({"exempts": list(family.exempts)} if family.exempts else {}),
                **({"synonyms": FAMILY_SYNONYMS[family.id]} if family.id in FAMILY_SYNONYMS else {}),
            }
        )
    build.add("indications.json", {"_comment": INDICATIONS_COMMENT, "families": index})


# --------------------------------------------------------------------------- medications


def ingredient_level(build: Build, drug: Json, where: str) -> list[Concept]:
    """IN, PIN (when confirmed) and BN concepts of a drug."""
    concepts: list[Concept] = []
    for key in ("ingredient", "precise_ingredient"):
        entry = drug.get(key)
        if entry is None:
            continue
        if usable(entry, "rxcui"):
            add_concept(concepts, concept(entry["rxcui"], entry["name"]))
        else:
            build.skip(
                f"{where}.{key}: {entry.get('name')} RxCUI {entry.get('rxcui')} "
                "(confirmed=false / null)"
            )
    for brand in drug.get("brand_names", []):
        if usable(brand, "rxcui"):
            add_concept(concepts, concept(brand["rxcui"], brand["name"]))
        else:
            build.skip(f"{where}.brand_names: {brand.get('name')} (unconfirmed)")
    return concepts


def products(clinical_drugs: Iterable[Json]) -> tuple[list[Concept], list[Concept], list[Concept]]:
    """(SCD+SBD RxNorm concepts, NDC concepts, brand concepts) for a list of SCD entries."""
    rx: list[Concept] = []
    ndcs: list[Concept] = []
    brands: list[Concept] = []
    for scd in clinical_drugs:
        add_concept(rx, concept(scd["rxcui"], scd["name"]))
        for ndc in scd.get("ndc11", []):
            add_concept(ndcs, concept(ndc, scd["name"]))
        for sbd in scd.get("sbd", []):
            add_concept(rx, concept(sbd["rxcui"], sbd["name"]))
            for ndc in sbd.get("ndc11", []):
                add_concept(ndcs, concept(ndc, sbd["name"]))
            for brand in sbd.get("brand", []):
                add_concept(brands, concept(brand["rxcui"], brand["name"]))
    return rx, ndcs, brands


def check_injectables(clinical_drugs: Iterable[Json], where: str) -> None:
    for scd in clinical_drugs:
        if scd.get("dose_form") not in INJECTABLE_DOSE_FORMS or " / " in scd["name"]:
            raise BuildError(
                f"{where}: {scd['rxcui']} {scd['name']} is not a single-ingredient injectable"
            )


def check_example_ndcs(examples: Iterable[Json], ndc_owner: dict[str, str], where: str) -> None:
    """Every example NDC must already be in the product lists, under the same RxCUI."""
    for example in examples:
        ndc11 = example.get("ndc11") or ndc10_to_11(example["ndc"])
        if ndc_owner.get(ndc11) != example["rxcui"]:
            raise BuildError(
                f"{where}: example NDC {example['ndc']} -> {ndc11} is not listed "
                f"under RxCUI {example['rxcui']}"
            )


def ndc_owner_map(clinical_drugs: Iterable[Json]) -> dict[str, str]:
    owner: dict[str, str] = {}
    for scd in clinical_drugs:
        items = [scd, *scd.get("sbd", [])]
        for item in items:
            for ndc in item.get("ndc11", []):
                if owner.setdefault(ndc, item["rxcui"]) != item["rxcui"]:
                    raise BuildError(f"NDC {ndc} is listed under two RxCUIs")
    return owner


# Ketamine's strength components (SCDC, no dose form, like the ingredient): listed in
# shared/reference/codes-and-evidence.md §1.1, not in the JSON the rest is built from.
KETAMINE_SCDC_FROM_MD = (("330467", "ketamine 10 MG/ML"), ("330468", "ketamine 50 MG/ML"),
                         ("328379", "ketamine 100 MG/ML"))


def build_ketamine(build: Build) -> Json:
    ket = build.source["medications"]["ketamine"]
    where = "medications.ketamine"
    check_injectables(ket["scd"], where)
    check_example_ndcs(ket.get("example_ndcs", []), ndc_owner_map(ket["scd"]), where)
    rx = ingredient_level(build, ket, where)
    for code, name in KETAMINE_SCDC_FROM_MD:
        add_concept(rx, concept(code, name))
    product_rx, ndcs, _ = products(ket["scd"])
    for c in product_rx:
        add_concept(rx, c)
    return value_set(
        stem="medication-ketamine-iv",
        title="Ketamine injectable products (IV-capable)",
        description=(
            "Ketamine ingredient (RxNorm IN 6130), brand Ketalar, the strength components (SCDC "
            "330467/330468/328379, codes-and-evidence.md 1.1), the single-ingredient "
            "ketamine Injectable Solution SCDs/SBDs and their NDCs (RxNorm 2025-10-06 prescribable "
            "content). These vials are labeled for IV and IM use, so the order route decides "
            "whether the order is IV. NDCs are 11-digit without hyphens (normalize 10-digit "
            "hyphenated NDCs before lookup). The ketamine hydrochloride PIN is not included: its "
            "RxCUI is unconfirmed in the reference. Esketamine (Spravato) is excluded."
        ),
        purpose=generated_by(where),
        includes=include(RXNORM, rx) + include(NDC, ndcs),
    )


def build_lidocaine(build: Build) -> Json:
    lido = build.source["medications"]["lidocaine"]
    where = "medications.lidocaine"
    injectables: list[Json] = lido["iv_capable_injectables"]
    check_injectables(injectables, where)
    owner = ndc_owner_map(injectables)
    check_example_ndcs(lido.get("example_ndcs", []), owner, where)
    check_premixed_bags(lido, owner)
    rx = ingredient_level(build, lido, where)
    product_rx, ndcs, _ = products(injectables)
    for c in product_rx:
        add_concept(rx, c)
    return value_set(
        stem="medication-lidocaine-iv",
        title="Lidocaine hydrochloride injectable products (IV-capable)",
        description=(
            "Lidocaine ingredient (RxNorm IN 6387), lidocaine hydrochloride (PIN 142440), brand "
            "Xylocaine (BN 202398), every single-ingredient lidocaine HCl Injection / Injectable "
            "Solution / Prefilled Syringe SCD and SBD that can be given IV (including the premixed "
            "'Lidocaine HCl and 5% Dextrose' bags) and their NDCs (RxNorm 2025-10-06 prescribable "
            "content). 1% and 2% vials are also used for infiltration, so the order route decides "
            "whether the order is IV. NDCs are 11-digit without hyphens. Epinephrine "
            "combinations, jet injector and non-injectable forms are in medication-excluded."
        ),
        purpose=generated_by(where),
        includes=include(RXNORM, rx) + include(NDC, ndcs),
    )


def check_premixed_bags(lido: Json, owner: dict[str, str]) -> None:
    listed = {scd["rxcui"] for scd in lido["iv_capable_injectables"]}
    for bag in lido["premixed_iv_bags"]:
        if bag["rxcui"] not in listed:
            raise BuildError(f"premixed bag {bag['rxcui']} missing from iv_capable_injectables")
        for text in bag.get("ndc", []):
            ndc11 = ndc10_to_11(text.split()[0])
            if owner.get(ndc11) != bag["rxcui"]:
                raise BuildError(f"premixed bag NDC {text} not listed under {bag['rxcui']}")


def build_premixed(build: Build) -> Json:
    lido = build.source["medications"]["lidocaine"]
    bags = {bag["rxcui"]: bag for bag in lido["premixed_iv_bags"]}
    bag_products = [scd for scd in lido["iv_capable_injectables"] if scd["rxcui"] in bags]
    rx = [concept(code, bag["name"]) for code, bag in bags.items()]
    _, ndcs, _ = products(bag_products)
    return value_set(
        stem="medication-premixed-iv-bags",
        title="Premixed lidocaine IV bags (IV-only)",
        description=(
            f"{lido['premixed_note']} An order for one of these products is IV even when the "
            "order carries no route. NDCs are the RxNorm NDC lists of the same SCDs."
        ),
        purpose=generated_by("medications.lidocaine.premixed_iv_bags"),
        includes=include(RXNORM, rx) + include(NDC, ndcs),
    )


def build_excluded(build: Build, allowed_rx: set[str], allowed_ndc: set[str]) -> Json:
    meds = build.source["medications"]
    rx: list[Concept] = []
    ndcs: list[Concept] = []
    brands: list[Concept] = []

    for item in meds["ketamine"]["not_iv_to_exclude"]:
        codes: list[Concept] = []
        if item.get("rxcui_in") not in UNKNOWN_CODES:
            codes.append(
                concept(item["rxcui_in"], "esketamine" if "esketamine" in item["what"] else None)
            )
        for key in ("scd", "sbd", "bn"):
            if item.get(key) not in UNKNOWN_CODES:
                codes.append(parse_rxcui_text(item[key]))
        codes += [parse_rxcui_text(g) for g in item.get("gpck", [])]
        if not codes:
            build.skip(
                f"medications.ketamine.not_iv_to_exclude: '{item['what']}' has no RxCUI "
                "(route-based exclusion only)"
            )
        for c in codes:
            add_concept(rx, c)

    lido = meds["lidocaine"]
    for item in lido["multi_ingredient_to_exclude"]:
        add_concept(rx, concept(item["rxcui"], item["name"]))
    non_iv = lido["non_iv_injectables_to_exclude"]
    non_injectable = lido["non_injectable_products_to_exclude"]
    for group in (
        non_iv["lidocaine_with_epinephrine"],
        non_iv["jet_injector"],
        non_injectable["products"],
    ):
        group_rx, group_ndc, group_brands = products(group)
        for c in group_rx:
            add_concept(rx, c)
        for c in group_ndc:
            add_concept(ndcs, c)
        for c in group_brands:
            add_concept(brands, c)

    listed = {c["code"] for c in rx}
    for example in non_injectable.get("key_examples", []):
        refs = [example["rxcui"]] + (
            [parse_rxcui_text(example["sbd"])["code"]] if example.get("sbd") else []
        )
        missing = [r for r in refs if r not in listed]
        if missing:
            raise BuildError(f"key example {example['name']}: {missing} not in products list")

    for brand in brands:
        if brand["code"] in allowed_rx:
            build.skip(
                f"medication-excluded: brand {brand['code']} {brand['display']} is also an "
                "IV product brand; kept only in the IV set"
            )
        else:
            add_concept(rx, brand)

    clash_rx = sorted({c["code"] for c in rx} & allowed_rx)
    clash_ndc = sorted({c["code"] for c in ndcs} & allowed_ndc)
    if clash_rx or clash_ndc:
        raise BuildError(f"excluded codes also in IV sets: {clash_rx + clash_ndc}")

    return value_set(
        stem="medication-excluded",
        title="Ketamine/lidocaine products that are never IV anesthetic infusions",
        description=(
            "Products to exclude before checking indication: esketamine (IN 2119365) and its "
            "Spravato nasal spray SCD/SBD/BN/GPCKs; lidocaine multi-ingredient MINs "
            "(epinephrine, prilocaine, tetracaine, menthol, phenylephrine); lidocaine with "
            "epinephrine injectables and the lidocaine jet injector (with their SBDs, brands and "
            "NDCs); and every non-injectable lidocaine SCD/SBD and brand (patches, creams, gels, "
            "sprays, ointments, lotions, rectal/ophthalmic/otic forms). Oral/compounded and IM "
            "ketamine have no distinct RxCUI and are excluded by route instead. Brands shared "
            "with IV products (Xylocaine 202398) are left out."
        ),
        purpose=generated_by(
            "medications.ketamine.not_iv_to_exclude, medications.lidocaine."
            "{multi_ingredient_to_exclude, non_iv_injectables_to_exclude, "
            "non_injectable_products_to_exclude}"
        ),
        includes=include(RXNORM, rx) + include(NDC, ndcs),
    )


def build_hcpcs(build: Build) -> Json:
    concepts: list[Concept] = []
    entries = sorted(build.source["billing_codes"]["hcpcs"], key=lambda e: e["code"])
    for entry in entries:
        code = entry["code"]
        if code in SEED_HCPCS_DISPLAYS:
            concepts.append(concept(code, SEED_HCPCS_DISPLAYS[code]))
        elif usable(entry, "code"):
            concepts.append(concept(code, entry["desc"]))
        else:
            build.skip(f"billing_codes.hcpcs: {code} ({entry['desc']}; confirmed=false)")
    if sorted(c["code"] for c in concepts) != sorted(HCPCS_DRUG):
        raise BuildError(f"HCPCS codes {[c['code'] for c in concepts]} != {sorted(HCPCS_DRUG)}")
    return value_set(
        stem="medication-hcpcs-jcodes",
        title="HCPCS drug codes for IV lidocaine / ketamine",
        description=(
            "HCPCS Level II drug codes named by the policy. J2001 (lidocaine HCl for IV infusion, "
            "10 mg) is listed as deleted by the policy (deletion date unconfirmed) and is kept for "
            "older orders and claims. J2002 and J2003 displays are the long descriptors printed in "
            f"the {SEED_LABEL}; both are effective 2024-10-01. J3490 'Unclassified drugs' is how "
            "ketamine is billed; it identifies no drug without an NDC. J2004 is left out: its "
            "descriptor is unconfirmed in the reference."
        ),
        purpose=generated_by("billing_codes.hcpcs") + f" J2002/J2003 displays: {SEED_LABEL}.",
        includes=include(HCPCS, concepts),
    )


def build_routes(build: Build) -> tuple[Json, Json]:
    snomed = build.source["routes"]["snomed_ct"]

    def route_set(stem: str, title: str, key: str, text: str) -> Json:
        items: list[Json] = snomed[key]
        concepts = [concept(i["code"], i["display"]) for i in items if usable(i, "code")]
        medium = ", ".join(f"{i['code']}" for i in items if i.get("confidence") != "high")
        return value_set(
            stem=stem,
            title=title,
            description=(
                f"{text} SNOMED CT route concepts from {snomed['valueset'].split(' ')[0]}. "
                f"Confidence per reference: high except {medium or 'none'} (medium). "
                "FDA SPL (NCI Thesaurus) route codes are not included: the reference gives no "
                "FHIR system URI for them."
            ),
            purpose=generated_by(f"routes.snomed_ct.{key}"),
            includes=include(SNOMED, concepts),
        )

    iv = route_set(
        "route-iv", "Intravenous routes", "include_as_iv", "Routes that make an order intravenous."
    )
    non_iv = route_set(
        "route-non-iv",
        "Non-intravenous routes",
        "exclude",
        "Routes that make an order not intravenous (IM, subcutaneous, topical, "
        "nasal, oral, neuraxial, local infiltration-type and other routes).",
    )
    return iv, non_iv


def build_medications(build: Build) -> None:
    ketamine = build_ketamine(build)
    lidocaine = build_lidocaine(build)
    allowed_rx = set(codes_of(ketamine, RXNORM)) | set(codes_of(lidocaine, RXNORM))
    allowed_ndc = set(codes_of(ketamine, NDC)) | set(codes_of(lidocaine, NDC))
    premixed = build_premixed(build)
    if not set(codes_of(premixed, RXNORM)) <= allowed_rx:
        raise BuildError("premixed bags are not all in medication-lidocaine-iv")
    excluded = build_excluded(build, allowed_rx, allowed_ndc)
    hcpcs = build_hcpcs(build)
    route_iv, route_non_iv = build_routes(build)
    for resource in (ketamine, lidocaine, excluded, premixed, hcpcs, route_iv, route_non_iv):
        build.add(f"valuesets/{resource['url'].removeprefix(URL_PREFIX)}.json", resource)

    meds = build.source["medications"]
    drugs: list[Json] = []
    for drug_id, resource in (("ketamine", ketamine), ("lidocaine", lidocaine)):
        source = meds[drug_id]
        pin = source.get("precise_ingredient") or {}
        drugs.append(
            {
                "id": drug_id,
                "label": drug_id,
                "valueset": resource["url"].removeprefix(URL_PREFIX),
                "ingredient": {"system": RXNORM, "code": source["ingredient"]["rxcui"]},
                "precise_ingredients": (
                    [{"system": RXNORM, "code": pin["rxcui"]}] if usable(pin, "rxcui") else []
                ),
                **DRUG_TEXT[drug_id],
            }
        )
    build.add(
        "medications.json",
        {
            "drugs": drugs,
            "hcpcs": HCPCS_DRUG,
            "hcpcs_valueset": "medication-hcpcs-jcodes",
            "iv_only_products": "medication-premixed-iv-bags",
            "excluded_products": "medication-excluded",
            "injectable_dose_form_words": list(INJECTABLE_DOSE_FORMS),
            "_injectable_dose_form_words_source": INJECTABLE_DOSE_FORMS_SOURCE,
            "routes": build_route_rules(build),
        },
    )


# Words that name a route in free text or a coding display, matched as whole words.
IV_ROUTE_WORDS = ["intravenous", "intravenously", "iv", "i.v.", "ivpb", "iv push", "iv drip", "iv bolus"]
NON_IV_ROUTE_WORDS = [
    "intramuscular", "im", "subcutaneous", "subcut", "sc", "subq", "topical", "transdermal", "nasal",
    "intranasal", "oral", "by mouth", "po", "sublingual", "buccal", "infiltration", "perineural", "intradermal",
    "intralesional", "epidural", "intrathecal", "intra-articular", "intra-arterial", "rectal",
]


def build_route_rules(build: Build) -> Json:
    """Route ValueSets plus codes recognised in any code system and route words.

    NCI Thesaurus (FDA SPL) route codes and the HL7 v3 code IVINJ are listed in the reference
    without a confirmed FHIR system URI, so they are matched on the code alone; they are
    distinctive strings (C38276, IVINJ) that no other route system uses.
    """
    routes = build.source["routes"]
    nci = routes["fda_spl_route_nci"]["codes"]
    iv_nci = [c["code"] for c in nci if "INTRAVENOUS" in c["display"]]
    non_iv_nci = [c["code"] for c in nci if "INTRAVENOUS" not in c["display"]]
    v3_iv = [c["code"] for c in routes["hl7_v3_route"]["codes"] if c.get("confirmed") and "intravenous" in
             c["display"].lower()]
    return {
        "iv": "route-iv",
        "non_iv": "route-non-iv",
        "iv_codes_any_system": iv_nci + v3_iv,
        "non_iv_codes_any_system": non_iv_nci,
        "iv_words": IV_ROUTE_WORDS,
        "non_iv_words": NON_IV_ROUTE_WORDS,
        "_source": "codes from routes.fda_spl_route_nci and routes.hl7_v3_route in "
                   "shared/reference/codes-and-evidence.json; words are matched whole in route text/display",
    }


# --------------------------------------------------------------------------- output


def summarize(name: str, content: Json) -> str:
    if content.get("resourceType") != "ValueSet":
        return name
    counts: dict[str, int] = {}
    labels = {ICD10CM: "icd10cm", SNOMED: "snomed", RXNORM: "rxnorm", NDC: "ndc", HCPCS: "hcpcs"}
    for inc in content["compose"]["include"]:
        label = labels[inc["system"]]
        if "filter" in inc:
            counts[f"{label}_prefixes"] = counts.get(f"{label}_prefixes", 0) + 1
        else:
            counts[label] = counts.get(label, 0) + len(inc["concept"])
    return f"{name}: " + ", ".join(f"{k}={v}" for k, v in counts.items())


def write_all(build: Build) -> None:
    VALUESET_DIR.mkdir(parents=True, exist_ok=True)
    for relative, content in build.files.items():
        path = CARDS_DIR / relative
        path.write_text(json.dumps(content, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    expected = {CARDS_DIR / r for r in build.files}
    for stale in sorted(VALUESET_DIR.glob("*.json")):
        if stale not in expected:
            stale.unlink()
            print(f"removed stale {stale.relative_to(REPO_ROOT)}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "source",
        nargs="?",
        type=Path,
        default=DEFAULT_SOURCE,
        help=f"path to codes-and-evidence.json (default: ../{SOURCE_LABEL})",
    )
    args = parser.parse_args(argv)
    build = Build(source=json.loads(args.source.read_text(encoding="utf-8")))
    try:
        build_indications(build)
        build_medications(build)
    except BuildError as exc:
        print(f"build_valuesets: ERROR: {exc}", file=sys.stderr)
        return 1
    write_all(build)
    for relative, content in build.files.items():
        print(summarize(relative, content))
    for item in build.skipped:
        print(f"skipped: {item}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
