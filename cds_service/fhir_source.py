"""Prefetch first, then the EHR's FHIR server for whatever the request lacks.

Fetched: a referenced Medication or Condition (``fetch_references``), the active problem list
and the active Coverage with its payor Organization (``patient_data``). Independent fetches run
in parallel on the shared pool; everything stops at the hook call's deadline, and whatever could
not be had is named in ``PatientData.unavailable`` / ``coverage_unavailable`` for the card.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import Future, wait
from dataclasses import dataclass, field
from typing import Any

from .fhir_client import FetchError, FhirClient, FhirSettings, SearchResult, query_permission, shared_executor
from .fhir_shape import normalize_resource
from .gather import (
    CONDITIONS_KEY,
    COVERAGE_KEY,
    DataSource,
    PatientData,
    prefetch_next_link,
    prefetch_unreadable_entries,
    prefetched,
)
from .hook_request import HookRequest
from .resource_index import Resource, ResourceIndex, dicts_in

log = logging.getLogger(__name__)


@dataclass
class _CoverageResult:
    coverages: list[Resource]
    organizations: dict[str, Resource] = field(default_factory=dict)  # payor reference -> Organization
    notes: list[str] = field(default_factory=list)  # what could not be retrieved


class FhirDataSource(DataSource):
    """:class:`DataSource` that reads and searches ``fhirServer`` when prefetch falls short."""

    def __init__(self, request: HookRequest, index: ResourceIndex,
                 settings: FhirSettings | None = None, session: Any = None) -> None:
        super().__init__(request, index)
        self.settings = settings or FhirSettings()
        self.failures: list[str] = []  # fetches that failed, in words (never the token)
        self.refused = query_permission(request.fhir_server, bool(request.access_token),
                                        self.settings.allow_unauthenticated)
        self.client: FhirClient | None = None
        if self.refused is None and request.fhir_server:
            self.client = FhirClient(request.fhir_server, request.access_token, self.settings,
                                     time.monotonic() + self.settings.total_deadline, session)
        self._coverage: Future[_CoverageResult] | None = None

    # -- running fetches within the deadline ------------------------------------------------

    def _submit(self, task: Callable[[], Any]) -> Future:
        return shared_executor(self.settings.max_workers).submit(task)

    def _collect(self, futures: dict[str, Future]) -> dict[str, Any]:
        """Each future's result, or a FetchError for a failure or for the deadline passing."""
        assert self.client is not None
        done, _ = wait(futures.values(), timeout=max(0.0, self.client.remaining()))
        results: dict[str, Any] = {}
        for what, future in futures.items():
            if future not in done:
                future.cancel()
                results[what] = FetchError(f"{what}: no answer within the FHIR deadline "
                                           f"({self.settings.total_deadline:g} s)")
                continue
            try:
                results[what] = future.result()
            except FetchError as exc:
                results[what] = exc
            except Exception as exc:  # a bug must not turn into a 500 for the EHR
                log.exception("unexpected error fetching %s", what)
                results[what] = FetchError(f"{what}: unexpected error ({type(exc).__name__})")
        for result in results.values():
            if isinstance(result, FetchError):
                log.warning("FHIR data unavailable: %s", result)
        return results

    def _note_refusal(self) -> None:
        if self.request.fhir_server and self.refused:
            note = f"FHIR server not queried: {self.refused}"
            if note not in self.failures:
                # For the log and audit only: cards say what is missing in clinical words.
                log.info("FHIR data unavailable: %s", note)
                self.failures.append(note)

    # -- references (Medication, Condition) ---------------------------------------------------

    def fetch_references(self, references: list[str]) -> None:
        if self.client is None:
            self._note_refusal()
            return
        client = self.client
        futures: dict[str, Future] = {}
        for reference in dict.fromkeys(references):
            target = client.relative(reference)
            if target is None:
                self.failures.append(f"{reference}: not a reference that can be read from fhirServer")
                continue
            futures[reference] = self._submit(lambda t=target: client.read(t))
        for reference, result in self._collect(futures).items():
            if isinstance(result, FetchError):
                self.failures.append(str(result))
            else:  # read as the request's own resources are (fhir_shape: single objects as arrays)
                self.index.add(normalize_resource(result), reference)

    # -- coverage and payor ------------------------------------------------------------------

    def _unresolved_payors(self, coverages: list[Resource]) -> list[tuple[str, Resource]]:
        pending = []
        for coverage in coverages:
            for payor in dicts_in(coverage.get("payor")):
                ref = payor.get("reference") if isinstance(payor, dict) else None
                if isinstance(ref, str) and self.index.resolve(ref, coverage) is None:
                    pending.append((ref, coverage))
        return pending

    def _coverage_task(self, prefetched_coverage: list[Resource] | None) -> _CoverageResult:
        assert self.client is not None
        client = self.client
        if prefetched_coverage is None or (prefetch_unreadable_entries(self.request, COVERAGE_KEY)
                                           and not prefetch_next_link(self.request, COVERAGE_KEY)):
            found = client.search("Coverage", {"patient": self.request.patient_id, "status": "active"})
        elif prefetch_next_link(self.request, COVERAGE_KEY):
            found = client.follow_pages(self.request.prefetch[COVERAGE_KEY], "Coverage")
        else:
            found = SearchResult(prefetched_coverage)
        result = _CoverageResult(found.resources, notes=[] if found.complete else [found.note])
        for ref, _coverage in self._unresolved_payors(found.resources):
            target = client.relative(ref)
            if target is None or ref in result.organizations:
                continue
            try:
                result.organizations[ref] = client.read(target)
            except FetchError as exc:
                result.notes.append(f"the coverage's payor ({exc})")
        return result

    def prepare_patient_data(self) -> None:
        """Start the Coverage → payor Organization chain now, overlapping the reason fetches."""
        if self.client is None or self._coverage is not None:
            return
        coverage = prefetched(self.request, COVERAGE_KEY, "Coverage")
        if (coverage is not None and not prefetch_next_link(self.request, COVERAGE_KEY)
                and not prefetch_unreadable_entries(self.request, COVERAGE_KEY)
                and not self._unresolved_payors(coverage)):
            return
        self._coverage = self._submit(lambda: self._coverage_task(coverage))

    # -- the problem list ----------------------------------------------------------------------

    def _conditions_task(self) -> SearchResult:
        assert self.client is not None
        if prefetch_next_link(self.request, CONDITIONS_KEY):
            return self.client.follow_pages(self.request.prefetch[CONDITIONS_KEY], "Condition")
        return self.client.search("Condition", {"patient": self.request.patient_id,
                                                "clinical-status": "active"})

    def patient_data(self, need_conditions: bool) -> PatientData:
        if self.client is None:
            self._note_refusal()
            data = super().patient_data(need_conditions)
            data.unavailable[:0] = self.failures
            if data.coverages is None and self.refused and self.request.fhir_server:
                data.coverage_unavailable.append(f"FHIR server not queried: {self.refused}")
            return data

        self.prepare_patient_data()
        futures: dict[str, Future] = {}
        if self._coverage is not None:
            futures["Coverage search"] = self._coverage
        conditions = prefetched(self.request, CONDITIONS_KEY, "Condition") if need_conditions else []
        if need_conditions and (conditions is None or prefetch_next_link(self.request, CONDITIONS_KEY)
                                or prefetch_unreadable_entries(self.request, CONDITIONS_KEY)):
            futures["Condition search"] = self._submit(self._conditions_task)
        results = self._collect(futures)

        data = PatientData(conditions=conditions,
                           coverages=prefetched(self.request, COVERAGE_KEY, "Coverage"),
                           unavailable=list(self.failures))
        found = results.get("Condition search")
        if isinstance(found, FetchError) and conditions:  # keep what the prefetch could give
            data.conditions_partial = True
            data.unavailable.append(f"the rest of the active conditions ({found})")
        elif isinstance(found, FetchError):
            data.conditions = None
            data.unavailable.append(f"active conditions ({found})")
        elif found is not None:
            data.conditions = [normalize_resource(r) for r in found.resources]
            if not found.complete:
                data.conditions_partial = True
                data.unavailable.append(f"part of the active conditions ({found.note})")

        coverage = results.get("Coverage search")
        if isinstance(coverage, FetchError):
            data.coverages = None
            data.coverage_unavailable.append(f"the patient's coverage ({coverage})")
        elif coverage is not None:
            data.coverages = [normalize_resource(r) for r in coverage.coverages]
            data.coverage_unavailable.extend(coverage.notes)
            for ref, organization in coverage.organizations.items():
                self.index.add(normalize_resource(organization), ref)
        return data
