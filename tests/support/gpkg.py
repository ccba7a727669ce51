"""GeoPackage layers in tests: reading one back, listing a folder, a class list for styles."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyogrio
import shapely
from pyogrio.raw import read as ogr_read

from geoseg.classes import ClassInfo

LAYER = "landcover"

STYLE_CLASSES = (
    ClassInfo(0, "water", "#1f78b4"),
    ClassInfo(1, "forest & <scrub>", "#33a02c"),
    ClassInfo(2, "urban", "#E31A1C"),
)
"""Three classes, one name to escape in XML and one colour in upper case."""


def read_layer(
    path: Path, layer: str = LAYER
) -> tuple[np.ndarray, dict[str, np.ndarray], dict[str, Any]]:
    """(geometries, columns by name, pyogrio's layer info) of one layer."""
    info = pyogrio.read_info(path, layer=layer)
    _, _, wkb, fields = ogr_read(path, layer=layer)
    return shapely.from_wkb(wkb), dict(zip(info["fields"], fields, strict=True)), info


def listing(folder: Path) -> list[str]:
    """Sorted names in ``folder`` (temp files included)."""
    return sorted(p.name for p in folder.iterdir())
