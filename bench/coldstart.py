"""Cold start and memory of ``cds-service serve``, with bare Flask served the same way for scale.

* cold start: wall time from starting ``cds-service serve`` (one worker, as shipped) to the first
  in-scope card (IV ketamine for depression), polling every 10 ms:
  - once on a new database (the migrations run: a new host's first start);
  - ``--runs`` times on a database at head (a restarted host, a replaced worker), alternated with
    a start of bare Flask (bench/bare_app.py on ``python -m waitress``, to its first answer);
  - both without bytecode when ``PYTHONDONTWRITEBYTECODE`` is set (as on the development
    machines: every start compiles the service's own modules) and with it (a cache directory
    made by one start first, as ``pip install`` compiles an installed package's modules);
* also ``import cds_service`` alone and ``create_app()`` after it, in one fresh interpreter;
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


def time_to_first_answer(env: dict[str, str], log: Path, bare: bool = False) -> float:
    """Seconds from starting ``cds-service serve`` to the first in-scope card; with ``bare``,
    from starting bare Flask (bench/bare_app.py) on waitress's own command to its first answer."""
    port = free_port()
    url = f"http://127.0.0.1:{port}{SERVICE_PATH}"
    body = IN_SCOPE.read_bytes()
    argv = [sys.executable, "-m", "cds_service.cli", "serve", "--host", "127.0.0.1", "--port", str(port)]
    if bare:  # not through cds-service serve, which imports the service's modules
        argv = [sys.executable, "-m", "waitress", "--host=127.0.0.1", f"--port={port}", "--call",
                "bare_app:create_app"]
    with log.open("ab") as out:
        started = time.perf_counter()
        process = subprocess.Popen(argv, env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        while time.perf_counter() - started < 60:
            if process.poll() is not None:
                raise SystemExit(f"serve exited with {process.returncode}; see {log}")
            try:
                response = requests.post(url, data=body, headers={"Content-Type": "application/json"}, timeout=5)
                if response.status_code == 200 and (bare or response.json().get("cards")):
                    return time.perf_counter() - started
            except requests.RequestException:
                pass
            time.sleep(0.01)
        raise SystemExit("no answer within 60 s")
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


def _with_bytecode(env: dict[str, str], cache: Path) -> dict[str, str]:
    env = {k: v for k, v in env.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = str(cache)
    return env


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--calls", type=int, default=200)
    args = parser.parse_args()
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="cds-coldstart-") as tmp:
        env = server_env(Path(tmp))
        log = Path(tmp) / "serve.log"
        imports = [import_time(env) for _ in range(args.runs)]
        new_database = time_to_first_answer(env, log)  # creates the database: the migrations run
        modes = {"as run here": env}
        if env.get("PYTHONDONTWRITEBYTECODE"):
            modes = {"no bytecode (PYTHONDONTWRITEBYTECODE, as here)": env,
                     "with bytecode (as installed by pip)": _with_bytecode(env, Path(tmp) / "pycache")}
            time_to_first_answer(modes["with bytecode (as installed by pip)"], log)  # writes the bytecode
            time_to_first_answer(modes["with bytecode (as installed by pip)"], log, bare=True)
        starts: dict[str, dict[str, list[float]]] = {m: {"service": [], "bare": []} for m in modes}
        for _ in range(args.runs):
            for mode, mode_env in modes.items():
                starts[mode]["service"].append(time_to_first_answer(mode_env, log))
                starts[mode]["bare"].append(time_to_first_answer(mode_env, log, bare=True))
        in_process = [in_process_times(env) for _ in range(args.runs)]  # the database is at head by now
        memory = memory_after_calls(env, Path(tmp) / "memory.log", args.workers, args.calls)
    load_after = os.getloadavg()
    print(f"load average before {load_before[0]:.2f}, after {load_after[0]:.2f} (1 min); "
          f"{os.cpu_count()} CPUs")
    print(f"import cds_service (python -c, wall): {_times(imports)}")
    print(f"import cds_service (in process): {_times([i for i, _ in in_process])}")
    print(f"create_app() after it (in process, database at head): {_times([b for _, b in in_process])}")
    print(f"serve -> first in-scope card, new database (migrations run): {new_database:.2f} s")
    for mode, times in starts.items():
        service, bare = times["service"], times["bare"]
        print(f"serve -> first in-scope card, database at head, {mode}: {_times(service)}")
        print(f"  bare Flask on waitress, start to its first answer: {_times(bare)}; "
              f"service vs bare: {statistics.median(service) / statistics.median(bare):.2f}x")
    print(f"RSS after {args.calls} in-scope calls, serve --workers {args.workers} (pid: MiB; the lowest pid "
          "is the master):")
    for pid, mib in memory.items():
        print(f"  {pid}: {mib:.1f}")


if __name__ == "__main__":
    main()
