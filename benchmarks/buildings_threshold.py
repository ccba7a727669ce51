"""Would a building threshold other than argmax help? Chosen on the validation blocks.

    python benchmarks/buildings_threshold.py outputs/buildings/zanzibar-s0.geoseg \
        outputs/buildings/zanzibar-s1.geoseg outputs/buildings/zanzibar-s2.geoseg

Each package (a `make buildings` model) predicts its whole region with the tiled prediction
of ``geoseg evaluate --tta``; a pixel is called Building where the building probability
exceeds t (argmax is t = 0.5 with two classes). Building IoU per t is printed on the blocks
the package held out for validation inside the west (the seed's split, as in training) and on
the east. Only the validation row may choose t; the east row is reported. The probability is
read back from the confidence raster (the winning class's probability in whole percent).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import rasterio
import shapely
import torch
from buildings import DATA, split_col  # beside this file

from geoseg.geo.window import PixelWindow, parse_window
from geoseg.inference.predictor import Predictor
from geoseg.inference.scene import SceneWindow, predict_scene
from geoseg.inference.settings import predict_settings_for
from geoseg.io.raster import open_scene
from geoseg.models.package import ModelPackage, load_package
from geoseg.training.data import SplitSettings, split_blocks

THRESHOLDS = (0.3, 0.4, 0.5, 0.6, 0.7)
BUILDING = 2
"""Label and class id of Building in fair-buildings (0 nodata, 1 Background)."""


def building_probability(package: ModelPackage, image: Path, threads: int) -> np.ndarray:
    """P(Building) over the whole image, from the class and confidence rasters of a TTA run."""
    torch.set_num_threads(threads)
    scene = open_scene(image)
    window = PixelWindow(0, 0, *scene.grid.shape)
    target = SceneWindow(scene, window, shapely.box(*scene.grid.window_bounds(window)))
    predictor = Predictor(package, torch.device("cpu"), tta=True)
    with tempfile.TemporaryDirectory(prefix="geoseg-threshold-") as tmp:
        classes_path, confidence_path = Path(tmp) / "classes.tif", Path(tmp) / "confidence.tif"
        predict_scene(
            target,
            predictor,
            predict_settings_for(package, tile_size=None, overlap=None, batch_size=None),
            classes_path=classes_path,
            confidence_path=confidence_path,
        )
        with rasterio.open(classes_path) as c, rasterio.open(confidence_path) as p:
            classes, confidence = c.read(1), p.read(1) / 100.0
    return np.where(classes == BUILDING, confidence, 1.0 - confidence)


def validation_mask(package: ModelPackage, shape: tuple[int, int]) -> np.ndarray:
    """The blocks the package's training held out: its recorded window and split (scene 0)."""
    training = package.metadata.training
    window = parse_window(training["scenes"][0]["window"], shape)
    split = training["split"]
    settings = SplitSettings(split["block_px"], split["val_fraction"], split["seed"])
    mask = np.zeros(shape, dtype=bool)
    for block in split_blocks(window, settings, salt=0)[1]:
        mask[block.row_off : block.row_end, block.col_off : block.col_end] = True
    return mask


def building_iou(probability: np.ndarray, labels: np.ndarray, where: np.ndarray, t: float) -> float:
    scored = where & (labels > 0)
    predicted, reference = probability[scored] > t, labels[scored] == BUILDING
    return float((predicted & reference).sum() / max((predicted | reference).sum(), 1))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("packages", nargs="+", type=Path)
    parser.add_argument("--region", choices=("zanzibar", "kampala"), default="zanzibar")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    image = DATA / args.region / "image.tif"
    with rasterio.open(DATA / args.region / "labels.tif") as src:
        labels = src.read(1)
    east = np.zeros(labels.shape, dtype=bool)
    east[:, split_col(args.region) :] = True
    print("| package | blocks | " + " | ".join(f"t = {t}" for t in THRESHOLDS) + " |")
    print("| --- | --- |" + " --- |" * len(THRESHOLDS))
    for path in args.packages:
        package = load_package(path)
        probability = building_probability(package, image, args.threads)
        for name, where in (
            ("validation", validation_mask(package, labels.shape)),
            ("east", east),
        ):
            ious = [building_iou(probability, labels, where, t) for t in THRESHOLDS]
            print(f"| {path.stem} | {name} | " + " | ".join(f"{v:.3f}" for v in ious) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
