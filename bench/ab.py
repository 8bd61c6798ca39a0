"""Two variants of a served app, A and B, alternated under the same wrk load: is B faster?

On a shared 2-core machine a served run moves by tens of per cent from one minute to the next,
so two variants are compared only side by side: both servers run for the whole comparison
(``cds-service serve``, the same workers and threads unless told otherwise), and the wrk runs
alternate A, B, B, A, A, B, ... so a change of load hits both. It prints each variant's
requests/s and p99 per round, and the median of the per-round ratios B/A. Before timing, each
variant answers the fixture once: an error status stops the run, and two builds of the service
must give the same cards (indicator and summary).

A variant is a source tree (``--a-tree``: a ``git worktree`` of another commit, say; default this
repository), settings for its server (``--a-env CDS_AUDIT_ENABLED=false``), an app
(``--a-app bare_app:create_app``) and a thread count. Each server imports ``cds_service`` from its
own tree (put first on PYTHONPATH) and runs in its own temporary directory (its SQLite database,
spool and journal files). Auth is off, as in bench/throughput.py.

    .venv/bin/python bench/ab.py --b-tree ../other-worktree            # in scope, 5 rounds of 4 s
    .venv/bin/python bench/ab.py --b-env CDS_LOG_LEVEL=WARNING --fixture 26-etodolac-oral-sandbox-shape.json
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import statistics
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench.throughput import REQUESTS, SERVICE_PATH, Result, body_file, run_wrk, serve_argv, server_env  # noqa: E402
from tests.servers import free_port, running_server  # noqa: E402


@dataclass
class Variant:
    name: str
    tree: Path
    env: dict[str, str]
    app: str | None
    threads: int
    results: list[Result] = field(default_factory=list)
    url: str = ""
    answer: list[tuple[str, str]] = field(default_factory=list)


def settings(pairs: list[str]) -> dict[str, str]:
    env = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise SystemExit(f"a setting is KEY=VALUE, not {pair!r}")
        env[key] = value
    return env


def variant(args: argparse.Namespace, name: str) -> Variant:
    tree = Path(getattr(args, f"{name}_tree")).resolve()
    if not (tree / "cds_service" / "__init__.py").is_file():
        raise SystemExit(f"{tree} is not a source tree of this service")
    return Variant(name.upper(), tree, settings(getattr(args, f"{name}_env")), getattr(args, f"{name}_app"),
                   getattr(args, f"{name}_threads") or args.threads)


def start(stack: contextlib.ExitStack, v: Variant, args: argparse.Namespace, storage: Path) -> None:
    storage.mkdir()
    port = free_port()
    env = {**server_env(storage), **v.env}
    env["PYTHONPATH"] = os.pathsep.join([str(v.tree), str(v.tree / "bench"), env.get("PYTHONPATH", "")])
    serve = argparse.Namespace(workers=args.workers, threads=v.threads)
    stack.enter_context(running_server(serve_argv(serve, port, v.app), f"http://127.0.0.1:{port}/healthz",
                                       storage / "server.log", env=env, cwd=v.tree))
    v.url = f"http://127.0.0.1:{port}{SERVICE_PATH}"


def check_answer(v: Variant, fixture: Path) -> None:
    """Refuse to time a variant that answers the fixture with an error; keep its cards' summaries."""
    reply = requests.post(v.url, data=fixture.read_bytes(), headers={"Content-Type": "application/json"},
                          timeout=10)
    if reply.status_code != 200:
        raise SystemExit(f"{v.name} answered {reply.status_code}: {reply.text[:300]}")
    cards = reply.json().get("cards")
    if not isinstance(cards, list):
        raise SystemExit(f"{v.name} answered without a cards array: {reply.text[:300]}")
    v.answer = [(str(c.get("indicator")), str(c.get("summary"))) for c in cards if isinstance(c, dict)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    for name in ("a", "b"):
        parser.add_argument(f"--{name}-tree", default=str(ROOT), help="source tree (default: this one)")
        parser.add_argument(f"--{name}-env", action="append", default=[], metavar="KEY=VALUE",
                            help="a setting of this variant's server (repeatable)")
        parser.add_argument(f"--{name}-app", default=None, help="serve --app (default: the service)")
        parser.add_argument(f"--{name}-threads", type=int, default=0, help="threads per worker")
    parser.add_argument("--fixture", default="13-depression-ketamine-f33.json",
                        help="a request of fhir_fixtures/hook-requests (default: IV ketamine for depression)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--duration", type=int, default=4, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--wrk-threads", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=0, help="threads per worker for both (default: serve's)")
    args = parser.parse_args()
    if args.rounds < 1 or args.duration < 1:
        raise SystemExit("--rounds and --duration must be at least 1")
    if not shutil.which("wrk"):
        raise SystemExit("wrk is not installed (apt-get install -y wrk)")
    fixture = REQUESTS / args.fixture
    if not fixture.is_file():
        raise SystemExit(f"no such request: {fixture}")
    a, b = variant(args, "a"), variant(args, "b")

    with tempfile.TemporaryDirectory(prefix="cds-ab-") as tmp, contextlib.ExitStack() as stack:
        storage = Path(tmp)
        for v in (a, b):
            start(stack, v, args, storage / v.name)
        for v in (a, b):
            check_answer(v, fixture)
        if a.answer != b.answer and not (a.app or b.app):  # two builds of the service must agree
            raise SystemExit(f"A and B answer differently: {a.answer} / {b.answer}")
        body = body_file(fixture, storage)
        warm = argparse.Namespace(**{**vars(args), "duration": 2})
        for v in (a, b):
            run_wrk(v.url, body, warm, "warm-up")
        for number in range(args.rounds):
            for v in ((a, b) if number % 2 == 0 else (b, a)):
                v.results.append(run_wrk(v.url, body, args, v.name))

    print(f"\n{fixture.name}; wrk -t{args.wrk_threads} -c{args.connections} -d{args.duration}s; "
          f"serve --workers {args.workers}; {args.rounds} rounds, alternated\n")
    for v in (a, b):
        described = [str(v.tree)] + [f"{k}={val}" for k, val in v.env.items()]
        described += [f"--app {v.app}"] * bool(v.app) + [f"--threads {v.threads}"] * bool(v.threads)
        print(f"{v.name}: {' '.join(described)}; {len(v.answer)} card(s)")
        print(f"   requests/s {', '.join(f'{r.rps:,.0f}' for r in v.results)} "
              f"(median {statistics.median(r.rps for r in v.results):,.0f}); "
              f"p99 median {statistics.median(r.p99_ms for r in v.results):.1f} ms; "
              f"errors {sum(r.errors for r in v.results)}")
    ratios = [rb.rps / ra.rps for ra, rb in zip(a.results, b.results, strict=True)]
    print(f"B/A requests/s per round: {', '.join(f'{x:.2f}' for x in ratios)}; median {statistics.median(ratios):.2f}")


if __name__ == "__main__":
    main()
