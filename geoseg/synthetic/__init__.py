"""Deterministic synthetic landscapes: a 4-band image, its land-cover labels and an AOI.

A scene is described by a small `LandscapeSpec` (river and road polylines, lake and town
centres, field-grid parameters, a seed) and drawn by `render`, which returns any pixel window.
Every pixel is a pure function of (spec, row, col): randomness comes from integer hashes of the
pixel or lattice coordinates (a splitmix64 finalizer in numpy uint64 arithmetic), never from a
sequential random stream, and the per-pixel path uses only exact IEEE operations (+, -, *, /,
sqrt, floor). So a window is bit-identical to the same crop of a full render, and a 20k x 20k
scene can be streamed block by block with memory that grows with the block, not the scene.

The classes are learnable from spectra plus local texture but not trivially: there is
per-pixel noise, per-field and per-patch spectral variation, canopy texture, crop rows and
mixed pixels along every boundary.

Modules, in dependency order: `noise` (integer hashes, value noise), `spec` (the scene
description drawn from a seed), `geometry` (sub-windows, clamped line distances), `layers` (the
painted layers), `paint` (`render`, whole scenes in memory), `files` (GeoTIFFs and the AOI).
"""

from geoseg.synthetic.files import (
    SyntheticScene,
    aoi_polygon,
    write_aoi_geojson,
    write_scene,
    write_synthetic_scene,
)
from geoseg.synthetic.paint import Landscape, make_landscape, render
from geoseg.synthetic.spec import (
    BAND_NAMES,
    BUILT_UP,
    CROPLAND,
    FOREST,
    GRASSLAND,
    SYNTHETIC_CLASSES,
    WATER,
    LandscapeSpec,
    make_spec,
)

__all__ = [
    "BAND_NAMES",
    "BUILT_UP",
    "CROPLAND",
    "FOREST",
    "GRASSLAND",
    "SYNTHETIC_CLASSES",
    "WATER",
    "Landscape",
    "LandscapeSpec",
    "SyntheticScene",
    "aoi_polygon",
    "make_landscape",
    "make_spec",
    "render",
    "write_aoi_geojson",
    "write_scene",
    "write_synthetic_scene",
]
