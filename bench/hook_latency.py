"""Hook latency with the data prefetched vs fetched from a local FHIR server, in one run.

Runs the WSGI app in-process through Flask's test client (no HTTP server in front of the
service, so the figures are the service's own time plus its FHIR round trips), starts
sekmet-fhir on a free 127.0.0.1 port, seeds it from fhir_fixtures/fhir-server/seed-bundle.json
and alternates the two variants of the same order-sign request:

* prefetched: Medication, reason Condition, active conditions, Coverage and payor Organization
  all in ``prefetch``; nothing is fetched.
* fetched: no prefetch; the service reads Medication and Condition, searches the active
  Conditions and Coverage and reads the payor Organization from ``fhirServer``.

Usage: python bench/hook_latency.py [--calls 300] [--warmup 20]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cds_service import create_app  # noqa: E402
from tests.sekmet_server import load_bundle, sekmet  # noqa: E402

SERVICE = "/cds-services/iv-anesthetics-order-sign"
FIXTURE = ROOT / "fhir_fixtures" / "hook-requests-fhir" / "02-server-medication-ptsd-kansas.json"
SEED = ROOT / "fhir_fixtures" / "fhir-server" / "seed-bundle.json"


def searchset(resources: list[dict]) -> dict:
    return {"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": r} for r in resources]}


def bodies(base: str) -> tuple[dict, dict]:
    fetched = json.loads(FIXTURE.read_text(encoding="utf-8").replace("{{FHIR_BASE}}", base))
    patient = fetched["context"]["patientId"]

    def get(path: str, **params: str) -> dict:
        return requests.get(f"{base}/{path}", params=params, timeout=5).json()

    conditions = get("Condition", patient=patient, **{"clinical-status": "active"})
    coverage = get("Coverage", patient=patient, status="active")
    organizations = [get(p["reference"]) for e in coverage.get("entry", [])
                     for p in e["resource"].get("payor", []) if "reference" in p]
    order = fetched["context"]["draftOrders"]["entry"][0]["resource"]
    prefetched = json.loads(json.dumps(fetched))
    prefetched["prefetch"] = {
        "medication": get(order["medicationReference"]["reference"]),
        "conditions": conditions,
        "coverage": searchset([e["resource"] for e in coverage.get("entry", [])] + organizations),
    }
    return prefetched, fetched


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=300, help="timed calls per variant")
    parser.add_argument("--warmup", type=int, default=20, help="untimed calls per variant first")
    args = parser.parse_args()

    app = create_app({"TESTING": True, "AUTH_ENABLED": False})
    client = app.test_client()
    with tempfile.TemporaryDirectory() as workdir, sekmet(Path(workdir)) as base:
        load_bundle(base, json.loads(SEED.read_text(encoding="utf-8")))
        variants = dict(zip(("prefetched", "fetched"), bodies(base), strict=True))
        cards = {}
        for name, body in variants.items():
            payload = client.post(SERVICE, json=body).get_json()
            cards[name] = [(c["extension"]["iv-anesthetics-cds"], "Could not be retrieved" in c["detail"])
                           for c in payload["cards"]]
        if cards["prefetched"] != cards["fetched"] or any(missing for _, missing in cards["fetched"]):
            print(f"variants disagree: {cards}", file=sys.stderr)
            return 1
        timings: dict[str, list[float]] = {name: [] for name in variants}
        for i in range(args.warmup + args.calls):
            for name, body in variants.items():  # alternate, so drift hits both alike
                started = time.perf_counter()
                response = client.post(SERVICE, json=body)
                elapsed = (time.perf_counter() - started) * 1000
                if response.status_code != 200:
                    print(f"{name}: HTTP {response.status_code}", file=sys.stderr)
                    return 1
                if i >= args.warmup:
                    timings[name].append(elapsed)

    print(f"hook latency, Flask test client in-process, sekmet-fhir on loopback, {args.calls} calls each")
    print(f"{'variant':<11} {'p50 ms':>8} {'p95 ms':>8} {'mean ms':>8} {'max ms':>8}")
    stats = {}
    for name, values in timings.items():
        stats[name] = (percentile(values, 50), percentile(values, 95))
        print(f"{name:<11} {stats[name][0]:8.2f} {stats[name][1]:8.2f} {statistics.fmean(values):8.2f} "
              f"{max(values):8.2f}")
    print(f"ratio fetched/prefetched: p50 {stats['fetched'][0] / stats['prefetched'][0]:.1f}x, "
          f"p95 {stats['fetched'][1] / stats['prefetched'][1]:.1f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
