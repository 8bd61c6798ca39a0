"""Start a real R4 FHIR server (sekmet-fhir, pinned in the test extras) on a free loopback port."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import requests

STARTUP_LIMIT = 60.0  # seconds; it is ready in about 1 s on this machine


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def sekmet_executable() -> str:
    beside_python = Path(sys.executable).with_name("sekmet")
    found = str(beside_python) if beside_python.exists() else shutil.which("sekmet")
    if not found:
        raise RuntimeError("sekmet is not installed: pip install -e '.[test]'")
    return found


@contextmanager
def sekmet(workdir: Path) -> Iterator[str]:
    """Yield the base URL of a fresh in-memory sekmet server; stop it (by its pid) afterwards."""
    port = free_port()
    base = f"http://127.0.0.1:{port}/fhir"
    env = {**os.environ, "SEKMET_DB": ":memory:", "SEKMET_BASE_URL": base}
    log_path = workdir / "sekmet.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sekmet_executable(), "serve", "--host", "127.0.0.1", "--port", str(port)],
            cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT,
        )
    try:
        _wait_ready(base, process, log_path)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def _wait_ready(base: str, process: subprocess.Popen, log_path: Path) -> None:
    stop = time.monotonic() + STARTUP_LIMIT
    while time.monotonic() < stop:
        if process.poll() is not None:
            raise RuntimeError(f"sekmet exited with {process.returncode}:\n{log_path.read_text()[-2000:]}")
        try:
            if requests.get(f"{base}/metadata", timeout=1).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"sekmet not ready after {STARTUP_LIMIT} s:\n{log_path.read_text()[-2000:]}")


def load_bundle(base: str, bundle: dict) -> None:
    """POST a transaction Bundle and fail loudly unless every entry succeeded."""
    response = requests.post(base, json=bundle, headers={"Content-Type": "application/fhir+json"},
                             timeout=30)
    response.raise_for_status()
    statuses = [e.get("response", {}).get("status", "") for e in response.json().get("entry", [])]
    bad = [s for s in statuses if not s.startswith(("200", "201"))]
    if bad or len(statuses) != len(bundle.get("entry", [])):
        raise RuntimeError(f"seeding failed: {bad or statuses}")
