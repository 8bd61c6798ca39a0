"""Gather the data a decision needs beyond the draft orders: prefetch first.

The FHIR-server fallback plugs in through :class:`DataSource`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .hook_request import HookRequest
from .resource_index import Resource, ResourceIndex, draft_order_entries, prefetch_resources

CONDITIONS_KEY = "conditions"
COVERAGE_KEY = "coverage"


def build_index(request: HookRequest) -> ResourceIndex:
    """Index the draft orders and every prefetched resource for reference resolution."""
    index = ResourceIndex()
    for full_url, resource in draft_order_entries(request.draft_orders):
        index.add(resource, full_url)
    for value in request.prefetch.values():
        index.add_all(prefetch_resources(value))
    return index


def prefetched(request: HookRequest, key: str, resource_type: str) -> list[Resource] | None:
    """Resources of ``resource_type`` under prefetch ``key``, or None if the key gives no answer.

    A missing key, ``null`` or an OperationOutcome means the client could not provide the data;
    an empty searchset means "no data" and gives ``[]``.
    """
    value = request.prefetch.get(key)
    if not isinstance(value, dict) or value.get("resourceType") == "OperationOutcome":
        return None
    if value.get("resourceType") == "Bundle" and _bundle_reports_error(value):
        return None
    return [r for r in prefetch_resources(value) if r.get("resourceType") == resource_type]


def _bundle_reports_error(bundle: dict) -> bool:
    """A searchset whose entries include an OperationOutcome with an error or fatal issue."""
    for entry in bundle.get("entry") or []:
        resource = entry.get("resource") if isinstance(entry, dict) else None
        if isinstance(resource, dict) and resource.get("resourceType") == "OperationOutcome":
            for issue in resource.get("issue") or []:
                if isinstance(issue, dict) and issue.get("severity") in ("error", "fatal"):
                    return True
    return False


@dataclass
class PatientData:
    conditions: list[Resource] | None
    coverages: list[Resource] | None
    unavailable: list[str] = field(default_factory=list)


class DataSource:
    """Prefetch-only data access. Subclasses add fetching from the EHR's FHIR server."""

    def __init__(self, request: HookRequest, index: ResourceIndex) -> None:
        self.request = request
        self.index = index

    def resolve(self, reference: str, container: Resource | None = None) -> Resource | None:
        return self.index.resolve(reference, container)

    def fetch_references(self, references: list[str]) -> None:
        """Make ``references`` resolvable if possible (no-op without a FHIR server)."""

    def patient_data(self, need_conditions: bool) -> PatientData:
        conditions = prefetched(self.request, CONDITIONS_KEY, "Condition") if need_conditions else []
        coverages = prefetched(self.request, COVERAGE_KEY, "Coverage")
        unavailable = []
        if conditions is None:
            unavailable.append("active conditions (not prefetched)")
        return PatientData(conditions, coverages, unavailable)
