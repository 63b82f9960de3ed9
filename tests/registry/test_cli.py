"""`edgeloop init` makes the signing key; `edgeloop models register|ls|show|promote|archive|
restore|revoke|sign|verify` on a real workspace."""

from __future__ import annotations

import json
import shutil
import stat
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from edgeloop.cli.main import app
from edgeloop.model.manifest import SIGNATURE_NAME
from edgeloop.registry.signing import generate_signing_key, load_private_key, public_key_pem
from edgeloop.testing.serving import make_package
from edgeloop.workspace import Workspace, init_workspace


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def test_init_makes_the_core_signing_key_and_publishes_its_public_key(workspace_dir: Path) -> None:
    key = workspace_dir / "state" / "core" / "signing-key.pem"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    raw = yaml.safe_load((workspace_dir / "edgeloop.yaml").read_text())
    public = raw["signing"]["public_key"]
    assert public == public_key_pem(load_private_key(key))
    assert "PRIVATE" not in (workspace_dir / "edgeloop.yaml").read_text()
    # Re-initialising keeps the key, so versions signed before still verify.
    again = init_workspace(workspace_dir, force=True)
    assert again.config.signing is not None and again.config.signing.public_key == public
    assert Workspace.load(workspace_dir).config.signing == again.config.signing


def test_register_ls_show_promote(workspace_dir: Path, tmp_path: Path) -> None:
    pkg = make_package(tmp_path / "pk", name="churn", version=1)
    ws = str(workspace_dir)
    lineage = tmp_path / "lineage.json"
    lineage.write_text(json.dumps({
        "captures": [{"key": "captures/churn/edge-a/2026/01/02/b.parquet", "sha256": "a" * 64,
                      "site": "edge-a", "records": 10}],
        "labels": [{"key": "labels/churn/edge-a/2026/01/02/b.parquet", "sha256": "b" * 64}],
    }))  # fmt: skip
    code, out, err = invoke(
        "models", "register", str(pkg), "-w", ws, "--lineage", str(lineage), "--run-id", "r-1",
        "--pipeline", "retrain", "--code-version", "git:abc", "--dataset", "snap-1",
        "--param", "C=0.5", "--alias", "candidate", "--json",
    )  # fmt: skip
    assert code == 0, err
    first = json.loads(out)
    assert first["version"] == 1 and first["aliases"] == ["candidate"]
    assert first["lineage"]["parameters"] == {"C": "0.5"}
    assert invoke("models", "promote", "churn", "1", "-w", ws)[0] == 0
    code, out, err = invoke("models", "register", str(pkg), "-w", ws, "--run-id", "r-2")
    assert code == 0 and "churn:2" in out, err

    code, out, _ = invoke("models", "ls", "-w", ws, "--json")
    assert json.loads(out) == {"name": "churn", "versions": 2,
                               "aliases": {"candidate": 1, "champion": 1}}  # fmt: skip
    code, out, _ = invoke("models", "ls", "churn", "-w", ws, "--json")
    assert [json.loads(line)["version"] for line in out.splitlines()] == [1, 2]
    code, out, _ = invoke("models", "ls", "churn", "-w", ws)
    assert code == 0 and "registered" in out

    code, out, _ = invoke("models", "show", "churn:1", "-w", ws)
    assert code == 0
    assert "captures/churn/edge-a/2026/01/02/b.parquet sha256:" + "a" * 64 in out
    assert "labels (1)" in out and "dataset snapshot: snap-1" in out
    assert "pipeline run: r-1 (pipeline retrain)" in out and "code version: git:abc" in out
    assert "C = '0.5'" in out
    code, out, _ = invoke("models", "show", "churn", "2", "-w", ws)
    assert "parent: version 1" in out  # the champion when it was registered
    code, out, _ = invoke("models", "show", "churn", "-w", ws, "--json")
    assert json.loads(out)["version"] == 1  # no ref: the champion

    code, _, err = invoke("models", "show", "nope", "-w", ws)
    assert code == 1 and "no model 'nope'" in err
    code, _, err = invoke("models", "promote", "churn", "7", "-w", ws)
    assert code == 1 and "churn:7" in err


def test_archive_restore_revoke(workspace_dir: Path, tmp_path: Path) -> None:
    pkg = make_package(tmp_path / "pk", name="churn", version=1)
    ws = str(workspace_dir)
    assert invoke("models", "register", str(pkg), "-w", ws, "--alias", "champion")[0] == 0
    code, out, err = invoke("models", "archive", "churn", "1", "-w", ws)
    assert code == 0 and "churn:1 is archived" in out, err
    code, out, _ = invoke("models", "show", "churn", "1", "-w", ws, "--json")
    assert json.loads(out)["state"] == "archived" and json.loads(out)["aliases"] == []
    code, _, err = invoke("models", "promote", "churn", "1", "-w", ws)
    assert code == 1 and "only registered versions can be promoted" in err
    code, out, err = invoke("models", "restore", "churn", "1", "-w", ws)
    assert code == 0 and "churn:1 is registered" in out, err
    assert invoke("models", "revoke", "churn", "1", "-w", ws)[0] == 0
    code, _, err = invoke("models", "restore", "churn", "1", "-w", ws)
    assert code == 1 and "cannot go from revoked to registered" in err
    code, _, err = invoke("models", "archive", "churn", "9", "-w", ws)
    assert code == 1 and "churn:9" in err


