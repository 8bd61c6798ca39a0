"""Print the detail length of every card the request fixtures produce (issue 8 §7 measurements).

    .venv/bin/python tools/card_lengths.py [fhir_fixtures/hook-requests]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from cds_service import create_app

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    folder = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "fhir_fixtures" / "hook-requests"
    manifest = json.loads((folder / "expected.json").read_text(encoding="utf-8"))["fixtures"]
    app = create_app({"TESTING": True, "AUTH_ENABLED": False, "AUDIT_ENABLED": False,
                      "DATABASE_URL": "sqlite://", "CARDS_DIR": str(ROOT / "cards")})
    client = app.test_client()
    lengths = []
    for case in manifest:
        body = (folder / case["file"]).read_bytes()
        response = client.post(f"/cds-services/{case['service']}", data=body, content_type="application/json")
        if response.status_code != 200:
            continue
        for card in response.get_json()["cards"]:
            lengths.append(len(card["detail"]))
            print(f"{len(card['detail']):5d}  {case['file']}")
    if lengths:
        print(f"cards={len(lengths)} min={min(lengths)} max={max(lengths)} mean={sum(lengths) / len(lengths):.0f}")


if __name__ == "__main__":
    main()
