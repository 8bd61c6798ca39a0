"""Choose the payer policy from the patient's Coverage (pure)."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from .knowledge import Policy
from .resource_index import Resource, dicts_in, strings_in


@dataclass(frozen=True)
class PolicyChoice:
    policy: Policy
    basis: str  # coverage | default
    explanation: str


def normalize_name(name: str) -> str:
    name = name.casefold().replace("&", " and ")
    return re.sub(r"[^a-z0-9]+", " ", name).strip()


def _payor_candidates(
    coverage: Resource, resolve: Callable[[str, Resource], Resource | None]
) -> list[tuple[list[tuple[str, str]], list[str]]]:
    """For each payor: (identifiers as (system, value), names)."""
    candidates = []
    for payor in dicts_in(coverage.get("payor")):
        if not isinstance(payor, dict):
            continue
        identifiers: list[tuple[str, str]] = []
        names: list[str] = []
        ident = payor.get("identifier")
        if isinstance(ident, dict) and isinstance(ident.get("value"), str):
            identifiers.append((ident.get("system") or "", ident["value"]))
        if isinstance(payor.get("display"), str):
            names.append(payor["display"])
        if isinstance(payor.get("reference"), str):
            org = resolve(payor["reference"], coverage)
            if org is None and not identifiers and not names:
                names.append(f"{payor['reference']} (could not be retrieved)")
            if org is not None:
                if isinstance(org.get("name"), str):
                    names.append(org["name"])
                names.extend(strings_in(org.get("alias")))
                for oid in dicts_in(org.get("identifier")):
                    if isinstance(oid, dict) and isinstance(oid.get("value"), str):
                        identifiers.append((oid.get("system") or "", oid["value"]))
        candidates.append((identifiers, names))
    return candidates


def _matches(policy: Policy, identifiers: list[tuple[str, str]], names: list[str]) -> str | None:
    for system, value in identifiers:
        for p_system, p_value in policy.identifiers:
            if value == p_value and (not p_system or not system or p_system == system):
                return f"payor identifier {value}"
    known = {normalize_name(n) for n in (policy.payer_name, *policy.aliases)}
    for name in names:
        if normalize_name(name) in known:
            return f"payor name '{name}'"
    return None


def choose_policy(
    coverages: Iterable[Resource],
    policies: dict[str, Policy],
    default_policy_id: str,
    resolve: Callable[[str, Resource], Resource | None],
    unavailable: Iterable[str] = (),
) -> PolicyChoice:
    """The first active Coverage whose payor matches a configured payer wins; else the default.

    ``unavailable`` names coverage data that could not be retrieved; the default's reason says so.
    """
    seen_payors: list[str] = []
    for coverage in coverages:
        if coverage.get("resourceType") != "Coverage" or coverage.get("status") not in (None, "active"):
            continue
        for identifiers, names in _payor_candidates(coverage, resolve):
            for policy in policies.values():
                why = _matches(policy, identifiers, names)
                if why:
                    return PolicyChoice(policy, "coverage",
                                        f"matched the patient's active coverage ({why})")
            seen_payors.extend(names or [v for _, v in identifiers])
    default = policies[default_policy_id]
    if seen_payors:
        payors = ", ".join(sorted(set(seen_payors)))
        why = f"no configured payer policy matches the coverage payor ({payors}); default policy applied"
    else:
        why = "no active coverage with a payor was available; default policy applied"
    missing = list(dict.fromkeys(unavailable))
    if missing:
        why += "; could not be retrieved: " + "; ".join(missing)
    return PolicyChoice(default, "default", why)
