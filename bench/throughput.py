"""Throughput of ``cds-service serve`` against a bare Flask app on the same server, with wrk.

Both are started by ``cds-service serve`` (the bare app through ``--app bare_app:create_app``),
so server, worker and thread counts are identical by construction; both listen on 127.0.0.1
only. wrk drives them with the same connections and duration and a fresh hookInstance per
request (bench/wrk_post.lua). Runs:

1. bare Flask, the etodolac body;
2. the service, an oral etodolac order (out of scope: the raw-body scan answers);
3. the service, IV ketamine for depression (a card; audit trail on, default SQLite storage).

Prints requests/s, p50 and p99 for each and the ratios to bare Flask. Authentication is off
(``CDS_AUTH_ENABLED=false``): wrk cannot sign a fresh JWT per request.

Usage: ``python bench/throughput.py [--duration 10] [--connections 32] [--workers 2]``
(needs ``wrk``: ``apt-get install -y wrk``).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from tests.servers import free_port, running_server  # noqa: E402

REQUESTS = ROOT / "fhir_fixtures" / "hook-requests"
OUT_OF_SCOPE = REQUESTS / "26-etodolac-oral-sandbox-shape.json"
IN_SCOPE = REQUESTS / "13-depression-ketamine-f33.json"
SERVICE_PATH = "/cds-services/iv-anesthetics-order-sign"
PLACEHOLDER = "00000000-0000-4000-8000-000000000000"


@dataclass
class Result:
    label: str
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int


def _ms(value: str, unit: str) -> float:
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}[unit]


def parse_wrk(label: str, output: str) -> Result:
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))
    pct = {p: _ms(v, u) for p, v, u in re.findall(r"^\s+(50|99)(?:\.000)?%\s+([\d.]+)(us|ms|s|m)\s*$",
                                                   output, re.MULTILINE)}
    errors = 0
    for pattern in (r"Non-2xx or 3xx responses:\s+(\d+)", r"Socket errors:.*?timeout (\d+)"):
        match = re.search(pattern, output)
        errors += int(match.group(1)) if match else 0
    return Result(label, rps, pct["50"], pct["99"], errors)


def body_file(source: Path, directory: Path) -> Path:
    """The request with the hookInstance replaced by the placeholder wrk_post.lua fills in."""
    data = json.loads(source.read_text(encoding="utf-8"))
    data["hookInstance"] = PLACEHOLDER
    target = directory / source.name
    target.write_text(json.dumps(data), encoding="utf-8")
    return target


def run_wrk(url: str, body: Path, args: argparse.Namespace, label: str) -> Result:
    command = ["wrk", f"-t{args.wrk_threads}", f"-c{args.connections}", f"-d{args.duration}s",
               "--latency", "--timeout", "10s", "-s", str(ROOT / "bench" / "wrk_post.lua"), url]
    output = subprocess.run(command, check=True, capture_output=True, text=True,
                            env={**os.environ, "BENCH_BODY_FILE": str(body)},
                            timeout=args.duration + 30).stdout
    return parse_wrk(label, output)


def serve_argv(args: argparse.Namespace, port: int, app: str | None = None) -> list[str]:
    argv = [sys.executable, "-m", "cds_service.cli", "serve", "--host", "127.0.0.1", "--port", str(port),
            "--workers", str(args.workers)]
    if args.threads:
        argv += ["--threads", str(args.threads)]
    return argv + (["--app", app] if app else [])


def server_env(storage: Path) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("CDS_")}
    env.update({
        "CDS_AUTH_ENABLED": "false",
        "CDS_DATABASE_URL": f"sqlite:///{storage / 'audit.sqlite3'}",  # the default engine, in a temp dir
        "CDS_INSTANCE_PATH": str(storage),  # the spool and journal files with it, not in the repo's instance/
        "CDS_SECRET_KEY": "bench-only-secret",
        "PYTHONPATH": os.pathsep.join([str(ROOT / "bench"), env.get("PYTHONPATH", "")]),
    })
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    return env


def check_answers(base: str) -> None:
    """Refuse to time a service that does not give the expected answers."""
    quiet = requests.post(base + SERVICE_PATH, data=OUT_OF_SCOPE.read_bytes(),
                          headers={"Content-Type": "application/json"}, timeout=10)
    card = requests.post(base + SERVICE_PATH, data=IN_SCOPE.read_bytes(),
                         headers={"Content-Type": "application/json"}, timeout=10)
    if quiet.json() != {"cards": []} or not card.json().get("cards"):
        raise SystemExit(f"unexpected answers: {quiet.text[:200]} / {card.text[:200]}")


def print_table(bare: Result, results: list[Result], args: argparse.Namespace,
                rounds: list[list[Result]] | None = None) -> None:
    print(f"\nwrk -t{args.wrk_threads} -c{args.connections} -d{args.duration}s, "
          f"`cds-service serve --workers {args.workers}` for all rows, loopback, auth off\n")
    print("| | requests/s | p50 | p99 | vs bare Flask (req/s) | p99 vs bare | errors |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for i, row in enumerate([bare, *results]):
        if rounds:  # the median of the ratios measured round by round
            rps_ratio = statistics.median(r[i].rps / r[0].rps for r in rounds)
            p99_ratio = statistics.median(r[i].p99_ms / r[0].p99_ms for r in rounds)
        else:
            rps_ratio, p99_ratio = row.rps / bare.rps, row.p99_ms / bare.p99_ms
        print(f"| {row.label} | {row.rps:,.0f} | {row.p50_ms:.1f} ms | {row.p99_ms:.1f} ms | "
              f"{rps_ratio:.2f} | {p99_ratio:.1f}x | {row.errors} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=10, help="seconds per run (default 10)")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--wrk-threads", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=0, help="threads per worker (default: serve's default)")
    parser.add_argument("--rounds", type=int, default=1,
                        help="alternate the three runs this many times and report medians (default 1)")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk is not installed (apt-get install -y wrk)")

    with tempfile.TemporaryDirectory(prefix="cds-bench-") as tmp:
        tmp_path = Path(tmp)
        out_of_scope, in_scope = body_file(OUT_OF_SCOPE, tmp_path), body_file(IN_SCOPE, tmp_path)
        env = server_env(tmp_path)
        bare_port, service_port = free_port(), free_port()
        bare_base, base = f"http://127.0.0.1:{bare_port}", f"http://127.0.0.1:{service_port}"
        bare_label = "bare Flask (parse JSON, `{\"cards\": []}`)"
        labels = [bare_label, "service, oral etodolac (out of scope)",
                  "service, IV ketamine for depression (card, audit on)"]
        rounds: list[list[Result]] = []
        # Both servers run for the whole benchmark (the one not being timed is idle); the three
        # runs alternate round by round, so a change of load on the machine hits all of them.
        with running_server(serve_argv(args, bare_port, "bare_app:create_app"), bare_base + "/healthz",
                            tmp_path / "bare.log", env=env, cwd=ROOT), \
                running_server(serve_argv(args, service_port), base + "/readyz", tmp_path / "service.log",
                               env=env, cwd=ROOT):
            check_answers(base)
            for number in range(args.rounds):
                results = [
                    run_wrk(bare_base + SERVICE_PATH, out_of_scope, args, labels[0]),
                    run_wrk(base + SERVICE_PATH, out_of_scope, args, labels[1]),
                    run_wrk(base + SERVICE_PATH, in_scope, args, labels[2]),
                ]
                rounds.append(results)
                if args.rounds > 1:
                    print(f"\nround {number + 1} of {args.rounds}")
                    print_table(results[0], results[1:], args)
            metrics = requests.get(base + "/metrics", timeout=10).text
        failures = re.search(r"^cds_audit_write_failures_total (\S+)", metrics, re.MULTILINE)
        medians = [median_result(label, [r[i] for r in rounds]) for i, label in enumerate(labels)]
        if args.rounds > 1:
            print(f"\nmedians of {args.rounds} rounds (ratios: median of the per-round ratios)")
        print_table(medians[0], medians[1:], args, rounds if args.rounds > 1 else None)
        print(f"\naudit write failures during the run: {failures.group(1) if failures else 'n/a'}")


def median_result(label: str, results: list[Result]) -> Result:
    return Result(label, statistics.median(r.rps for r in results), statistics.median(r.p50_ms for r in results),
                  statistics.median(r.p99_ms for r in results), sum(r.errors for r in results))


if __name__ == "__main__":
    main()
