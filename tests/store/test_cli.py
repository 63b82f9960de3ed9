"""`edgeloop store` against a directory, a real S3 server and a workspace site."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from edgeloop.cli.main import app
from edgeloop.store import LocalStore, open_store, sha256_bytes
from edgeloop.testing.s3server import S3Server
from edgeloop.workspace import Workspace

runner = CliRunner()


def invoke(*args: str, stdin: bytes | None = None) -> tuple[int, str, str]:
    result = runner.invoke(app, ["store", *args], input=stdin)
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture(params=["file", "s3"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path, s3_server: S3Server) -> str:
    if request.param == "file":
        return f"file://{tmp_path / 'store'}"
    return s3_server.url(f"cli-{os.getpid()}-{len(request.node.name)}-{id(tmp_path) % 9999}")


def test_put_ls_head_cat_get_rm_round_trip(store_url: str, tmp_path: Path) -> None:
    data = bytes(range(256)) * 40  # binary, with NUL and newline bytes
    source = tmp_path / "in.bin"
    source.write_bytes(data)

    code, out, err = invoke("put", store_url, str(source), "captures/m/a.bin", "--json")
    assert code == 0, err
    stored = json.loads(out)
    assert stored["sha256"] == sha256_bytes(data) and stored["size"] == len(data)
    assert invoke("put", store_url, str(source), "labels/x.bin")[0] == 0

    code, out, _ = invoke("ls", store_url, "--json")
    assert [json.loads(line)["key"] for line in out.splitlines()] == [
        "captures/m/a.bin",
        "labels/x.bin",
    ]
    code, out, _ = invoke("ls", store_url, "--prefix", "captures/")
    assert code == 0 and "captures/m/a.bin" in out and "labels/x.bin" not in out
    code, out, _ = invoke("ls", store_url, "--start-after", "captures/m/a.bin", "--json")
    assert [json.loads(line)["key"] for line in out.splitlines()] == ["labels/x.bin"]

    code, out, _ = invoke("ls", store_url, "--sha256", "--json", "--limit", "1")
    assert [json.loads(line)["sha256"] for line in out.splitlines()] == [sha256_bytes(data)]

    code, out, _ = invoke("head", store_url, "captures/m/a.bin")
    assert json.loads(out)["sha256"] == sha256_bytes(data)

    result = runner.invoke(app, ["store", "cat", store_url, "captures/m/a.bin"])
    assert result.exit_code == 0
    assert result.stdout_bytes == data

    dest = tmp_path / "out"
    dest.mkdir()
    assert invoke("get", store_url, "captures/m/a.bin", str(dest))[0] == 0
    assert (dest / "a.bin").read_bytes() == data
    assert sorted(p.name for p in dest.iterdir()) == ["a.bin"]  # no temp file left

    code, out, _ = invoke("rm", store_url, "captures/m/a.bin", "labels/x.bin", "never/was")
    assert code == 0
    assert invoke("ls", store_url, "--json")[1] == ""


def test_put_with_wrong_sha256_stores_nothing(store_url: str, tmp_path: Path) -> None:
    source = tmp_path / "in.bin"
    source.write_bytes(b"payload")
    code, _, err = invoke("put", store_url, str(source), "k", "--sha256", "0" * 64)
    assert code == 1
    assert "expected 000" in " ".join(err.split()) and "Traceback" not in err
    assert invoke("ls", store_url, "--json")[1] == ""


def test_put_from_stdin(tmp_path: Path) -> None:
    url = str(tmp_path / "s")  # a bare directory path is a file store too
    assert invoke("put", url, "-", "from/stdin", stdin=b"piped\x00bytes")[0] == 0
    assert LocalStore(tmp_path / "s").get("from/stdin").read() == b"piped\x00bytes"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["cat", "{root}", "../etc/passwd"], "refused object key"),
        (["cat", "{root}", "%2e%2e/etc/passwd"], "refused object key"),
        (["put", "{root}", "/etc/hostname", "/abs/key"], "refused object key"),
        (["ls", "ftp://host/x"], "unknown scheme"),
        (["ls", "file://{root}/../elsewhere"], "'..' is not allowed"),
        (["cat", "{root}", "missing"], "no object at key"),
        (["ls", "{root}/not-made"], "no such store directory"),
        (["cat", "only-one-argument"], "expected arguments STORE KEY"),
        (["ls"], "give a STORE URL"),
    ],
)
def test_errors_are_one_clear_line(args: list[str], message: str, tmp_path: Path) -> None:
    LocalStore(tmp_path / "root")
    code, _, err = invoke(*(a.replace("{root}", str(tmp_path / "root")) for a in args))
    assert code != 0
    assert message in " ".join(err.split())  # rich wraps long lines
    assert "Traceback" not in err
    assert not (tmp_path / "root" / "not-made").exists()


def test_site_put_is_journaled_as_object_created(workspace_dir: Path, tmp_path: Path) -> None:
    source = tmp_path / "batch.parquet"
    source.write_bytes(b"rows")
    ws = ["-w", str(workspace_dir), "--site", "edge-a"]
    code, _, err = invoke("put", *ws, str(source), "captures/m/b1.parquet")
    assert code == 0, err
    code, out, _ = invoke("ls", *ws, "--json")
    assert [json.loads(line)["key"] for line in out.splitlines()] == ["captures/m/b1.parquet"]
    code, _, err = invoke("ls", str(tmp_path), "--site", "edge-a", "-w", str(workspace_dir))
    assert code != 0 and "not both" in err

    workspace = Workspace.load(workspace_dir)
    events = [e.event for e in workspace.journal("edge-a").read()]
    created = [e for e in events if e.type == "object.created"]
    assert [e.subject for e in created] == ["captures/m/b1.parquet"]
    assert created[0].data["sha256"] == sha256_bytes(b"rows")
    assert workspace.store("edge-a").get("captures/m/b1.parquet").read() == b"rows"


def test_cat_streams_through_a_real_pipe(s3_server: S3Server, tmp_path: Path) -> None:
    url = s3_server.url("pipe")
    data = os.urandom(3 * 1024 * 1024)
    open_store(url).put("blob", data)
    done = subprocess.run(
        [str(Path(sys.executable).parent / "edgeloop"), "store", "cat", url, "blob"],
        capture_output=True,
        check=False,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr.decode()
    assert done.stdout == data
