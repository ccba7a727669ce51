"""Settings of a run: validated objects built from CLI options or a flow's parameters.

Plain data only (pydantic; importing this module imports no torch). Unset tile/overlap/batch
values fall back to the model package's defaults, resolved by `resolve_predict_settings` once
the package is loaded.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from geoseg.inference.precision import Precision
from geoseg.inference.settings import PredictSettings, predict_settings_for
from geoseg.inference.stitch import BlendKind
from geoseg.sources.masks import parse_cloud_mask
from geoseg.sources.options import SourceOptions
from geoseg.sources.search import StacSearch
from geoseg.vectorize import DEFAULT_BLOCK_PX, VectorizeOptions

if TYPE_CHECKING:
    from geoseg.models.package import ModelPackage

DEFAULT_OUT = Path("geoseg_out")


class RunOptions(BaseModel):
    """How scenes are predicted and vectorized: what `geoseg run` and the flows share.

    `RunSettings` adds the inputs and outputs of one run; the Prefect flow's
    ``SegmentSettings`` adds how the scenes are spread over Dask.
    """

    model_config = ConfigDict(frozen=True)

    device: str = Field("auto", description="auto, cpu or cuda")
    precision: Precision = Field(
        Precision.AUTO,
        description="auto (bf16 on CUDA, fp32 on the CPU), fp32, bf16 or fp16",
    )
    tile_size: int | None = Field(None, ge=16, description="tile size in px (package default)")
    overlap: int | None = Field(None, ge=0, description="tile overlap in px (package default)")
    batch_size: int | None = Field(
        None, ge=1, description="tiles per batch (default: fill the GPU, else the package value)"
    )
    blend: BlendKind = BlendKind.HANN
    tta: bool = Field(False, description="average the 8 flips/rotations of every tile")
    reader_threads: int | None = Field(
        None,
        ge=1,
        description="threads reading tiles, one GDAL handle each (default: one per CPU core, "
        "2 to 8)",
    )
    compile: bool = Field(False, description="torch.compile the model(s)")
    connectivity: int = Field(4, description="polygon connectivity: 4 or 8")
    block_size: int = Field(
        DEFAULT_BLOCK_PX, ge=1, description="vectorize the class raster in blocks of this many px"
    )
    min_area: float = Field(
        0.0, ge=0, description="merge regions smaller than this (m²) into their largest neighbour"
    )
    simplify: float = Field(
        0.0, ge=0, description="simplify polygon boundaries with this tolerance (m), 0 = none"
    )
    cloud_mask: str = Field(
        "auto",
        description="auto (the item's SCL / QA_PIXEL), none, or ASSET:V1,V2,... (values to drop)",
    )
    resample: bool = Field(
        True, description="resample scenes at another pixel size to the model GSD on read"
    )
    mosaic: bool = Field(
        False, description="also merge the scenes into one map of the AOI (OUT/mosaic/)"
    )
    crs: str | None = Field(
        None, description="the mosaic's projected CRS (default: the UTM zone of the AOI)"
    )
    prefer: Literal["confidence", "newest"] = Field(
        "confidence",
        description="where scenes overlap: the most confident valid pixel, or the newest scene's",
    )

    @field_validator("cloud_mask")
    @classmethod
    def _known_cloud_mask(cls, value: str) -> str:
        parse_cloud_mask(value)
        return value

    def source_options(self) -> SourceOptions:
        """How scene inputs are read: the parsed cloud mask and the resampling choice."""
        return SourceOptions(parse_cloud_mask(self.cloud_mask), self.resample)

    def run_options(self) -> dict[str, Any]:
        """These options as keywords of `RunSettings` (from a subclass with more fields)."""
        return {name: getattr(self, name) for name in RunOptions.model_fields}


class StacQuery(BaseModel):
    """A STAC API search for the scenes of a run (``--stac-api`` and friends)."""

    model_config = ConfigDict(frozen=True)

    api: str = Field(description="STAC API root URL")
    collections: list[str] = Field(min_length=1, description="collection ids to search")
    datetime: str | None = Field(None, description="RFC 3339 instant or interval a/b")
    max_cloud: float | None = Field(None, ge=0, le=100, description="max eo:cloud_cover, %")
    limit: int | None = Field(None, ge=1, description="use the newest N items found")

    def search(self) -> StacSearch:
        return StacSearch(
            self.api, tuple(self.collections), self.datetime, self.max_cloud, self.limit
        )


class RunSettings(RunOptions):
    """Everything one run needs; paths are checked when the run starts, not here."""

    aoi: Path = Field(description="AOI polygons: GeoJSON, GeoPackage or shapefile, any CRS")
    aoi_layer: str | None = Field(None, description="the AOI layer of a multi-layer file")
    scenes: list[str] = Field(
        default_factory=list,
        description="scene files, folders, glob patterns, STAC item files or URLs, remote rasters",
    )
    stac: StacQuery | None = Field(None, description="search a STAC API for the scenes")
    newest: int | None = Field(None, ge=1, description="keep the newest N scenes")
    models: list[Path] = Field(
        min_length=1, description="model package(s) (.geoseg); several are averaged (ensemble)"
    )
    out: Path = Field(DEFAULT_OUT, description="output folder")
    workers: int | None = Field(
        None,
        ge=0,
        description="Dask worker processes for scenes larger than one block (default: one per "
        "core where a cluster beats this process; 0: no Dask)",
    )
    dask_address: str | None = Field(
        None, description="vectorize on this running Dask scheduler (tcp://host:8786)"
    )

    @field_validator("scenes", mode="before")
    @classmethod
    def _scenes_as_text(cls, value: Any) -> Any:
        """Paths as text: URLs must never become `Path` objects (``//`` would fold)."""
        return [str(v) for v in value] if isinstance(value, list | tuple) else value

    @model_validator(mode="after")
    def _some_scenes(self) -> RunSettings:
        if not self.scenes and self.stac is None:
            raise ValueError("give scenes (--scenes) or a STAC search (--stac-api)")
        return self


def resolve_predict_settings(settings: RunSettings, package: ModelPackage) -> PredictSettings:
    """The run's prediction settings: its values where given, else the package's."""
    return predict_settings_for(
        package,
        tile_size=settings.tile_size,
        overlap=settings.overlap,
        batch_size=settings.batch_size,
        blend=settings.blend,
        **({} if settings.reader_threads is None else {"reader_threads": settings.reader_threads}),
    )


def vectorize_options(settings: RunSettings) -> VectorizeOptions:
    """How a run vectorizes its class rasters: blocks, Dask, sieve and simplification."""
    return VectorizeOptions(
        block_size_px=settings.block_size,
        workers=settings.workers,
        dask_address=settings.dask_address,
        min_area_m2=settings.min_area,
        simplify_m=settings.simplify,
    )
