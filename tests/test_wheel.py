"""The wheel installs like a package: it carries the code and the bundled knowledge (cards/),
and a missing or broken knowledge directory is one clear error, not a traceback."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from cds_service import KnowledgeError, create_app
from cds_service.cli import main

ROOT = Path(__file__).resolve().parent.parent
FIXTURE = ROOT / "fhir_fixtures" / "hook-requests" / "13-depression-ketamine-f33.json"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
                    "--wheel-dir", str(out), str(ROOT)], check=True, timeout=300,
                   env={**os.environ, "PIP_NO_CACHE_DIR": "1"})
    (built,) = out.glob("*.whl")
    return built


def test_wheel_holds_every_module_and_all_bundled_data(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {str(p.relative_to(ROOT)) for p in (ROOT / "cds_service").rglob("*")
                if p.is_file() and "__pycache__" not in p.parts}
    expected |= {"cds_service/cards/" + str(p.relative_to(ROOT / "cards")) for p in (ROOT / "cards").rglob("*.json")}
    missing = sorted(expected - names)
    assert not missing, f"not in the wheel (pyproject.toml packages / package-data): {missing}"
    assert {"cds_service/cards/indications.json", "cds_service/schemas/hook-request.schema.json",
            "cds_service/migrations/script.py.mako", "cds_service/trusted/sandbox-jwks.json"} <= names


def test_installed_wheel_evaluates_a_fixture_from_another_directory(wheel, tmp_path):
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index",
                    "--target", str(target), str(wheel)], check=True, timeout=300)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shutil.copy(FIXTURE, elsewhere / FIXTURE.name)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CDS_")}
    env["PYTHONPATH"] = str(target)  # the installed copy shadows the editable checkout
    located = subprocess.run([sys.executable, "-c", "import cds_service, cds_service.config as c;"
                              "print(cds_service.__file__); print(c.DEFAULTS['CARDS_DIR'])"],
                             cwd=elsewhere, env=env, capture_output=True, text=True, check=True)
    assert all(line.startswith(str(target)) for line in located.stdout.splitlines()), located.stdout
    result = subprocess.run([str(target / "bin" / "cds-service"), "evaluate", FIXTURE.name],
                            cwd=elsewhere, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    cards = json.loads(result.stdout)["cards"]
    assert len(cards) == 1 and cards[0]["indicator"] == "warning"


def test_cards_dir_overrides_the_bundled_knowledge(tmp_path):
    cards = shutil.copytree(ROOT / "cards", tmp_path / "cards")
    (cards / "policies" / "bcbsks-iv-anesthetics.json").unlink()
    app = create_app({"CARDS_DIR": str(cards), "AUTH_ENABLED": False, "AUDIT_ENABLED": False})
    assert sorted(app.extensions["cds"].knowledge.policies) == ["bcbsmn-ii-271"]


def test_missing_knowledge_directory_is_a_knowledge_error(tmp_path):
    with pytest.raises(KnowledgeError, match="does not exist"):
        create_app({"CARDS_DIR": str(tmp_path / "nowhere"), "AUDIT_ENABLED": False})


def test_missing_knowledge_file_names_the_file(tmp_path):
    cards = shutil.copytree(ROOT / "cards", tmp_path / "cards")
    (cards / "medications.json").unlink()
    with pytest.raises(KnowledgeError, match=r"incomplete: .*medications\.json is missing"):
        create_app({"CARDS_DIR": str(cards), "AUDIT_ENABLED": False})


def test_invalid_json_in_knowledge_is_a_knowledge_error(tmp_path):
    cards = shutil.copytree(ROOT / "cards", tmp_path / "cards")
    (cards / "indications.json").write_text("{ not json", encoding="utf-8")
    with pytest.raises(KnowledgeError, match="not valid JSON"):
        create_app({"CARDS_DIR": str(cards), "AUDIT_ENABLED": False})


def test_knowledge_failing_its_schema_is_a_knowledge_error(tmp_path):
    cards = shutil.copytree(ROOT / "cards", tmp_path / "cards")
    (cards / "indications.json").write_text(json.dumps({"families": "none"}), encoding="utf-8")
    with pytest.raises(KnowledgeError, match="invalid"):
        create_app({"CARDS_DIR": str(cards), "AUDIT_ENABLED": False})


@pytest.mark.parametrize("breakage", ["no status", "not a ValueSet", "a filter without its value"])
def test_a_broken_value_set_is_a_knowledge_error_naming_the_file_and_element(tmp_path, breakage):
    cards = shutil.copytree(ROOT / "cards", tmp_path / "cards")
    path = cards / "valuesets" / "indication-crps.json"
    valueset = json.loads(path.read_text(encoding="utf-8"))
    if breakage == "no status":
        del valueset["status"]
        where = r"\(root\): 'status' is a required property"
    elif breakage == "not a ValueSet":
        valueset["resourceType"] = "CodeSystem"
        where = r"resourceType: 'ValueSet' was expected"
    else:
        del valueset["compose"]["include"][0]["filter"][0]["value"]
        where = r"compose\.include\[0\]\.filter\[0\]: 'value' is a required property"
    path.write_text(json.dumps(valueset), encoding="utf-8")
    with pytest.raises(KnowledgeError, match=r"invalid: ValueError: valuesets/indication-crps\.json: " + where):
        create_app({"CARDS_DIR": str(cards), "AUDIT_ENABLED": False})


def test_cli_reports_a_broken_knowledge_directory_in_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CDS_CARDS_DIR", str(tmp_path / "nowhere"))
    assert main(["evaluate", str(FIXTURE)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("cds-service: error: knowledge directory")
    assert "Traceback" not in err


def test_importing_the_package_does_not_load_prometheus_client():
    """prometheus-client must first load after `serve` has set PROMETHEUS_MULTIPROC_DIR."""
    probe = "import sys, cds_service, cds_service.cli; print('prometheus_client' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def test_card_text_lacking_a_wording_the_renderer_needs_is_a_knowledge_error_at_start(tmp_path):
    cards = shutil.copytree(ROOT / "cards", tmp_path / "cards")
    text = json.loads((cards / "card-text.json").read_text(encoding="utf-8"))
    del text["labels"]["iv_drug_unconfirmed"]  # as in a card-text.json copied from an older release
    (cards / "card-text.json").write_text(json.dumps(text), encoding="utf-8")
    with pytest.raises(KnowledgeError, match=r"labels\.iv_drug_unconfirmed"):
        create_app({"CARDS_DIR": str(cards), "AUDIT_ENABLED": False})
