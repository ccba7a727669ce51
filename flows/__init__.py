"""Prefect flows of geoseg: `segment_aoi`, `train_model`, and the deployments of prefect.yaml.

Only this package imports Prefect; the flows call the same `geoseg` library functions as
the CLI. `flows.deploy` also creates the automation that sets flow runs whose process died
(no heartbeat) Crashed.
"""
