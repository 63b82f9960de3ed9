"""`edgeloop models`: package, register, inspect, promote, sign and verify model versions."""

from __future__ import annotations

from pathlib import Path

import typer

from edgeloop.cli.common import WorkspaceOption, console, load_workspace

app = typer.Typer(
    help="Package, register, inspect, promote, sign and verify models.", no_args_is_help=True
)


# -- `edgeloop models package` (serving) ---------------------------------------------------
@app.command("package")
def package(
    estimator: Path = typer.Argument(
        ...,
        exists=True,
        dir_okay=False,
        help="A fitted scikit-learn estimator saved with skops (skops.io.dump).",
    ),
    name: str = typer.Option(..., "--name", help="Model name (lowercase, digits, '-', '_', '.')."),
    version: int = typer.Option(..., "--version", min=1, help="Version number of the package."),
    out: Path = typer.Option(
        ..., "--out", "-o", help="Package directory to create (e.g. repo/<name>/<version>)."
    ),
    fmt: str = typer.Option("onnx", "--format", help="onnx (via skl2onnx) or skops."),
    feature: list[str] = typer.Option([], "--feature", help="Feature name, in column order."),
    description: str = typer.Option("", "--description", help="Model card description."),
    trust_type: list[str] = typer.Option(
        [], "--trust-type", help="Extra skops type to trust when reading ESTIMATOR (repeatable)."
    ),
) -> None:
    """Package a fitted scikit-learn estimator as an ONNX or skops model package."""
    from edgeloop.cli.common import friendly_errors, print_json
    from edgeloop.errors import PackageError
    from edgeloop.model.manifest import ModelCard, ModelFormat

    with friendly_errors():
        import skops.io as sio

        from edgeloop.serving.packaging import package_estimator
        from edgeloop.serving.runtimes.sklearn import check_types

        if fmt not in ("onnx", "skops"):
            raise PackageError(f"--format must be onnx or skops, not {fmt!r}")
        trusted = check_types(estimator, tuple(trust_type))
        model = sio.load(estimator, trusted=trusted)
        manifest = package_estimator(
            model, out, name=name, version=version, fmt=ModelFormat(fmt),
            feature_names=feature or None, card=ModelCard(description=description),
            lineage={"source": estimator.name},
        )  # fmt: skip
        print_json({"package": str(out), "name": manifest.name, "version": manifest.version,
                    "format": manifest.format.value})  # fmt: skip


# -- registry: register, ls, show, promote, archive, restore, revoke, sign, verify --------
DatabaseOption = typer.Option(
    None,
    "--db",
    envvar="EDGELOOP_REGISTRY_DB",
    help="Registry database URL (default: SQLite in the core's state dir; postgresql://...).",
    show_default=False,
)
JsonOption = typer.Option(False, "--json", help="Print JSON instead of a table.")


@app.command("register")
def register(
    package_dir: Path = typer.Argument(..., help="Model package directory (edgeloop-model.json)."),
    workspace: Path | None = WorkspaceOption,
    db: str | None = DatabaseOption,
    lineage_file: Path | None = typer.Option(
        None,
        "--lineage",
        exists=True,
        dir_okay=False,
        help="JSON file with lineage (captures, labels, dataset, parent, run_id, ...).",
    ),
    run_id: str | None = typer.Option(None, "--run-id", help="Pipeline run that made it."),
    pipeline: str | None = typer.Option(None, "--pipeline", help="Pipeline name."),
    code_version: str | None = typer.Option(None, "--code-version", help="e.g. a git commit."),
    dataset: str | None = typer.Option(None, "--dataset", help="Dataset snapshot id."),
    parent: int | None = typer.Option(None, "--parent", min=1, help="Parent version."),
    param: list[str] = typer.Option([], "--param", help="Training parameter KEY=VALUE."),
    alias: list[str] = typer.Option([], "--alias", help="Alias to point at the new version."),
    source_key: str | None = typer.Option(
        None, "--source-key", help="Idempotency key: a repeat returns the version made."
    ),
    json_output: bool = JsonOption,
) -> None:
    """Register a package as the model's next version: sign it, store it, record lineage."""
    import orjson

    from edgeloop.cli.common import friendly_errors, print_json
    from edgeloop.errors import ConfigError

    with friendly_errors():
        from edgeloop.registry import DatasetRef, Lineage
        from edgeloop.registry.workspace import open_registry

        values: dict[str, object] = {}
        if lineage_file is not None:
            try:
                values = dict(orjson.loads(lineage_file.read_bytes()))
            except (orjson.JSONDecodeError, TypeError, ValueError) as exc:
                raise ConfigError(f"{lineage_file}: not a JSON object: {exc}") from None
        params = dict(values.get("parameters") or {})  # type: ignore[call-overload]
        for item in param:
            key, sep, value = item.partition("=")
            if not sep or not key:
                raise ConfigError(f"--param {item!r}: use KEY=VALUE")
            params[key] = value
        flags = {"run_id": run_id, "pipeline": pipeline, "code_version": code_version,
                 "parent": parent}  # fmt: skip
        values.update({k: v for k, v in flags.items() if v is not None})
        if dataset is not None:
            values["dataset"] = DatasetRef(snapshot=dataset).model_dump()
        if params:
            values["parameters"] = params
        try:
            lineage = Lineage.model_validate(values)
        except ValueError as exc:
            raise ConfigError(f"invalid lineage: {exc}") from None
        registry = open_registry(load_workspace(workspace), db)
        try:
            info = registry.register(
                package_dir, lineage=lineage, source_key=source_key, aliases=tuple(alias)
            )
        finally:
            registry.close()
    if json_output:
        print_json(info.to_json())
    else:
        console.print(f"Registered [bold]{info.ref}[/] at {info.prefix} (signed, "
                      f"{len(info.files)} files)")  # fmt: skip


