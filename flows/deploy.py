"""Create or update the deployments declared in ``flows/prefect.yaml`` (`geoseg deploy`).

The file is the one ``prefect deploy --prefect-file flows/prefect.yaml`` reads; this module
reads the part geoseg uses -- each deployment's name, entrypoint, work pool (and its
``job_variables``), schedules, parameters, description and tags -- and deploys it with
``flow.from_source(PROJECT_DIR, entrypoint).deploy(...)``: the work pool's workers run the
flow from this source folder (no image is built), which is what a process work pool needs.
The work pool is created (type ``process``) when it does not exist yet.

Crashed runs. A flow run whose worker (or machine) was killed would stay Running forever:
nothing is left to report its end. Every Prefect 3 flow run emits a
``prefect.flow-run.heartbeat`` event every ``PREFECT_FLOWS_HEARTBEAT_FREQUENCY`` seconds
(default 180, at least 30; prefect/settings/models/flows.py, sent by a thread of the flow
engine, prefect/flow_engine.py ``_send_heartbeats``), but a self-hosted server does nothing
with them unless an automation does. So deploying also creates (or updates) the automation
`CRASH_AUTOMATION`: a proactive trigger per flow run tagged ``geoseg`` that, once a heartbeat
came, expects another heartbeat or a final state (Completed, Failed, Cancelled, Crashed)
within `MISSED_HEARTBEATS` heartbeat periods, and else sets the run Crashed. The period is
the deployments' ``job_variables.env.PREFECT_FLOWS_HEARTBEAT_FREQUENCY`` (prefect.yaml sets
60 s: a dead run is Crashed within about 3 minutes). Every deployment gets the ``geoseg`` tag
(`CRASH_TAG`), and the segment flow passes its tags on to its scene subflow.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import yaml
from prefect import Flow
from prefect.automations import AutomationCore
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import WorkPoolCreate
from prefect.client.schemas.objects import StateType
from prefect.events.actions import ChangeFlowRunState
from prefect.events.schemas.automations import EventTrigger, Posture
from prefect.events.schemas.events import ResourceSpecification
from prefect.exceptions import ObjectAlreadyExists
from prefect.schedules import Cron
from prefect.settings import PREFECT_API_URL, get_current_settings

from geoseg.errors import DeploymentError

DEFAULT_FILE = Path("flows") / "prefect.yaml"
POOL_TYPE = "process"

HEARTBEAT_ENV = "PREFECT_FLOWS_HEARTBEAT_FREQUENCY"
"""The setting of a flow run's heartbeat period in seconds (Prefect's minimum is 30)."""
CRASH_TAG = "geoseg"
"""The tag every geoseg deployment carries; the crash automation watches its flow runs."""
CRASH_AUTOMATION = "geoseg: crash flow runs that stopped sending heartbeats"
MISSED_HEARTBEATS = 3
"""A run is declared Crashed after this many heartbeat periods without a heartbeat."""
FINAL_EVENTS = ("Completed", "Failed", "Cancelled", "Crashed")


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
    job_variables: Mapping[str, Any] | None = None
    """The work pool's job variables for its runs (``env``: the flow run's environment)."""

    @property
    def flow_file(self) -> str:
        return self.entrypoint.split(":", 1)[0]

    @property
    def heartbeat_s(self) -> int:
        """Seconds between its flow runs' heartbeats: its env's, else this process's setting."""
        env = (self.job_variables or {}).get("env") or {}
        value = env.get(HEARTBEAT_ENV)
        if value is None:
            value = get_current_settings().flows.heartbeat_frequency or 180
        seconds = int(value)
        if seconds < 30:  # Prefect refuses the setting below 30: the run would not start
            raise ValueError(f"{HEARTBEAT_ENV} {seconds} < 30")
        return seconds


