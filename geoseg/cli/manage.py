"""Commands around the pipeline: `model info` (inspect a package) and `deploy` (Prefect)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from geoseg.cli.errors import handles_errors
from geoseg.cli.rich import out_console


@handles_errors
def model_info(
    package: Annotated[Path, typer.Argument(help="Model package (.geoseg).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the metadata as JSON.")] = False,
) -> None:
    """Print a model package's metadata: classes, bands, normalization, GSD, metrics."""
    from geoseg.cli.rich import print_package
    from geoseg.models.package import load_package, package_summary

    pkg = load_package(package)
    summary = package_summary(pkg)
    if as_json:
        out_console.print_json(json.dumps(summary))
        return
    print_package(pkg, out_console)


@handles_errors
def deploy(
    *,
    project_dir: Annotated[
        Path, typer.Option(help="The geoseg source tree: the folder holding flows/.")
    ] = Path(),
    file: Annotated[
        Path | None, typer.Option(help="Deployments file (default: flows/prefect.yaml).")
    ] = None,
    pool: Annotated[
        str | None, typer.Option(help="Work pool for every deployment (default: the file's).")
    ] = None,
    name: Annotated[
        list[str] | None, typer.Option(help="Deploy only this deployment; repeat for several.")
    ] = None,
    param: Annotated[
        list[str] | None,
        typer.Option(help="Default flow parameter key=value (JSON values allowed); repeat."),
    ] = None,
) -> None:
    """Create or update the Prefect deployments of flows/prefect.yaml (needs a Prefect server).

    The work pool is created (type process) if missing; start a worker for it with
    `prefect worker start --pool NAME`. Prefect is imported here only: `geoseg run` never
    needs it.
    """
    import sys

    from geoseg.errors import DeploymentError

    try:
        import prefect  # noqa: F401 - only to tell a missing install apart
    except ImportError:
        raise DeploymentError(
            "geoseg deploy needs Prefect, which is not installed: pip install 'geoseg[flows]'"
        ) from None
    project = project_dir.resolve()
    if not (project / "flows" / "deploy.py").is_file():
        raise DeploymentError(
            f"{project}: has no flows/ folder; run geoseg deploy in the geoseg source tree "
            "or pass --project-dir"
        )
    if str(project) not in sys.path:
        sys.path.insert(0, str(project))
    from flows.deploy import deploy_from_file, parse_params

    deployed = deploy_from_file(
        file or project / "flows" / "prefect.yaml",
        project_dir=project,
        pool=pool,
        only=name or (),
        params=parse_params(param or []),
    )
    for d in deployed:
        when = ", ".join(d.schedules) or "on demand"
        out_console.print(
            f"[green]deployed[/] {d.full_name} (pool {d.work_pool}; {when}); "
            f"trigger: prefect deployment run '{d.full_name}'",
            highlight=False,
        )