def test_sign_and_verify(workspace_dir: Path, tmp_path: Path) -> None:
    ws = str(workspace_dir)
    pkg = make_package(tmp_path / "pk", name="churn", version=5)
    code, _, err = invoke("models", "verify", str(pkg), "-w", ws)
    assert code == 1 and "unsigned" in err
    assert invoke("models", "sign", str(pkg), "-w", ws)[0] == 0
    code, out, _ = invoke("models", "verify", str(pkg), "-w", ws, "--json")
    assert code == 0 and json.loads(out)["ok"] is True
    code, _, err = invoke("models", "verify", str(pkg), "-w", ws, "--installed-version", "6")
    assert code == 1 and "older than the installed version 6" in err

    # Another key: verifying with its public key fails, signing with it is the user's choice.
    other = tmp_path / "other.pem"
    pub = tmp_path / "other.pub"
    pub.write_text(generate_signing_key(other))
    code, _, err = invoke("models", "verify", str(pkg), "--public-key", str(pub))
    assert code == 1 and "different key" in err
    assert invoke("models", "sign", str(pkg), "--key", str(other))[0] == 0
    assert invoke("models", "verify", str(pkg), "--public-key", str(pub))[0] == 0
    code, _, err = invoke("models", "verify", str(pkg), "-w", ws)
    assert code == 1 and "different key" in err


@pytest.mark.parametrize("how", ["extra", "missing", "flip"])
def test_verify_names_what_was_tampered(workspace_dir: Path, tmp_path: Path, how: str) -> None:
    ws = str(workspace_dir)
    pkg = make_package(tmp_path / "pk", name="churn", version=1)
    assert invoke("models", "sign", str(pkg), "-w", ws)[0] == 0
    if how == "extra":
        (pkg / "README.md").write_text("hi")
        expected = "README.md: not signed (extra file)"
    elif how == "missing":
        (pkg / "model.onnx").unlink()
        expected = "model.onnx: signed but missing"
    else:
        data = bytearray((pkg / "model.onnx").read_bytes())
        data[10] ^= 0xFF
        (pkg / "model.onnx").write_bytes(bytes(data))
        expected = "model.onnx: SHA-256 differs from the signed one"
    code, _, err = invoke("models", "verify", str(pkg), "-w", ws)
    assert code == 1
    assert expected in " ".join(err.split())


def test_registered_package_in_the_store_verifies_with_the_cli(
    workspace_dir: Path, tmp_path: Path
) -> None:
    ws = str(workspace_dir)
    pkg = make_package(tmp_path / "pk", name="churn", version=1)
    assert invoke("models", "register", str(pkg), "-w", ws)[0] == 0
    stored = workspace_dir / "sites" / "core" / "store" / "models" / "churn" / "1"
    copy = tmp_path / "copy"
    shutil.copytree(stored, copy)
    assert (copy / SIGNATURE_NAME).exists()
    code, out, err = invoke("models", "verify", str(copy), "-w", ws)
    assert code == 0 and "OK churn:1" in out, err


def test_workspace_without_signing_key_explains(tmp_path: Path) -> None:
    ws = init_workspace(tmp_path / "ws")
    text = (ws.root / "edgeloop.yaml").read_text()
    (ws.root / "edgeloop.yaml").write_text(text.split("signing:")[0])
    pkg = make_package(tmp_path / "pk")
    code, _, err = invoke("models", "verify", str(pkg), "-w", str(ws.root))
    assert code == 1 and "signing.public_key" in err


def test_register_announces_in_the_core_journal(workspace_dir: Path, tmp_path: Path) -> None:
    pkg = make_package(tmp_path / "pk", name="churn", version=1)
    assert invoke("models", "register", str(pkg), "-w", str(workspace_dir))[0] == 0
    assert invoke("models", "promote", "churn", "1", "-w", str(workspace_dir))[0] == 0
    journal = Workspace.load(workspace_dir).journal("core")
    try:
        types = [(e.event.type, e.event.subject) for e in journal.read()]
    finally:
        journal.close()
    assert ("model.registered", "models/churn/1/") in types
    assert ("model.promoted", "models/churn/1/") in types


@pytest.mark.postgres
def test_cli_on_postgresql(workspace_dir: Path, tmp_path: Path, postgres_url: str) -> None:
    ws = str(workspace_dir)
    pkg = make_package(tmp_path / "pk", name="churn", version=1)
    for _ in range(2):
        assert invoke("models", "register", str(pkg), "-w", ws, "--db", postgres_url)[0] == 0
    code, out, _ = invoke("models", "ls", "churn", "-w", ws, "--db", postgres_url, "--json")
    assert code == 0
    assert [json.loads(line)["version"] for line in out.splitlines()] == [1, 2]
    assert not (workspace_dir / "state" / "core" / "registry.db").exists()
