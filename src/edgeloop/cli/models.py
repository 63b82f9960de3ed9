"""`edgeloop models`: package, register, inspect, promote, sign and verify model versions."""

from __future__ import annotations

from pathlib import Path

import typer

app = typer.Typer(help="Package, register, inspect, promote, sign and verify models.", no_args_is_help=True)


# -- `edgeloop models package` (serving) ---------------------------------------------------
@app.command("package")
def package(
    estimator: Path = typer.Argument(
        ..., exists=True, dir_okay=False,
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
