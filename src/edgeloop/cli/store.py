"""`edgeloop store`: list, upload, download, print and delete objects of any store."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import typer

from edgeloop.cli.common import (
    WorkspaceOption,
    console,
    friendly_errors,
    load_workspace,
    print_json,
)
from edgeloop.errors import EdgeloopError
from edgeloop.journal import JournalSink
from edgeloop.store import ObjectInfo, ObjectStore, open_store
from edgeloop.store.journaled import JournaledStore

app = typer.Typer(
    help="List, upload, download, print and delete objects in a store "
    "(file://, s3:// or a workspace site's store).",
    no_args_is_help=True,
)

SiteOption = typer.Option(
    None,
    "--site",
    "-s",
    help="Use this workspace site's store (see -w); then give no STORE argument.",
    show_default=False,
)
STORE_HELP = (
    "STORE is a store URL: file:///dir (or a directory path), s3://bucket/prefix?endpoint=...; "
    "credentials come from the URL query or the AWS_* variables. Leave it out with --site."
)


class UsageError(EdgeloopError):
    """The command line named no store, two, or the wrong number of arguments."""


def _split(args: list[str], site: str | None, names: tuple[str, ...]) -> tuple[str | None, ...]:
    """Split positional arguments into (STORE or None, *names); STORE comes first unless --site."""
    has_store = site is None
    want = len(names) + (1 if has_store else 0)
    variadic = names[-1].endswith("...")
    if len(args) < want or (len(args) > want and not variadic):
        usage = ("" if not has_store else "STORE ") + " ".join(names)
        raise UsageError(f"expected arguments {usage}; got {len(args)}: {' '.join(args)}")
    store = args[0] if has_store else None
    rest = args[1:] if has_store else args
    return (store, *rest)


@contextmanager
def _opened(
    url: str | None, site: str | None, workspace: Path | None, *, journaled: bool = False
) -> Iterator[ObjectStore]:
    """The store the options name; `journaled` marks a write: a missing directory store is
    created, and a site's writes also emit object.created."""
    if url:
        store = open_store(url, create=journaled)  # only writes create a directory store
        try:
            yield store
        finally:
            store.close()
        return
    if not site:
        raise UsageError("give a STORE URL, or --site NAME (with -w WORKSPACE)")
    ws = load_workspace(workspace)
    store = ws.store(site)
    journal = ws.journal(site) if journaled else None
    try:
        yield JournaledStore(store, JournalSink(journal), site) if journal else store
    finally:
        store.close()
        if journal is not None:
            journal.close()


def _row(info: ObjectInfo) -> dict[str, object]:
    return {
        "key": info.key,
        "size": info.size,
        "sha256": info.sha256,
        "modified": info.modified.isoformat(),
    }


def _human_size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"


