"""flows/prefect.yaml and `flows.deploy`: the declared deployments, their parameters, heartbeat
settings, and what deploying them creates on a real Prefect server (the crash automation)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

pytest.importorskip("prefect", reason="Prefect is not installed: pip install 'geoseg[flows]'")

from prefect.client.orchestration import get_client

from flows.deploy import (
    CRASH_AUTOMATION,
    CRASH_TAG,
    HEARTBEAT_ENV,
    MISSED_HEARTBEATS,
    deploy_from_file,
    read_specs,
)
from flows.segment import SegmentSettings
from geoseg.errors import DeploymentError
from tests.support.prefect_server import REPO

PREFECT_YAML = REPO / "flows" / "prefect.yaml"


def test_prefect_yaml_declares_the_folder_the_stac_and_the_training_deployments() -> None:
    specs = {s.name: s for s in read_specs(PREFECT_YAML)}
    assert sorted(specs) == ["nightly", "nightly-stac", "train"]
    for spec in specs.values():
        assert spec.work_pool == "geoseg" and CRASH_TAG in spec.tags
        assert spec.job_variables == {"env": {HEARTBEAT_ENV: "60"}}
        assert spec.heartbeat_s == 60
        assert (REPO / spec.flow_file).is_file()

    stac = specs["nightly-stac"]
    assert stac.entrypoint == "flows/segment.py:segment_aoi"
    assert stac.crons == (("0 3 * * *", "UTC"),)
    params = dict(stac.parameters or {})
    assert params["scenes"] == []
    settings = SegmentSettings(**params["settings"])
    assert settings.stac is not None and settings.stac.collections == ["sentinel-2-l2a"]
    end = dt.datetime(2026, 6, 15, 3, 0, tzinfo=dt.UTC)
    query = settings.stac_query(end)
    assert query is not None
    assert query.datetime == "2026-06-12T03:00:00Z/2026-06-15T03:00:00Z"
    assert query.max_cloud == 40 and query.api == settings.stac.api
    assert settings.mosaic and settings.prefer == "newest"  # one map of the window's items
    # the folder deployment is as it was
    nightly = dict(specs["nightly"].parameters or {})
    assert nightly["scenes"] == ["/data/scenes/*.tif"]
    assert SegmentSettings(**nightly["settings"]).newest == 3


@pytest.mark.parametrize("value", ["10", "soon"])
def test_a_bad_heartbeat_setting_is_refused_when_the_file_is_read(
    tmp_path: Path, value: str
) -> None:
    path = tmp_path / "prefect.yaml"
    path.write_text(
        "deployments:\n"
        "  - name: x\n"
        "    entrypoint: flows/segment.py:segment_aoi\n"
        "    work_pool:\n"
        "      name: p\n"
        f"      job_variables: {{env: {{{HEARTBEAT_ENV}: '{value}'}}}}\n"
    )
    with pytest.raises(DeploymentError, match=r"must be a whole number of seconds \(at least 30\)"):
        read_specs(path)


@pytest.mark.slow
def test_deploying_creates_the_deployments_and_the_crash_automation(prefect_api: str) -> None:
    deployed = deploy_from_file(
        PREFECT_YAML, project_dir=REPO, pool="geoseg-deploy-test", only=["nightly-stac", "train"]
    )
    assert [d.full_name for d in deployed] == ["segment-aoi/nightly-stac", "train-model/train"]
    with get_client(sync_client=True) as client:
        deployment = client.read_deployment_by_name("segment-aoi/nightly-stac")
        assert deployment.job_variables == {"env": {HEARTBEAT_ENV: "60"}}
        assert CRASH_TAG in deployment.tags
        assert [s.schedule.cron for s in deployment.schedules] == ["0 3 * * *"]
        assert deployment.parameters["settings"]["stac_days"] == 3
        (automation,) = client.read_automations_by_name(CRASH_AUTOMATION)
    trigger = automation.trigger
    assert trigger.posture == "Proactive"
    assert trigger.after == {"prefect.flow-run.heartbeat"}
    assert "prefect.flow-run.heartbeat" in trigger.expect
    assert {"prefect.flow-run.Completed", "prefect.flow-run.Crashed"} <= trigger.expect
    assert trigger.within == dt.timedelta(seconds=MISSED_HEARTBEATS * 60)
    assert trigger.for_each == {"prefect.resource.id"}
    assert automation.actions[0].type == "change-flow-run-state"
    assert automation.actions[0].state == "CRASHED"

    # deploying again updates the one automation instead of adding a second
    deploy_from_file(PREFECT_YAML, project_dir=REPO, pool="geoseg-deploy-test", only=["train"])
    with get_client(sync_client=True) as client:
        assert len(client.read_automations_by_name(CRASH_AUTOMATION)) == 1
