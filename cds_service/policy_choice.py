"""Choose the payer policy, and its version, from the patient's Coverage and the order's date (pure)."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date, timedelta
from functools import lru_cache

from .knowledge import Policy
from .resource_index import Resource, dicts_in, reference_key, strings_in

DEFAULT_WHEN_CHOICES = ("no-coverage", "unmatched-coverage")
UNMATCHED_CARD_CHOICES = ("info", "none")
UNRETRIEVED = " (could not be retrieved)"
NO_POLICY_ID = "none"  # the card's and audit trail's policy id when the plan has no policy on file


@dataclass(frozen=True)
class PolicySettings:
    """How to choose when the coverage names no bundled policy (config DEFAULT_POLICY_*, UNMATCHED_PAYER_CARD)."""

    default_policy_id: str
    default_when: str = "no-coverage"  # no-coverage | unmatched-coverage
    unmatched_card: str = "info"  # info | none

    def __post_init__(self) -> None:
        if self.default_when not in DEFAULT_WHEN_CHOICES:
            raise ValueError(f"DEFAULT_POLICY_WHEN must be one of {DEFAULT_WHEN_CHOICES}, "
                             f"not {self.default_when!r}")
        if self.unmatched_card not in UNMATCHED_CARD_CHOICES:
            raise ValueError(f"UNMATCHED_PAYER_CARD must be one of {UNMATCHED_CARD_CHOICES}, "
                             f"not {self.unmatched_card!r}")


@dataclass(frozen=True)
class PolicyChoice:
    policy: Policy
    basis: str  # coverage | default | unmatched (the plan has no policy on file)
    explanation: str  # for the log and the audit trail, not for the card
    plan: str = ""  # the patient's plan as the coverage names it
    when: date | None = None  # the order's date the version was chosen for
    coverage_unknown: bool = False  # the coverage could not be retrieved
    announce: bool = True  # unmatched: give an info card (False: stay quiet)

    @property
    def replaced(self) -> bool:
        """The order is dated on or after the day this policy version was replaced."""
        end = self.policy.effective_end
        return self.when is not None and end is not None and self.when >= end


def order_date(order: Resource, today: date) -> date:
    """The order's ``authoredOn`` date, else ``today`` (also for a partial or unreadable date)."""
    authored = order.get("authoredOn")
    if isinstance(authored, str) and len(authored) >= 10:
        try:
            return date.fromisoformat(authored[:10])
        except ValueError:
            pass
    return today


def version_for(versions: Iterable[Policy], when: date) -> Policy:
    """The version in effect on ``when``; after the last one ended, that last one (it is marked replaced)."""
    ordered = sorted(versions, key=lambda p: p.effective_start or date.min)
    for policy in ordered:
        if policy.in_effect(when):
            return policy
    started = [p for p in ordered if p.effective_start is None or p.effective_start <= when]
    return started[-1] if started else ordered[0]


def no_policy_on_file(plan: str) -> Policy:
    """A stand-in for a plan whose policy is not bundled: names the plan, states no ruling."""
    return Policy(id=NO_POLICY_ID, payer_name=plan, payer_short_name=plan, aliases=(), identifiers=(),
                  title="", number="", version="", url=None, sections={}, evidence={}, citations={},
                  override_reasons=(), summary_of_evidence="", raw={}, key=NO_POLICY_ID)


# A payor that is a person (self-pay, or a relative paying) is no plan: neither its name nor its
# identifiers (an MRN) may be read as one, or shown on a card or in the log.
PERSON_TYPES = frozenset({"Patient", "RelatedPerson"})


def coverage_applies(coverage: Resource, patient_id: str | None, when: date) -> bool:
    """Whether ``coverage`` can be the patient's plan for an order dated ``when``: active (or no
    status), not another patient's (``beneficiary``), and in force on that day (``period``). What
    cannot be read (an odd reference, a malformed date) is not held against it."""
    if coverage.get("resourceType") != "Coverage" or coverage.get("status") not in (None, "active"):
        return False
    beneficiary = coverage.get("beneficiary")
    if patient_id and isinstance(beneficiary, dict) and isinstance(beneficiary.get("reference"), str):
        key = reference_key(beneficiary["reference"])
        if key and key.startswith("Patient/") and key != f"Patient/{patient_id}":
            return False
    period = coverage.get("period")
    if isinstance(period, dict):
        start, end = _bound(period.get("start"), last=False), _bound(period.get("end"), last=True)
        if (start is not None and when < start) or (end is not None and when > end):
            return False
    return True


def _applicability(coverage: Resource) -> float:
    """``Coverage.order`` (1 = primary): a coverage that states it comes before one that does
    not; otherwise the order they were sent in (the sort is stable)."""
    order = coverage.get("order") if isinstance(coverage, dict) else None
    return order if isinstance(order, int) and not isinstance(order, bool) and order > 0 else float("inf")


def _bound(value: object, last: bool) -> date | None:
    """A period's start (or ``last``: end) as the first (last) day it may cover. The order's day
    is its local date; a boundary given with a time (and so an offset) may fall on the next or
    previous day there: it gets a day's grace, so no coverage is lost to a time zone."""
    day = _day(value, last)
    if day is None or not isinstance(value, str) or len(value) <= 10:
        return day
    return day + timedelta(days=1) if last else day - timedelta(days=1)


