"""Cold start and memory of ``cds-service serve``.

* cold start: wall time from starting ``cds-service serve`` to the first in-scope card
  (IV ketamine for depression), polling every 10 ms; also ``import cds_service`` alone (the wall
  time of ``python -c``, interpreter start and exit included, and in process) and
  ``create_app()`` after it, in process, on a database at head.
* memory: RSS of every process of the server (master and workers) after 200 in-scope calls.

Auth off, audit on (default SQLite engine in a temporary directory); loopback only. The load
average is printed before and after: on a shared machine it moves the figures more than most changes.
Usage: ``python bench/coldstart.py [--runs 3] [--workers 2] [--calls 200]``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench.throughput import IN_SCOPE, SERVICE_PATH, server_env  # noqa: E402
from tests.servers import free_port, running_server, stop_process_group  # noqa: E402


def time_to_first_card(env: dict[str, str], log: Path) -> float:
    port = free_port()
    url = f"http://127.0.0.1:{port}{SERVICE_PATH}"
    body = IN_SCOPE.read_bytes()
    with log.open("ab") as out:
        started = time.perf_counter()
        process = subprocess.Popen(
            [sys.executable, "-m", "cds_service.cli", "serve", "--host", "127.0.0.1", "--port", str(port)],
            env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True)
    try:
        while time.perf_counter() - started < 60:
            if process.poll() is not None:
                raise SystemExit(f"serve exited with {process.returncode}; see {log}")
            try:
                response = requests.post(url, data=body, headers={"Content-Type": "application/json"}, timeout=5)
                if response.status_code == 200 and response.json().get("cards"):
                    return time.perf_counter() - started
            except requests.RequestException:
                pass
            time.sleep(0.01)
        raise SystemExit("no card within 60 s")
    finally:
        stop_process_group(process)


def import_time(env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import cds_service"], env=env, cwd=ROOT, check=True)
    return time.perf_counter() - started


IN_PROCESS = """
import json, time
started = time.perf_counter()
import cds_service
imported = time.perf_counter()
cds_service.create_app()
print(json.dumps([imported - started, time.perf_counter() - imported]))
"""


def in_process_times(env: dict[str, str]) -> tuple[float, float]:
    """``import cds_service`` and then ``create_app()``, timed inside one fresh interpreter."""
    out = subprocess.run([sys.executable, "-c", IN_PROCESS], env=env, cwd=ROOT, check=True,
                         capture_output=True, text=True).stdout
    imported, built = json.loads(out.strip().splitlines()[-1])
    return imported, built


def _times(values: list[float]) -> str:
    return f"median {statistics.median(values):.2f} s ({', '.join(f'{t:.2f}' for t in values)})"


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def group_pids(pgid: int) -> list[int]:
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:  # field 5 of stat: process group
            pids.append(int(stat.parent.name))
    return sorted(pids)


def memory_after_calls(env: dict[str, str], log: Path, workers: int, calls: int) -> dict[int, float]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    argv = [sys.executable, "-m", "cds_service.cli", "serve", "--host", "127.0.0.1", "--port", str(port),
            "--workers", str(workers)]
    body = IN_SCOPE.read_bytes()

    def call(_: int) -> None:
        response = requests.post(base + SERVICE_PATH, data=body, headers={"Content-Type": "application/json"},
                                 timeout=30)
        assert response.status_code == 200 and response.json()["cards"], response.text[:200]

    with running_server(argv, base + "/readyz", log, env=env, cwd=ROOT) as process:
        with ThreadPoolExecutor(max_workers=4) as pool:
            list(pool.map(call, range(calls)))
        return {pid: rss_mib(pid) for pid in group_pids(process.pid)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--calls", type=int, default=200)
    args = parser.parse_args()
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="cds-coldstart-") as tmp:
        env = server_env(Path(tmp))
        imports = [import_time(env) for _ in range(args.runs)]
        starts = [time_to_first_card(env, Path(tmp) / "serve.log") for _ in range(args.runs)]
        in_process = [in_process_times(env) for _ in range(args.runs)]  # the database is at head by now
        memory = memory_after_calls(env, Path(tmp) / "memory.log", args.workers, args.calls)
    load_after = os.getloadavg()
    print(f"load average before {load_before[0]:.2f}, after {load_after[0]:.2f} (1 min); "
          f"{os.cpu_count()} CPUs")
    if env.get("PYTHONDONTWRITEBYTECODE"):
        print("PYTHONDONTWRITEBYTECODE is set: every start compiles the service's own modules (no .pyc)")
    print(f"import cds_service (python -c, wall): {_times(imports)}")
    print(f"import cds_service (in process): {_times([i for i, _ in in_process])}")
    print(f"create_app() after it (in process, database at head): {_times([b for _, b in in_process])}")
    print(f"serve -> first in-scope card: {_times(starts)}")
    print(f"RSS after {args.calls} in-scope calls, serve --workers {args.workers} (pid: MiB; the lowest pid "
          "is the master):")
    for pid, mib in memory.items():
        print(f"  {pid}: {mib:.1f}")


if __name__ == "__main__":
    main()
