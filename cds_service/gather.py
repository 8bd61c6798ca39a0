"""Gather the data a decision needs beyond the draft orders: prefetch first.

Prefetch arrives in many shapes (CDS Hooks 2.0 §Prefetch): a key may be missing or ``null``,
an OperationOutcome may stand in for a failed query, a search may be an empty searchset, and a
searchset may be one page of several (``next`` link). None of these is an error. The
FHIR-server fallback (:mod:`cds_service.fhir_source`) plugs in through :class:`DataSource`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .hook_request import HookRequest
from .resource_index import (
    Resource,
    ResourceIndex,
    bundle_reports_error,
    draft_order_entries,
    next_link,
    prefetch_entries,
    prefetch_resources,
    unreadable_entries,
)

CONDITIONS_KEY = "conditions"
COVERAGE_KEY = "coverage"


def build_index(request: HookRequest) -> ResourceIndex:
    """Index the draft orders and every prefetched resource for reference resolution."""
    index = ResourceIndex()
    for full_url, resource in draft_order_entries(request.draft_orders):
        index.add(resource, full_url)
    for value in request.prefetch.values():
        for full_url, resource in prefetch_entries(value):  # by fullUrl too: a reason may be urn:uuid:...
            index.add(resource, full_url)
    return index


def prefetched(request: HookRequest, key: str, resource_type: str) -> list[Resource] | None:
    """Resources of ``resource_type`` under prefetch ``key``, or None if the key gives no answer.

    A missing key, ``null`` or an OperationOutcome means the client could not provide the data;
    an empty searchset means "no data" and gives ``[]``.
    """
    value = request.prefetch.get(key)
    if not isinstance(value, dict) or prefetch_reported_error(request, key):
        return None
    return [r for r in prefetch_resources(value) if r.get("resourceType") == resource_type]


def prefetch_reported_error(request: HookRequest, key: str) -> bool:
    """The client sent an OperationOutcome, or a searchset reporting an error, under ``key``: it
    tried and failed, which is not the same as "not prefetched" (nothing asked for)."""
    value = request.prefetch.get(key)
    return isinstance(value, dict) and (value.get("resourceType") == "OperationOutcome" or (
        value.get("resourceType") == "Bundle" and bundle_reports_error(value)))


def prefetch_next_link(request: HookRequest, key: str) -> str | None:
    """The ``next`` link of a paginated prefetched searchset under ``key``, if any."""
    value = request.prefetch.get(key)
    if isinstance(value, dict) and value.get("resourceType") == "Bundle":
        return next_link(value)
    return None


def prefetch_unreadable_entries(request: HookRequest, key: str) -> int:
    """Entries of the Bundle prefetched under ``key`` that hold no readable resource: what they
    held is unknown, so what was read of that Bundle is only part of it."""
    value = request.prefetch.get(key)
    if isinstance(value, dict) and value.get("resourceType") == "Bundle":
        return unreadable_entries(value)
    return 0


def _unreadable_note(count: int, what: str) -> str:
    return f"{count} prefetched {what} entr{'y' if count == 1 else 'ies'} holding no readable resource"


@dataclass
class PatientData:
    conditions: list[Resource] | None  # None: the active problem list could not be had
    coverages: list[Resource] | None  # None: the coverage could not be had
    unavailable: list[str] = field(default_factory=list)  # what could not be retrieved, in words
    coverage_unavailable: list[str] = field(default_factory=list)  # for the policy-choice reason
    conditions_partial: bool = False  # ``conditions`` is only part of the active problem list


class DataSource:
    """Prefetch-only data access. Subclasses add fetching from the EHR's FHIR server."""

    def __init__(self, request: HookRequest, index: ResourceIndex) -> None:
        self.request = request
        self.index = index

    def resolve(self, reference: str, container: Resource | None = None) -> Resource | None:
        return self.index.resolve(reference, container)

    def fetch_references(self, references: list[str]) -> None:
        """Make ``references`` resolvable if possible (no-op without a FHIR server)."""

    def prepare_patient_data(self) -> None:
        """A hint that :meth:`patient_data` will be asked for: start slow work early (no-op here)."""

    def patient_data(self, need_conditions: bool) -> PatientData:
        data = PatientData(conditions=[], coverages=prefetched(self.request, COVERAGE_KEY, "Coverage"))
        if data.coverages is None and prefetch_reported_error(self.request, COVERAGE_KEY):
            data.coverage_unavailable.append("the patient's coverage (the EHR reported an error retrieving it)")
        elif data.coverages is None:
            data.coverage_unavailable.append("the patient's coverage (not prefetched)")
        elif prefetch_next_link(self.request, COVERAGE_KEY):
            data.coverage_unavailable.append("further pages of the prefetched coverage (not followed)")
        elif unreadable := prefetch_unreadable_entries(self.request, COVERAGE_KEY):
            data.coverage_unavailable.append(_unreadable_note(unreadable, "coverage"))
        if need_conditions:
            data.conditions = prefetched(self.request, CONDITIONS_KEY, "Condition")
            if data.conditions is None:
                data.unavailable.append("active conditions (not prefetched)")
            elif prefetch_next_link(self.request, CONDITIONS_KEY):
                data.conditions_partial = True
                data.unavailable.append("further pages of the prefetched active conditions (not followed)")
            elif unreadable := prefetch_unreadable_entries(self.request, CONDITIONS_KEY):
                data.conditions_partial = True
                data.unavailable.append(_unreadable_note(unreadable, "active condition"))
        return data