@app.command("ls")
def ls(
    store_url: str = typer.Argument(None, metavar="[STORE]", help=STORE_HELP, show_default=False),
    prefix: str = typer.Option("", "--prefix", "-p", help="Only keys starting with this."),
    start_after: str = typer.Option(
        None, "--start-after", help="Only keys sorting after this one (to resume a listing)."
    ),
    limit: int = typer.Option(0, "--limit", "-n", help="Stop after this many keys (0: all)."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per line."),
    with_sha256: bool = typer.Option(
        False,
        "--sha256",
        help="Fill in SHA-256s a listing lacks (S3) with one HEAD request per object.",
    ),
    site: str = SiteOption,
    workspace: Path = WorkspaceOption,
) -> None:
    """List objects in key order: time modified, size, SHA-256 (short) and key.

    S3 listings carry no metadata, so their SHA-256 shows as '-' unless --sha256 is given.
    Example: edgeloop store ls file:///data/edge-a --prefix captures/
    """
    with friendly_errors():
        if store_url and site:
            raise UsageError("give a STORE URL or --site, not both")
        with _opened(store_url, site, workspace) as store:
            listing = store.list(prefix, start_after=start_after)
            for count, listed in enumerate(listing, 1):
                info = store.head(listed.key) if with_sha256 and not listed.sha256 else listed
                if as_json:
                    print_json(_row(info))
                else:
                    sha = info.sha256[:12] if info.sha256 else "-"
                    console.print(
                        f"{info.modified:%Y-%m-%d %H:%M:%S}  {_human_size(info.size):>10}  "
                        f"{sha:12}  {info.key}",
                        highlight=False,
                        markup=False,
                        soft_wrap=True,
                    )
                if limit and count >= limit:
                    break


@app.command("head")
def head(
    args: list[str] = typer.Argument(..., metavar="[STORE] KEY", help=STORE_HELP),
    site: str = SiteOption,
    workspace: Path = WorkspaceOption,
) -> None:
    """Show one object's key, size, full SHA-256 and time modified, as JSON.

    Example: edgeloop store head file:///data/edge-a models/m/3/model.onnx
    """
    with friendly_errors():
        url, key = _split(args, site, ("KEY",))
        assert key is not None
        with _opened(url, site, workspace) as store:
            print_json(_row(store.head(key)))


@app.command("put")
def put(
    args: list[str] = typer.Argument(..., metavar="[STORE] SOURCE KEY", help=STORE_HELP),
    sha256: str = typer.Option(
        None,
        "--sha256",
        help="Expected SHA-256 of SOURCE; on a mismatch nothing is stored and the command fails.",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the stored object as JSON."),
    site: str = SiteOption,
    workspace: Path = WorkspaceOption,
) -> None:
    """Upload the local file SOURCE ('-': standard input), streamed, to KEY.

    With --site the write is journaled as an object.created event of that site.
    Example: edgeloop store put -w ws --site edge-a data.parquet datasets/m/s1/data.parquet
    """
    with friendly_errors():
        url, source, key = _split(args, site, ("SOURCE", "KEY"))
        assert source is not None and key is not None
        with _opened(url, site, workspace, journaled=True) as store:
            if source == "-":
                info = store.put(key, sys.stdin.buffer, expected_sha256=sha256)
            else:
                try:
                    handle = open(source, "rb")  # noqa: SIM115 - closed below, after the put
                except OSError as exc:
                    raise UsageError(f"cannot read {source}: {exc.strerror}") from None
                with handle:
                    info = store.put(key, handle, expected_sha256=sha256)
        if as_json:
            print_json(_row(info))
        else:
            console.print(
                f"stored {info.key} ({info.size} bytes, sha256 {info.sha256})",
                highlight=False,
                markup=False,
                soft_wrap=True,
            )


@app.command("get")
def get(
    args: list[str] = typer.Argument(..., metavar="[STORE] KEY DEST", help=STORE_HELP),
    site: str = SiteOption,
    workspace: Path = WorkspaceOption,
) -> None:
    """Download KEY to the local file DEST (a directory keeps the key's last name).

    The bytes stream into a temp file that is renamed to DEST only when complete.
    Example: edgeloop store get file:///data/core runs/r1/metrics.json ./metrics.json
    """
    with friendly_errors():
        url, key, dest_arg = _split(args, site, ("KEY", "DEST"))
        assert key is not None and dest_arg is not None
        dest = Path(dest_arg)
        target = dest / key.rsplit("/", 1)[-1] if dest.is_dir() else dest
        partial = target.with_name(f".{target.name}.part")
        with _opened(url, site, workspace) as store, store.get(key) as reader:
            try:
                with open(partial, "wb") as out:
                    for chunk in reader:
                        out.write(chunk)
                partial.replace(target)
            except OSError as exc:
                raise UsageError(f"cannot write {target}: {exc.strerror}") from None
            finally:
                partial.unlink(missing_ok=True)
        console.print(f"{key} -> {target}", highlight=False, markup=False, soft_wrap=True)


@app.command("cat")
def cat(
    args: list[str] = typer.Argument(..., metavar="[STORE] KEY", help=STORE_HELP),
    site: str = SiteOption,
    workspace: Path = WorkspaceOption,
) -> None:
    """Write an object's bytes to standard output unchanged (binary-safe, streamed).

    Example: edgeloop store cat file:///data/core runs/r1/metrics.json | jq .
    """
    with friendly_errors():
        url, key = _split(args, site, ("KEY",))
        assert key is not None
        with _opened(url, site, workspace) as store, store.get(key) as reader:
            out = sys.stdout.buffer
            for chunk in reader:
                out.write(chunk)
            out.flush()


@app.command("rm")
def rm(
    args: list[str] = typer.Argument(..., metavar="[STORE] KEY...", help=STORE_HELP),
    site: str = SiteOption,
    workspace: Path = WorkspaceOption,
) -> None:
    """Delete one or more objects; a key that does not exist is not an error.

    Example: edgeloop store rm file:///data/edge-a tmp/a.bin tmp/b.bin
    """
    with friendly_errors():
        url, *keys = _split(args, site, ("KEY...",))
        with _opened(url, site, workspace) as store:
            for key in keys:
                assert key is not None
                store.delete(key)
                console.print(f"deleted {key}", highlight=False, markup=False, soft_wrap=True)
