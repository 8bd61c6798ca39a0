"""Start a real R4 FHIR server (sekmet-fhir, pinned in the test extras) on a free loopback port."""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import requests

from .servers import free_port, running_server


def sekmet_executable() -> str:
    beside_python = Path(sys.executable).with_name("sekmet")
    found = str(beside_python) if beside_python.exists() else shutil.which("sekmet")
    if not found:
        raise RuntimeError("sekmet is not installed: pip install -e '.[test]'")
    return found


@contextmanager
def sekmet(workdir: Path) -> Iterator[str]:
    """Yield the base URL of a fresh in-memory sekmet server; stop its process group afterwards."""
    port = free_port()
    base = f"http://127.0.0.1:{port}/fhir"
    env = {**os.environ, "SEKMET_DB": ":memory:", "SEKMET_BASE_URL": base}
    argv = [sekmet_executable(), "serve", "--host", "127.0.0.1", "--port", str(port)]
    with running_server(argv, f"{base}/metadata", workdir / "sekmet.log", env=env, cwd=workdir):
        yield base


def load_bundle(base: str, bundle: dict) -> None:
    """POST a transaction Bundle and fail loudly unless every entry succeeded."""
    response = requests.post(base, json=bundle, headers={"Content-Type": "application/fhir+json"},
                             timeout=30)
    response.raise_for_status()
    statuses = [e.get("response", {}).get("status", "") for e in response.json().get("entry", [])]
    bad = [s for s in statuses if not s.startswith(("200", "201"))]
    if bad or len(statuses) != len(bundle.get("entry", [])):
        raise RuntimeError(f"seeding failed: {bad or statuses}")