@app.command("ls")
def ls(
    name: str | None = typer.Argument(None, help="Model to list versions of (default: models)."),
    workspace: Path | None = WorkspaceOption,
    db: str | None = DatabaseOption,
    all_versions: bool = typer.Option(False, "--all", help="Include pending/failed versions."),
    json_output: bool = JsonOption,
) -> None:
    """List registered models, or the versions of one model with states and aliases."""
    from rich.table import Table

    from edgeloop.cli.common import friendly_errors, print_json

    with friendly_errors():
        from edgeloop.registry.workspace import open_registry

        registry = open_registry(load_workspace(workspace), db)
        try:
            if name is None:
                rows = [
                    {"name": m, "versions": len(registry.versions(m)),
                     "aliases": registry.aliases(m)}
                    for m in registry.models()
                ]  # fmt: skip
            else:
                versions = registry.versions(name, include_all=all_versions)
        finally:
            registry.close()
    if name is None:
        if json_output:
            for row in rows:
                print_json(row)
            return
        table = Table("model", "versions", "aliases")
        for row in rows:
            aliases = ", ".join(f"{a}={v}" for a, v in sorted(row["aliases"].items()))  # type: ignore[attr-defined]
            table.add_row(str(row["name"]), str(row["versions"]), aliases)
        console.print(table)
        return
    if json_output:
        for info in versions:
            print_json(info.to_json())
        return
    table = Table("version", "state", "aliases", "metrics", "run", "registered")
    for info in versions:
        metrics = ", ".join(f"{k}={v:.4g}" for k, v in sorted(info.metrics.items()))
        table.add_row(
            str(info.version), info.state.value, ", ".join(info.aliases), metrics,
            info.lineage.run_id or "-",
            info.registered.isoformat(timespec="seconds") if info.registered else "-",
        )  # fmt: skip
    console.print(table)


@app.command("show")
def show(
    name: str = typer.Argument(..., help="Model name, or NAME:VERSION / NAME:ALIAS."),
    ref: str | None = typer.Argument(
        None, help="Version number or alias (default: champion, else latest)."
    ),
    workspace: Path | None = WorkspaceOption,
    db: str | None = DatabaseOption,
    json_output: bool = JsonOption,
) -> None:
    """Show one version: state, aliases, metrics, card, files and its lineage tree."""
    from edgeloop.cli.common import friendly_errors, print_json

    if ref is None and ":" in name:
        name, ref = name.split(":", 1)
    with friendly_errors():
        from edgeloop.registry import render_lineage
        from edgeloop.registry.workspace import open_registry

        registry = open_registry(load_workspace(workspace), db)
        try:
            info = registry.get(name, ref)
        finally:
            registry.close()
    if json_output:
        print_json(info.to_json())
        return
    out = typer.echo
    out(f"{info.ref}  state={info.state.value}  aliases={','.join(info.aliases) or '-'}")
    out(f"package: {info.prefix}  format={info.format} runtime={info.runtime} "
        f"signer={info.signer}")  # fmt: skip
    for rel, digest in sorted(info.files.items()):
        out(f"  {rel}  sha256:{digest}")
    if info.metrics:
        out("metrics: " + ", ".join(f"{k}={v:.6g}" for k, v in sorted(info.metrics.items())))
    if info.card.get("description"):
        out(f"card: {info.card['description']}")
    out("lineage:")
    out(render_lineage(info.ref, info.lineage))


