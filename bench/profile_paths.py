"""Where the out-of-scope and in-scope paths spend their time, in process (cProfile).

Calls the order-sign service through Flask's test client (no network; auth off; audit on, in a
temporary SQLite file, as in bench/throughput.py) ``--n`` times per path and prints the
functions with the most cumulative time. Usage: ``python bench/profile_paths.py [--n 500] [--top 25]``.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import pstats
import sys
import tempfile
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench.throughput import IN_SCOPE, OUT_OF_SCOPE, SERVICE_PATH  # noqa: E402
from cds_service import create_app  # noqa: E402


def bodies(source: Path, n: int) -> list[bytes]:
    data = json.loads(source.read_text(encoding="utf-8"))
    return [json.dumps({**data, "hookInstance": str(uuid.uuid4())}).encode() for _ in range(n)]


def profile(client, label: str, source: Path, n: int, top: int) -> None:
    for body in bodies(source, 20):  # warm-up
        client.post(SERVICE_PATH, data=body, content_type="application/json")
    calls = bodies(source, n)
    profiler = cProfile.Profile()
    profiler.enable()
    for body in calls:
        response = client.post(SERVICE_PATH, data=body, content_type="application/json")
    profiler.disable()
    assert response.status_code == 200
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    print(f"\n=== {label}: {n} calls, {stats.total_tt / n * 1000:.2f} ms per call under the profiler ===")
    stats.sort_stats("cumulative").print_stats(top)
    print("\n".join(line for line in out.getvalue().splitlines() if line.strip()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=500)
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="cds-profile-") as tmp:
        app = create_app({"AUTH_ENABLED": False, "DATABASE_URL": f"sqlite:///{tmp}/audit.sqlite3",
                          "SECRET_KEY": "bench-only", "LOG_LEVEL": "WARNING"})
        client = app.test_client()
        profile(client, "out of scope (oral etodolac)", OUT_OF_SCOPE, args.n, args.top)
        profile(client, "in scope (IV ketamine for depression, audit on)", IN_SCOPE, args.n, args.top)


if __name__ == "__main__":
    main()
