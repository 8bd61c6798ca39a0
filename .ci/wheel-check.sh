#!/usr/bin/env bash
# Issue 10: the wheel installs like a package. Build it, install it (with its dependencies) into a
# fresh venv, and evaluate a fixture from another directory; fail unless the expected card comes back.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${1:-.venv/bin/python}"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

"$PYTHON" -m pip wheel --quiet --no-deps --wheel-dir "$WORK/dist" .
python3 -m venv "$WORK/venv"
# Dependencies come from pip's cache / the configured indexes; the package itself only from the wheel.
"$WORK/venv/bin/pip" install --quiet "$WORK"/dist/*.whl
mkdir "$WORK/elsewhere"
cp fhir_fixtures/hook-requests/13-depression-ketamine-f33.json "$WORK/elsewhere/request.json"
(
  cd "$WORK/elsewhere"
  env -u CDS_CARDS_DIR "$WORK/venv/bin/cds-service" evaluate request.json > response.json
  "$WORK/venv/bin/python" - <<'PY'
import json
cards = json.load(open("response.json"))["cards"]
assert len(cards) == 1 and cards[0]["indicator"] == "warning", cards
assert "depress" in cards[0]["summary"].lower() or "psychiatric" in json.dumps(cards[0]).lower(), cards[0]["summary"]
print("wheel check: installed wheel answered with the expected warning card")
PY
)
