"""Prometheus metrics and the ``GET /metrics`` endpoint (docs/deployment.md, "Metrics").

Nothing imported by ``import cds_service`` imports this module at import time: with several
worker processes prometheus-client must see ``PROMETHEUS_MULTIPROC_DIR`` before it is first
imported (``cds-service serve`` sets it up, see :func:`cds_service.cli.prepare_multiprocess_dir`). Modules at
the edges (auth, FHIR client, audit, feedback) import it where they count.

Every label value is from a small closed set chosen by the service (service ids, policy and
family ids from ``cards/``, fixed outcome words); nothing from a request becomes a label.
"""

from __future__ import annotations

import glob
import hmac
import ipaddress
import os
import struct
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress

from flask import Blueprint, Response, current_app, request
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram, multiprocess, values
from prometheus_client.exposition import choose_encoder

from .background import BatchWorker
from .errors import ApiError

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
# prometheus-client chose its value storage when it was first imported: mmapped files shared by all
# processes if PROMETHEUS_MULTIPROC_DIR was set then, in-process values otherwise. Scrapes follow that
# choice, not the environment of the moment (which something may have changed since).
MULTIPROCESS = values.ValueClass is not values.MutexValue
_MULTIPROC_DIR = os.environ.get(MULTIPROC_ENV) if MULTIPROCESS else None

HOOK_LATENCY = Histogram(
    "cds_hook_latency_seconds",
    "Time to answer a hook call (successful answers, audit write included), by service and path: "
    "out_of_scope = answered from the raw-body scan, in_scope = parsed, screened and decided.",
    ["service", "path"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
CARDS = Counter("cds_cards_total", "Cards returned, by policy, indication family and indicator.",
                ["policy", "family", "indicator"])
FHIR_FETCHES = Counter("cds_fhir_fetches_total", "HTTP requests to the EHR's FHIR server, by outcome.",
                       ["outcome"])
AUTH_FAILURES = Counter("cds_auth_failures_total", "Refused CDS client tokens, by reason.", ["reason"])
AUDIT_WRITE_FAILURES = Counter("cds_audit_write_failures_total", "Hook-call audit records that could not be written.")
FEEDBACK_WRITE_FAILURES = Counter("cds_feedback_write_failures_total", "Feedback requests whose storage failed.")

_LATENCY_CHILDREN: dict[tuple[str, str], Histogram] = {}
_CARD_CHILDREN: dict[tuple[str, str, str], Counter] = {}  # labels() looked up once per label set


# -- per hook call: applied by one thread per process ------------------------------------------
# Every value update takes prometheus-client's one lock (and, with several workers, writes an
# mmapped file); request threads doing that at once queue on the lock (in process, 8 threads:
# +40-120 us per call). So a hook call only queues what it counts, and one thread per process
# applies the queue in order; ``flush()`` (before every scrape) waits until it has caught up.
# What is queued when a process is killed outright is not counted; the rare failure counters
# below are updated at once.


def observe_hook(service: str, fast_path: bool, seconds: float) -> None:
    _updates.put((_observe_hook, (service, "out_of_scope" if fast_path else "in_scope", seconds)))


def count_card(policy: str, family: str, indicator: str) -> None:
    _updates.put((_count_card, (policy, family, indicator)))


def _observe_hook(service: str, path: str, seconds: float) -> None:
    child = _LATENCY_CHILDREN.get((service, path))
    if child is None:
        child = _LATENCY_CHILDREN.setdefault((service, path), HOOK_LATENCY.labels(service, path))
    child.observe(seconds)


def _count_card(policy: str, family: str, indicator: str) -> None:
    child = _CARD_CHILDREN.get((policy, family, indicator))
    if child is None:
        child = _CARD_CHILDREN.setdefault((policy, family, indicator), CARDS.labels(policy, family, indicator))
    child.inc()


def _apply(updates: list[tuple[Callable[..., None], tuple]]) -> None:
    for update, args in updates:
        with suppress(Exception):  # a metric must never stop the others being counted
            update(*args)


_updates = BatchWorker("cds-metrics", _apply)


def flush(timeout: float = 2.0) -> None:
    """Return once every update queued so far in this process has been applied."""
    _updates.drain(timeout)


def count_fhir_fetch(outcome: str) -> None:
    """``outcome``: ok | http_error | timeout | connect_error | request_error | too_large |
    invalid_response | operation_outcome | deadline_passed."""
    FHIR_FETCHES.labels(outcome).inc()


def count_auth_failure(reason: str) -> None:
    """``reason`` as the verifier words it; details after a colon (a kid, an alg) are dropped."""
    AUTH_FAILURES.labels(reason.split(":", 1)[0].strip()[:40]).inc()


def count_audit_write_failure() -> None:
    AUDIT_WRITE_FAILURES.inc()


@contextmanager
def counting_feedback_failures() -> Iterator[None]:
    try:
        yield
    except Exception:
        FEEDBACK_WRITE_FAILURES.inc()
        raise


class _SettledFilesCollector(multiprocess.MultiProcessCollector):
    """prometheus-client's multiprocess collector, reading only files that are past creation.

    A worker's value file exists at 0 bytes for a moment after it is created and before it is
    sized (prometheus/client_python#1199, open), and a scrape that reads it then fails whole (a
    500 for every metric). Metrics are counted a few milliseconds after the call (the queue
    above), so a scrape can meet a worker's first update: empty files are skipped, and a scrape
    that still meets one mid-creation is read again."""

    def collect(self):  # type: ignore[override]
        for _ in range(2):
            try:
                return list(self.merge(self._settled_files(), accumulate=True))
            except (struct.error, RuntimeError):  # a file being created or grown under us
                time.sleep(0.02)
        return list(self.merge(self._settled_files(), accumulate=True))  # a third failure is raised

    def _settled_files(self) -> list[str]:
        return [f for f in glob.glob(os.path.join(self._path, "*.db")) if os.path.getsize(f) > 0]


bp = Blueprint("metrics", __name__)


def _allowed() -> bool:
    token = str(current_app.config["METRICS_BEARER_TOKEN"] or "")
    if token:
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode()):
            return True
    try:
        address = ipaddress.ip_address(request.remote_addr or "")
    except ValueError:
        return False
    return any(address in ipaddress.ip_network(net, strict=False)
               for net in current_app.config["METRICS_ALLOW_FROM"])


@bp.get("/metrics")
def metrics() -> Response:
    if not current_app.config["METRICS_ENABLED"]:
        raise ApiError.single(404, "Metrics are disabled on this service (METRICS_ENABLED).")
    if not _allowed():
        raise ApiError.single(403, "Metrics are available only to allowlisted addresses or with the "
                                   "metrics bearer token.")
    flush()  # this process's hook-call updates (other workers' are at most 50 ms behind)
    registry = REGISTRY
    if MULTIPROCESS:
        registry = CollectorRegistry()
        _SettledFilesCollector(registry, path=_MULTIPROC_DIR)
    encoder, content_type = choose_encoder(request.headers.get("Accept", ""))  # text or OpenMetrics
    return Response(encoder(registry), content_type=content_type, headers={"Cache-Control": "no-store"})
