"""Segmentation models: the project's FCN and U-Net, the registry, and `.geoseg` packages."""

from pathlib import Path

DEMO_MODEL = Path(__file__).resolve().parents[1] / "data" / "demo.geoseg"
"""The small demo package shipped inside geoseg: the default model of `geoseg run` and the flow."""