@app.command("promote")
def promote(
    name: str = typer.Argument(..., help="Model name."),
    version: int = typer.Argument(..., min=1, help="Version to point the alias at."),
    alias: str = typer.Option("champion", "--alias", "-a", help="champion, candidate, or yours."),
    workspace: Path | None = WorkspaceOption,
    db: str | None = DatabaseOption,
) -> None:
    """Point an alias (default: champion) at a registered version; emits model.promoted."""
    from edgeloop.cli.common import friendly_errors

    with friendly_errors():
        from edgeloop.registry.workspace import open_registry

        registry = open_registry(load_workspace(workspace), db)
        try:
            info = registry.promote(name, version, alias)
        finally:
            registry.close()
    console.print(f"{alias} -> [bold]{info.ref}[/]")


def _change_state(
    name: str, version: int, state: str, workspace: Path | None, db: str | None
) -> None:
    from edgeloop.cli.common import friendly_errors

    with friendly_errors():
        from edgeloop.registry import VersionState
        from edgeloop.registry.workspace import open_registry

        registry = open_registry(load_workspace(workspace), db)
        try:
            info = registry.set_state(name, version, VersionState(state))
        finally:
            registry.close()
    console.print(f"[bold]{info.ref}[/] is {info.state.value}")


@app.command("archive")
def archive(
    name: str = typer.Argument(..., help="Model name."),
    version: int = typer.Argument(..., min=1, help="Registered version to archive."),
    workspace: Path | None = WorkspaceOption,
    db: str | None = DatabaseOption,
) -> None:
    """Archive a version: kept, never served; aliases that pointed at it are removed."""
    _change_state(name, version, "archived", workspace, db)


@app.command("restore")
def restore(
    name: str = typer.Argument(..., help="Model name."),
    version: int = typer.Argument(..., min=1, help="Archived version to make servable again."),
    workspace: Path | None = WorkspaceOption,
    db: str | None = DatabaseOption,
) -> None:
    """Restore an archived version to registered (aliases are not restored: promote again)."""
    _change_state(name, version, "registered", workspace, db)


@app.command("revoke")
def revoke(
    name: str = typer.Argument(..., help="Model name."),
    version: int = typer.Argument(..., min=1, help="Version never to serve again."),
    workspace: Path | None = WorkspaceOption,
    db: str | None = DatabaseOption,
) -> None:
    """Revoke a version for good (e.g. trained on bad data); it can never be restored."""
    _change_state(name, version, "revoked", workspace, db)


@app.command("sign")
def sign(
    package_dir: Path = typer.Argument(..., help="Model package directory to sign in place."),
    key: Path | None = typer.Option(
        None, "--key", help="EC P-256 private key PEM (default: the workspace core's key)."
    ),
    workspace: Path | None = WorkspaceOption,
) -> None:
    """Sign every file of a package directory (OpenSSF model signing); writes model.sig."""
    from edgeloop.cli.common import friendly_errors

    with friendly_errors():
        from edgeloop.registry.signing import sign_package
        from edgeloop.registry.workspace import signing_key_path

        key_path = key or signing_key_path(load_workspace(workspace))
        signature = sign_package(package_dir, key_path)
    console.print(f"Signed {package_dir} -> {signature.name}")


@app.command("verify")
def verify(
    package_dir: Path = typer.Argument(..., help="Model package directory to check."),
    public_key: Path | None = typer.Option(
        None,
        "--public-key",
        exists=True,
        dir_okay=False,
        help="Trusted public key PEM (default: signing.public_key of the workspace).",
    ),
    installed_version: int | None = typer.Option(
        None, "--installed-version", min=1, help="Refuse a package older than this version."
    ),
    workspace: Path | None = WorkspaceOption,
    json_output: bool = JsonOption,
) -> None:
    """Check a package's signature, signer and every file's hash; exit 1 if anything is off."""
    from edgeloop.cli.common import friendly_errors, print_json

    with friendly_errors():
        from edgeloop.registry.signing import verify_package
        from edgeloop.registry.workspace import trusted_public_key

        pem = (
            public_key.read_text(encoding="utf-8")
            if public_key is not None
            else trusted_public_key(load_workspace(workspace))
        )
        verified = verify_package(package_dir, pem, installed_version=installed_version)
    if json_output:
        print_json({"package": str(package_dir), "ok": True, "name": verified.manifest.name,
                    "version": verified.manifest.version, "files": verified.files})  # fmt: skip
    else:
        console.print(f"OK {verified.manifest.ref}: signature and {len(verified.files)} "
                      "file hashes verified")  # fmt: skip