@dataclass(frozen=True)
class Deployed:
    """A deployment created or updated: ``<flow name>/<deployment name>`` and its id."""

    full_name: str
    id: UUID
    work_pool: str
    schedules: tuple[str, ...]
    heartbeat_s: int = 0


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
            spec = DeploymentSpec(
                name=str(entry["name"]),
                entrypoint=str(entry["entrypoint"]),
                work_pool=str((entry.get("work_pool") or {})["name"]),
                crons=crons,
                parameters=dict(entry.get("parameters") or {}),
                description=entry.get("description"),
                tags=tuple(entry.get("tags") or ()),
                job_variables=dict((entry.get("work_pool") or {}).get("job_variables") or {}),
            )
        except (KeyError, TypeError, AttributeError) as exc:
            raise DeploymentError(
                f"{path}: deployment #{i + 1} lacks {exc} (each needs name, entrypoint, "
                "work_pool.name; schedules are a list of {cron, timezone})"
            ) from None
        try:
            spec.heartbeat_s  # noqa: B018 (checked here, used when deploying)
        except (TypeError, ValueError):
            raise DeploymentError(
                f"{path}: deployment {spec.name!r}: work_pool.job_variables.env.{HEARTBEAT_ENV} "
                'must be a whole number of seconds (at least 30), e.g. "60"'
            ) from None
        specs.append(spec)
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
        tags=list(dict.fromkeys([*spec.tags, CRASH_TAG])),
        job_variables=dict(spec.job_variables or {}),
        print_next_steps=False,
        ignore_warnings=True,
    )
    return Deployed(
        full_name=f"{flow.name}/{spec.name}",
        id=deployment_id,
        work_pool=work_pool,
        schedules=tuple(f"{cron} ({tz})" for cron, tz in spec.crons),
        heartbeat_s=spec.heartbeat_s,
    )


def crash_automation(
    within: dt.timedelta, *, tag: str = CRASH_TAG, name: str = CRASH_AUTOMATION
) -> AutomationCore:
    """The automation that sets flow runs tagged ``tag`` Crashed after ``within`` of silence.

    Prefect's recipe for "zombie" flow runs (docs: v3/advanced/detect-zombie-flows): a
    proactive trigger per flow run, started by its first heartbeat, expecting a heartbeat or
    a final state within ``within``; each heartbeat starts the window again
    (prefect/server/events/triggers.py special-cases a proactive trigger whose ``after`` and
    ``expect`` events are the same). The server evaluates proactive triggers every
    ``PREFECT_SERVER_EVENTS_PROACTIVE_GRANULARITY`` (5 s).
    """
    return AutomationCore(
        name=name,
        description=(
            f"Flow runs tagged {tag!r} whose process died stop sending heartbeats; after "
            f"{within.total_seconds():.0f} s without one they are set Crashed."
        ),
        trigger=EventTrigger(
            after={"prefect.flow-run.heartbeat"},
            expect={"prefect.flow-run.heartbeat", *(f"prefect.flow-run.{s}" for s in FINAL_EVENTS)},
            match=ResourceSpecification({"prefect.resource.id": ["prefect.flow-run.*"]}),
            match_related=ResourceSpecification(
                {"prefect.resource.role": "tag", "prefect.resource.id": f"prefect.tag.{tag}"}
            ),
            for_each={"prefect.resource.id"},
            posture=Posture.Proactive,
            threshold=1,
            within=within,
        ),
        actions=[
            ChangeFlowRunState(
                state=StateType.CRASHED,
                message=f"No heartbeat for {within.total_seconds():.0f} s: the flow run's "
                "process (its worker or machine) is gone. Run it again: finished scenes are "
                "cached.",
            )
        ],
    )


def ensure_automation(automation: AutomationCore) -> UUID:
    """Create ``automation``, or update the one of the same name; returns its id."""
    with get_client(sync_client=True) as client:
        existing = client.read_automations_by_name(name=automation.name)
        if existing:
            client.update_automation(automation_id=existing[0].id, automation=automation)
            return existing[0].id
        return client.create_automation(automation=automation)


def ensure_crash_automation(heartbeat_s: int, *, tag: str = CRASH_TAG) -> UUID:
    """The crash automation for flow runs with heartbeats every ``heartbeat_s`` seconds."""
    within = dt.timedelta(seconds=MISSED_HEARTBEATS * heartbeat_s)
    name = CRASH_AUTOMATION if tag == CRASH_TAG else f"{CRASH_AUTOMATION} ({tag})"
    return ensure_automation(crash_automation(within, tag=tag, name=name))


def deploy_from_file(
    path: Path,
    *,
    project_dir: Path,
    pool: str | None = None,
    only: Sequence[str] = (),
    params: Mapping[str, Any] | None = None,
) -> list[Deployed]:
    """Create or update the deployments of ``path`` (those named in ``only``, if given).

    Also creates or updates the crash automation (module docstring) for the slowest
    heartbeat among them. Needs a Prefect server (``PREFECT_API_URL``); without one it fails
    with what to do.
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
        deployed = [
            deploy_spec(s, project_dir=project_dir.resolve(), pool=pool, params=params or {})
            for s in chosen
        ]
        ensure_crash_automation(max(s.heartbeat_s for s in chosen))
        return deployed
    except (httpx.HTTPError, OSError) as exc:
        raise DeploymentError(
            f"cannot reach the Prefect server at {PREFECT_API_URL.value()} ({exc}); start it "
            "(prefect server start) or fix PREFECT_API_URL"
        ) from None
