"""Instructions per hook call, in process, counted by valgrind (cachegrind), for A/B comparisons.

Wall-clock figures on a shared 2-core machine move by tens of per cent from one minute to the
next; an instruction count does not (the same code, input and environment give the same count
within a fraction of a per cent, whatever else the machine is doing). So a change to the request
path is compared here: the app (the service, or bench/bare_app.py) answers the same request
``--calls`` + 50 times in one process under ``valgrind --tool=cachegrind``, and again 50 times;
the difference divided by ``--calls`` is what one call costs, start-up excluded. Every thread of
the process counts (the audit writer's SQLite work included: the process waits for it to settle
before it ends).

    apt-get install -y valgrind
    .venv/bin/python bench/instructions.py                      # in scope, out of scope, bare
    .venv/bin/python bench/instructions.py --fixture 13-depression-ketamine-f33.json --app service

It counts instructions, not time: code that misses the caches more costs more time per
instruction, so a ratio of counts is not a ratio of requests per second (bench/throughput.py
measures that).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REQUESTS = ROOT / "fhir_fixtures" / "hook-requests"
IN_SCOPE, OUT_OF_SCOPE = "13-depression-ketamine-f33.json", "26-etodolac-oral-sandbox-shape.json"
WARM_UP = 50

# Run inside valgrind: build the app, answer the request ``calls`` times through WSGI, settle.
_CHILD = r"""
import io, os, sys
app_kind, body_path, calls = sys.argv[1], sys.argv[2], int(sys.argv[3])
if app_kind == "bare":
    import bare_app
    app = bare_app.create_app()
else:
    from cds_service import create_app
    app = create_app({"AUDIT_ENABLED": True})
body = open(body_path, "rb").read()
def environ():
    return {"REQUEST_METHOD": "POST", "PATH_INFO": "/cds-services/iv-anesthetics-order-sign",
            "SCRIPT_NAME": "", "QUERY_STRING": "", "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "8080",
            "SERVER_PROTOCOL": "HTTP/1.1", "REMOTE_ADDR": "127.0.0.1", "CONTENT_TYPE": "application/json",
            "CONTENT_LENGTH": str(len(body)), "HTTP_HOST": "127.0.0.1:8080", "wsgi.input": io.BytesIO(body),
            "wsgi.url_scheme": "http", "wsgi.errors": sys.stderr, "wsgi.multithread": True,
            "wsgi.multiprocess": False, "wsgi.run_once": False, "wsgi.version": (1, 0)}
def start_response(status, headers, exc_info=None):
    if not status.startswith("200"):
        raise SystemExit(f"unexpected answer {status}")
for _ in range(calls):
    b"".join(app(environ(), start_response))
if app_kind != "bare":
    assert app.extensions["cds"].database.writer.settle(30)
"""


def count(app_kind: str, fixture: Path, calls: int, storage: Path) -> int:
    env = {key: value for key, value in os.environ.items() if not key.startswith("CDS_")}
    env.update({"CDS_AUTH_ENABLED": "false", "CDS_SECRET_KEY": "bench-only-secret",
                "CDS_DATABASE_URL": f"sqlite:///{storage / f'audit-{calls}.sqlite3'}",
                "CDS_INSTANCE_PATH": str(storage),  # its spool and journal files too, not the repo's instance/
                "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "bench")])})
    result = subprocess.run(
        ["valgrind", "--tool=cachegrind", "--cache-sim=no", "--cachegrind-out-file=/dev/null",
         sys.executable, "-c", _CHILD, app_kind, str(fixture), str(calls)],
        env=env, cwd=ROOT, capture_output=True, text=True, check=True)
    found = re.search(r"I\s+refs:\s+([\d,]+)", result.stderr)
    if found is None:
        raise SystemExit(f"no instruction count in valgrind's output:\n{result.stderr[-2000:]}")
    return int(found.group(1).replace(",", ""))


def per_call(app_kind: str, fixture: Path, calls: int) -> float:
    with tempfile.TemporaryDirectory(prefix="cds-instructions-") as tmp:
        return (count(app_kind, fixture, WARM_UP + calls, Path(tmp))
                - count(app_kind, fixture, WARM_UP, Path(tmp))) / calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=200, help="calls counted, after 50 (default 200)")
    parser.add_argument("--fixture", help="one request of fhir_fixtures/hook-requests (default: the table)")
    parser.add_argument("--app", choices=("service", "bare"), default="service")
    args = parser.parse_args()
    if args.calls < 1:
        parser.error("--calls must be at least 1")
    if not shutil.which("valgrind"):
        raise SystemExit("valgrind is not installed (apt-get install -y valgrind)")
    runs = ([(args.app, args.fixture)] if args.fixture else
            [("bare", OUT_OF_SCOPE), ("service", OUT_OF_SCOPE), ("service", IN_SCOPE)])
    bare = None
    print(f"instructions per call, in process, {args.calls} calls after {WARM_UP} (cachegrind), audit on")
    for app_kind, name in runs:
        value = per_call(app_kind, REQUESTS / name, args.calls)
        bare = value if app_kind == "bare" else bare
        scale = f"  ({value / bare:.2f}x bare Flask)" if bare and app_kind != "bare" else ""
        print(f"{app_kind:8s} {name:42s} {value:12,.0f}{scale}")


if __name__ == "__main__":
    main()
