"""Create or update the deployments declared in ``flows/prefect.yaml`` (`geoseg deploy`).

The file is the one ``prefect deploy --prefect-file flows/prefect.yaml`` reads; this module
reads the part geoseg uses -- each deployment's name, entrypoint, work pool, schedules,
parameters, description and tags -- and deploys it with
``flow.from_source(PROJECT_DIR, entrypoint).deploy(...)``: the work pool's workers run the
flow from this source folder (no image is built), which is what a process work pool needs.
The work pool is created (type ``process``) when it does not exist yet.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import yaml
from prefect import Flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import WorkPoolCreate
from prefect.exceptions import ObjectAlreadyExists
from prefect.schedules import Cron
from prefect.settings import PREFECT_API_URL

from geoseg.errors import DeploymentError

DEFAULT_FILE = Path("flows") / "prefect.yaml"
POOL_TYPE = "process"


@dataclass(frozen=True)
class DeploymentSpec:
    """One deployment of prefect.yaml, as far as geoseg deploys it."""

    name: str
    entrypoint: str
    work_pool: str
    crons: tuple[tuple[str, str], ...] = ()
    parameters: Mapping[str, Any] | None = None
    description: str | None = None
    tags: tuple[str, ...] = ()

    @property
    def flow_file(self) -> str:
        return self.entrypoint.split(":", 1)[0]


@dataclass(frozen=True)
class Deployed:
    """A deployment created or updated: ``<flow name>/<deployment name>`` and its id."""

    full_name: str
    id: UUID
    work_pool: str
    schedules: tuple[str, ...]


def read_specs(path: Path) -> list[DeploymentSpec]:
    """The deployments of a prefect.yaml; a missing or malformed file is a `DeploymentError`."""
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise DeploymentError(
            f"{path}: cannot read the deployments file ({exc}); pass flows/prefect.yaml "
            "of the geoseg source tree with --file"
        ) from None
    entries = doc.get("deployments") if isinstance(doc, dict) else None
    if not isinstance(entries, list) or not entries:
        raise DeploymentError(f"{path}: has no 'deployments' list; declare at least one")
    specs = []
    for i, entry in enumerate(entries):
        try:
            crons = tuple(
                (str(s["cron"]), str(s.get("timezone") or "UTC"))
                for s in entry.get("schedules") or []
            )
            specs.append(
                DeploymentSpec(
                    name=str(entry["name"]),
                    entrypoint=str(entry["entrypoint"]),
                    work_pool=str((entry.get("work_pool") or {})["name"]),
                    crons=crons,
                    parameters=dict(entry.get("parameters") or {}),
                    description=entry.get("description"),
                    tags=tuple(entry.get("tags") or ()),
                )
            )
        except (KeyError, TypeError, AttributeError) as exc:
            raise DeploymentError(
                f"{path}: deployment #{i + 1} lacks {exc} (each needs name, entrypoint, "
                "work_pool.name; schedules are a list of {cron, timezone})"
            ) from None
    return specs


def parse_params(items: Sequence[str]) -> dict[str, Any]:
    """``key=value`` pairs; values are JSON where they parse as JSON, else strings."""
    params: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise DeploymentError(f"--param {item!r}: write key=value, e.g. out=/data/out")
        try:
            params[key] = json.loads(value)
        except json.JSONDecodeError:
            params[key] = value
    return params


def ensure_work_pool(name: str) -> None:
    """Create a process work pool called ``name`` unless it exists."""
    with get_client(sync_client=True) as client, contextlib.suppress(ObjectAlreadyExists):
        client.create_work_pool(WorkPoolCreate(name=name, type=POOL_TYPE))


def deploy_spec(
    spec: DeploymentSpec, *, project_dir: Path, pool: str | None, params: Mapping[str, Any]
) -> Deployed:
    """Create or update one deployment, its flow loaded from ``project_dir``."""
    if not (project_dir / spec.flow_file).is_file():
        raise DeploymentError(
            f"{project_dir / spec.flow_file}: the flow file of deployment {spec.name!r} is "
            "missing; run geoseg deploy in the geoseg source tree or pass --project-dir"
        )
    work_pool = pool or spec.work_pool
    ensure_work_pool(work_pool)
    flow = Flow.from_source(source=str(project_dir), entrypoint=spec.entrypoint)
    deployment_id = flow.deploy(
        name=spec.name,
        work_pool_name=work_pool,
        schedules=[Cron(cron, timezone=tz) for cron, tz in spec.crons] or None,
        parameters={**(spec.parameters or {}), **params},
        description=spec.description,
        tags=list(spec.tags),
        print_next_steps=False,
        ignore_warnings=True,
    )
    return Deployed(
        full_name=f"{flow.name}/{spec.name}",
        id=deployment_id,
        work_pool=work_pool,
        schedules=tuple(f"{cron} ({tz})" for cron, tz in spec.crons),
    )


def deploy_from_file(
    path: Path,
    *,
    project_dir: Path,
    pool: str | None = None,
    only: Sequence[str] = (),
    params: Mapping[str, Any] | None = None,
) -> list[Deployed]:
    """Create or update the deployments of ``path`` (those named in ``only``, if given).

    Needs a Prefect server (``PREFECT_API_URL``); without one it fails with what to do.
    """
    specs = read_specs(path)
    unknown = sorted(set(only) - {s.name for s in specs})
    if unknown:
        raise DeploymentError(
            f"{path}: no deployment named {', '.join(unknown)}; declared: "
            f"{', '.join(s.name for s in specs)}"
        )
    if not PREFECT_API_URL.value():
        raise DeploymentError(
            "PREFECT_API_URL is not set: start a server (prefect server start) and set "
            "PREFECT_API_URL=http://127.0.0.1:4200/api (or prefect config set ...)"
        )
    chosen = [s for s in specs if not only or s.name in only]
    try:
        return [
            deploy_spec(s, project_dir=project_dir.resolve(), pool=pool, params=params or {})
            for s in chosen
        ]
    except (httpx.HTTPError, OSError) as exc:
        raise DeploymentError(
            f"cannot reach the Prefect server at {PREFECT_API_URL.value()} ({exc}); start it "
            "(prefect server start) or fix PREFECT_API_URL"
        ) from None
