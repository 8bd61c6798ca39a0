"""The session-cookie secret: ``SECRET_KEY`` when configured, else one kept in the instance folder."""

from __future__ import annotations

import os
import secrets
import time
from pathlib import Path

SECRET_FILE = "secret_key"


def instance_secret(instance_path: str) -> str:
    """Read the persisted secret, creating it (mode 0600) on first use; safe for racing workers."""
    folder = Path(instance_path)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / SECRET_FILE
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    else:
        with os.fdopen(fd, "w", encoding="ascii") as handle:
            handle.write(secrets.token_hex(32))
    for _ in range(50):  # another process may be between create and write
        value = path.read_text(encoding="ascii").strip()
        if value:
            return value
        time.sleep(0.02)
    raise RuntimeError(f"{path} is empty; delete it to have a new secret generated")
