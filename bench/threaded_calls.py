"""CPU per hook call with several threads calling at once, in process: bare Flask against the service.

Each variant runs in a fresh interpreter: its WSGI app is called directly (no HTTP, no server) by
``--threads`` threads at once, ``--calls`` calls in all, after a warm-up; it prints wall and CPU
time per call. Several threads matter: costs that a single caller never sees (a lock that every
call takes around a system call, such as the log handler's or the metrics library's) show up only
when request threads contend, as under ``cds-service serve``. Variants, alternated ``--rounds``
times (medians printed):

* ``bare``: bench/bare_app.py (parse the JSON body, answer ``{"cards": []}``), etodolac body;
* ``out_of_scope``: the service (fast lane), oral etodolac, audit on (nothing to record);
* ``in_scope``: the service, IV ketamine for depression, a card, audit on (SQLite in a temp dir);
* ``in_scope_no_audit``: the same with ``AUDIT_ENABLED=false``.

Metrics run in prometheus-client's multiprocess mode, as under ``serve``; log lines go to a file.
Usage: ``python bench/threaded_calls.py [--calls 4000] [--threads 8] [--rounds 3]``.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REQUESTS = ROOT / "fhir_fixtures" / "hook-requests"
BODIES = {"bare": "26-etodolac-oral-sandbox-shape.json", "out_of_scope": "26-etodolac-oral-sandbox-shape.json",
          "in_scope": "13-depression-ketamine-f33.json", "in_scope_no_audit": "13-depression-ketamine-f33.json"}
PATH = "/cds-services/iv-anesthetics-order-sign"


def _environ(body: bytes) -> dict:
    return {"REQUEST_METHOD": "POST", "PATH_INFO": PATH, "SCRIPT_NAME": "", "QUERY_STRING": "",
            "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "8080", "SERVER_PROTOCOL": "HTTP/1.1",
            "REMOTE_ADDR": "127.0.0.1", "CONTENT_TYPE": "application/json", "CONTENT_LENGTH": str(len(body)),
            "HTTP_HOST": "127.0.0.1:8080", "wsgi.input": io.BytesIO(body), "wsgi.url_scheme": "http",
            "wsgi.errors": sys.stderr, "wsgi.multithread": True, "wsgi.multiprocess": True,
            "wsgi.run_once": False, "wsgi.version": (1, 0)}


def run_variant(variant: str, calls: int, threads: int) -> None:
    """In this (fresh) interpreter: time one variant, print one JSON line on stdout."""
    sys.path.insert(0, str(ROOT / "bench"))
    if variant == "bare":
        import bare_app

        app = bare_app.create_app()
    else:
        from cds_service import create_app

        app = create_app({"AUDIT_ENABLED": variant != "in_scope_no_audit"})
    body = (REQUESTS / BODIES[variant]).read_bytes()

    def status(value, headers, exc_info=None):
        if not value.startswith("200"):
            raise SystemExit(f"{variant}: {value}")

    def call() -> bytes:
        return b"".join(app(_environ(body), status))

    for _ in range(200):
        answer = call()
    if (b'"cards":[]' in answer) != (variant in ("bare", "out_of_scope")):
        raise SystemExit(f"{variant}: unexpected answer {answer[:120]!r}")

    def worker() -> None:
        for _ in range(calls // threads):
            call()

    workers = [threading.Thread(target=worker) for _ in range(threads)]
    wall, cpu = time.perf_counter(), time.process_time()
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join()
    done = calls // threads * threads
    print(json.dumps({"variant": variant, "wall_us": (time.perf_counter() - wall) / done * 1e6,
                      "cpu_us": (time.process_time() - cpu) / done * 1e6}), file=sys.__stdout__)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=4000)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--variant", help=argparse.SUPPRESS)  # internal: run one variant here
    args = parser.parse_args()
    if args.variant:
        run_variant(args.variant, args.calls, args.threads)
        return
    results: dict[str, list[dict]] = {v: [] for v in BODIES}
    with tempfile.TemporaryDirectory(prefix="cds-threads-") as tmp:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CDS_")}
        env.update(CDS_AUTH_ENABLED="false", CDS_SECRET_KEY="bench-only",
                   CDS_DATABASE_URL=f"sqlite:///{Path(tmp) / 'audit.sqlite3'}", CDS_INSTANCE_PATH=tmp,
                   PROMETHEUS_MULTIPROC_DIR=tmp)
        for _ in range(args.rounds):
            for variant in BODIES:
                with open(Path(tmp) / "log.txt", "ab") as log:
                    out = subprocess.run([sys.executable, __file__, "--variant", variant, "--calls", str(args.calls),
                                          "--threads", str(args.threads)], env=env, cwd=ROOT, check=True,
                                         stdout=subprocess.PIPE, stderr=log, text=True, timeout=600).stdout
                results[variant].append(json.loads(out.strip().splitlines()[-1]))
    bare = statistics.median(r["cpu_us"] for r in results["bare"])
    print(f"\n{args.threads} threads, {args.calls} calls per variant, medians of {args.rounds} rounds\n")
    print("| | wall µs per call | CPU µs per call | CPU vs bare |")
    print("|---|---:|---:|---:|")
    for variant, rows in results.items():
        cpu = statistics.median(r["cpu_us"] for r in rows)
        print(f"| {variant} | {statistics.median(r['wall_us'] for r in rows):,.0f} | {cpu:,.0f} | {cpu / bare:.2f}x |")


if __name__ == "__main__":
    main()
