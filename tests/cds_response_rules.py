"""Project-owned checks of CDS Hooks 2.0 responses: JSON Schema plus the spec's conditional rules."""

from __future__ import annotations

import json
from pathlib import Path

from jsonschema import Draft202012Validator

from .crd_validator import card_topic_problems, coverage_information_problems, discovery_crd_problems

SCHEMA_DIR = Path(__file__).resolve().parent.parent / "cds_service" / "schemas"


def _validator(name: str) -> Draft202012Validator:
    return Draft202012Validator(json.loads((SCHEMA_DIR / name).read_text(encoding="utf-8")))


RESPONSE = _validator("cds-response.schema.json")
DISCOVERY = _validator("cds-discovery.schema.json")


def _walk_empty(value, path="$"):
    """Yield paths of null or empty values, which the spec forbids (except `cards: []`)."""
    if value is None or value == "" or value == [] or value == {}:
        yield path
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _walk_empty(item, f"{path}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _walk_empty(item, f"{path}[{index}]")


def response_problems(payload: dict) -> list[str]:
    problems = [f"schema: {e.json_path}: {e.message}" for e in RESPONSE.iter_errors(payload)]
    cards = payload.get("cards") if isinstance(payload, dict) else None
    if not isinstance(cards, list):
        return [*problems, "cards missing"]
    problems += coverage_information_problems(payload)  # Da Vinci CRD 2.0.1 package checks
    for i, card in enumerate(cards):
        problems += card_topic_problems(card, f"cards[{i}]")
        problems += [f"cards[{i}]: empty value at {p}" for p in _walk_empty(card)]
        if len(card.get("summary", "")) >= 140:
            problems.append(f"cards[{i}].summary is not under 140 characters")
        if card.get("suggestions") and "selectionBehavior" not in card:
            problems.append(f"cards[{i}]: suggestions without selectionBehavior (cds-resp-6)")
        for j, reason in enumerate(card.get("overrideReasons", [])):
            if not reason.get("display"):
                problems.append(f"cards[{i}].overrideReasons[{j}] has no display (cds-resp-4)")
        for j, link in enumerate(card.get("links", [])):
            if link.get("type") == "absolute" and "appContext" in link:
                problems.append(f"cards[{i}].links[{j}]: appContext on an absolute link (cds-resp-3)")
        for j, suggestion in enumerate(card.get("suggestions", [])):
            for k, action in enumerate(suggestion.get("actions", [])):
                if not action.get("description"):
                    problems.append(f"cards[{i}].suggestions[{j}].actions[{k}] lacks description")
                if action.get("type") == "delete" and "resource" in action:
                    problems.append(f"cards[{i}].suggestions[{j}].actions[{k}]: delete with resource")
        if card.get("selectionBehavior") == "at-most-one" and sum(
            1 for s in card.get("suggestions", []) if s.get("isRecommended")
        ) > 1:
            problems.append(f"cards[{i}]: several recommended suggestions with at-most-one (cds-resp-1)")
    return problems


def assert_valid_response(payload: dict) -> None:
    problems = response_problems(payload)
    assert not problems, problems


def discovery_problems(payload: dict) -> list[str]:
    problems = [f"schema: {e.json_path}: {e.message}" for e in DISCOVERY.iter_errors(payload)]
    for i, service in enumerate(payload.get("services", [])):
        problems += [f"services[{i}]: empty value at {p}" for p in _walk_empty(service)]
        problems += discovery_crd_problems(service, f"services[{i}]")
    return problems