def _day(value: object, last: bool) -> date | None:
    """A FHIR date or dateTime as a day; a year or a month as its first (or ``last``) day."""
    if not isinstance(value, str):
        return None
    try:
        if len(value) == 4:
            return date(int(value), 12, 31) if last else date(int(value), 1, 1)
        if len(value) == 7:
            year, month = int(value[:4]), int(value[5:7])
            if not last:
                return date(year, month, 1)
            return date(year + month // 12, month % 12 + 1, 1) - timedelta(days=1)
        return date.fromisoformat(value[:10])
    except ValueError:
        return None


def _is_person(payor: Resource, resolved: Resource | None) -> bool:
    kinds = [payor.get("type"), resolved.get("resourceType") if resolved is not None else None]
    if any(isinstance(kind, str) and kind in PERSON_TYPES for kind in kinds):
        return True
    key = reference_key(payor["reference"]) if isinstance(payor.get("reference"), str) else None
    return key is not None and key.split("/")[0] in PERSON_TYPES


@lru_cache(maxsize=4096)  # pure; the same few payor names come on every call
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
        org = resolve(payor["reference"], coverage) if isinstance(payor.get("reference"), str) else None
        if _is_person(payor, org):
            continue
        identifiers: list[tuple[str, str]] = []
        names: list[str] = []
        ident = payor.get("identifier")
        if isinstance(ident, dict) and isinstance(ident.get("value"), str):
            identifiers.append((ident.get("system") or "", ident["value"]))
        if isinstance(payor.get("display"), str):
            names.append(payor["display"])
        if isinstance(payor.get("reference"), str):
            if org is None and not identifiers and not names:
                names.append(f"{payor['reference']}{UNRETRIEVED}")
            if org is not None:
                if isinstance(org.get("name"), str):
                    names.append(org["name"])
                names.extend(strings_in(org.get("alias")))
                for oid in dicts_in(org.get("identifier")):
                    if isinstance(oid, dict) and isinstance(oid.get("value"), str):
                        identifiers.append((oid.get("system") or "", oid["value"]))
        candidates.append((identifiers, names))
    return candidates


@lru_cache(maxsize=256)
def _known_names(payer_name: str, aliases: tuple[str, ...]) -> frozenset[str]:
    return frozenset(normalize_name(n) for n in (payer_name, *aliases))


def _matches(policy: Policy, identifiers: list[tuple[str, str]], names: list[str]) -> str | None:
    for system, value in identifiers:
        for p_system, p_value in policy.identifiers:
            if value == p_value and (not p_system or not system or p_system == system):
                return f"payor identifier {value}"
    known = _known_names(policy.payer_name, tuple(policy.aliases))
    for name in names:
        if normalize_name(name) in known:
            return f"payor name '{name}'"
    return None


def choose_policy(
    coverages: Iterable[Resource],
    policies: dict[str, Policy],
    settings: PolicySettings | str,
    resolve: Callable[[str, Resource], Resource | None],
    unavailable: Iterable[str] = (),
    when: date | None = None,
    patient_id: str | None = None,
) -> PolicyChoice:
    """The first active Coverage whose payor matches a bundled payer policy wins (one of the
    patient's, in force on ``when``: :func:`coverage_applies`; by ``Coverage.order``, primary first).

    Its version is the one in effect on ``when`` (the order's date). A coverage whose payor
    matches no bundled policy gets ``basis="unmatched"`` (no policy on file), unless
    ``settings.default_when`` is ``unmatched-coverage``; the default policy applies when the
    request carries no coverage (or it could not be retrieved: ``unavailable``).
    """
    if isinstance(settings, str):
        settings = PolicySettings(settings)
    when = when or date.today()
    unavailable = list(unavailable)
    seen_payors: list[str] = []
    for coverage in sorted(coverages, key=_applicability):  # the primary coverage first
        if not coverage_applies(coverage, patient_id, when):
            continue
        for identifiers, names in _payor_candidates(coverage, resolve):
            for policy in policies.values():
                why = _matches(policy, identifiers, names)
                if why:
                    chosen = version_for([p for p in policies.values() if p.key == policy.key], when)
                    return PolicyChoice(chosen, "coverage",
                                        f"matched the patient's active coverage ({why})",
                                        plan=names[0] if names else chosen.payer_name, when=when)
            unresolved = [n for n in names if n.endswith(UNRETRIEVED)]
            if unresolved and len(unresolved) == len(names) and not identifiers:
                unavailable = [*unavailable, *unresolved]  # unknown payor: not "unmatched"
                continue
            seen_payors.extend([n for n in names if not n.endswith(UNRETRIEVED)] or [v for _, v in identifiers])
    missing = list(dict.fromkeys(unavailable))
    plans = ", ".join(dict.fromkeys(seen_payors))
    # Coverage merely not sent is "no coverage"; one that was looked for and not had is unknown.
    unknown = any("not prefetched" not in m for m in missing)
    if seen_payors and settings.default_when == "no-coverage":
        why = f"no bundled payer policy matches the coverage payor ({plans})"
        if missing:  # other coverage of the patient, unread, may name a plan with a policy
            why += "; could not be retrieved: " + "; ".join(missing)
        return PolicyChoice(no_policy_on_file(plans), "unmatched", why, plan=plans, when=when,
                            coverage_unknown=unknown, announce=settings.unmatched_card == "info")
    default_key = policies[settings.default_policy_id].key
    default = version_for([p for p in policies.values() if p.key == default_key], when)
    if seen_payors:
        why = f"no configured payer policy matches the coverage payor ({plans}); default policy applied"
    else:
        why = "no active coverage with a payor was available; default policy applied"
    if missing:
        why += "; could not be retrieved: " + "; ".join(missing)
    return PolicyChoice(default, "default", why, plan=plans, when=when, coverage_unknown=unknown)
