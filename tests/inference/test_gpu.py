"""GPU path (bf16 autocast, channels_last, pinned copies, blending on the device): run where CUDA
exists, skipped here."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from geoseg.inference.predictor import Predictor
from geoseg.models.package import load_package

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine"),
]


def test_cuda_bf16_agrees_with_cpu_float32(demo_model: Path) -> None:
    package = load_package(demo_model)
    rng = np.random.default_rng(0)
    mean = np.array(package.metadata.normalization.mean, dtype=np.float32)[None, :, None, None]
    raw = (mean * rng.uniform(0.5, 1.5, size=(4, 4, 256, 256))).astype(np.float32)
    valid = np.ones((4, 256, 256), dtype=bool)
    cpu = Predictor(package, torch.device("cpu"))(raw, valid)
    gpu = Predictor(package, torch.device("cuda"))(raw, valid)
    assert gpu.shape == cpu.shape
    assert (gpu.argmax(1) == cpu.argmax(1)).mean() > 0.99
    assert np.abs(gpu - cpu).max() < 0.1  # bf16 has ~3 significant digits


def test_batch_size_fills_the_device(demo_model: Path) -> None:
    predictor = Predictor(load_package(demo_model), torch.device("cuda"))
    batch = predictor.fill_device_batch_size(512, 4)
    assert batch is not None and 1 <= batch <= 64
    assert (
        Predictor(load_package(demo_model), torch.device("cpu")).fill_device_batch_size(512, 4)
        is None
    )


def test_predict_scene_blending_on_cuda_agrees_with_the_cpu_numpy_path(
    scene_512, demo_model: Path, tmp_path: Path
) -> None:
    """predict_scene on CUDA with the band and class/confidence on the device (the default
    there) against the CPU float32 numpy path, and against the numpy path on CUDA."""
    import rasterio

    from geoseg.inference.scene import SceneWindow, predict_scene
    from geoseg.inference.settings import PredictSettings
    from geoseg.io.aoi import aoi_in_crs, aoi_window, read_aoi
    from geoseg.io.raster import open_scene

    scene = open_scene(scene_512.image_path)
    geom = aoi_in_crs(read_aoi(scene_512.aoi_path), scene.grid.crs)
    target = SceneWindow(scene, aoi_window(geom, scene.grid), geom)
    package = load_package(demo_model)

    def predict(device: str, name: str, **extra) -> tuple[np.ndarray, np.ndarray]:
        settings = PredictSettings(tile_px=128, overlap_px=32, batch_size=8, **extra)
        predict_scene(
            target,
            Predictor(package, torch.device(device)),
            settings,
            classes_path=tmp_path / f"{name}_c.tif",
            confidence_path=tmp_path / f"{name}_p.tif",
        )
        with (
            rasterio.open(tmp_path / f"{name}_c.tif") as c,
            rasterio.open(tmp_path / f"{name}_p.tif") as p,
        ):
            return c.read(1), p.read(1).astype(int)

    cpu_cls, cpu_conf = predict("cpu", "cpu")
    gpu_cls, gpu_conf = predict("cuda", "gpu")  # blend_on_device None: on the device
    host_cls, host_conf = predict("cuda", "host", blend_on_device=False)
    inside = cpu_cls != 255
    assert inside.mean() > 0.3
    # where a pixel is nodata depends only on the input mask and the AOI, not on the model
    np.testing.assert_array_equal(gpu_cls == 255, ~inside)
    assert (gpu_cls[inside] == cpu_cls[inside]).mean() > 0.99
    assert np.abs(gpu_conf - cpu_conf).max() <= 10  # bf16: probabilities within 0.1
    assert (gpu_conf[~inside] == 0).all()
    # same model outputs on the GPU: device blending and host blending nearly agree (cuDNN may
    # pick other algorithms per run, so not bit for bit)
    assert (gpu_cls[inside] == host_cls[inside]).mean() > 0.999
    assert np.percentile(np.abs(gpu_conf - host_conf), 99.9) <= 1


def test_cuda_model_step_times_the_model_with_events(demo_model: Path) -> None:
    """On CUDA the device model step records CUDA events; the probabilities stay there."""
    from geoseg.inference.model_step import CudaModelStep, model_step
    from tests.support.inference import random_reads

    predictor = Predictor(load_package(demo_model), torch.device("cuda"))
    step = model_step(predictor, on_device=True)
    assert isinstance(step, CudaModelStep)
    reads = random_reads(predictor, n=4, tile=256)
    out = step(reads)
    assert out.probs.device.type == "cuda"
    assert out.probs.shape == (4, len(predictor.package.class_ids), 256, 256)
    assert 0 < out.seconds() < 60
    host = model_step(predictor, on_device=False)(reads)
    assert isinstance(host.probs, np.ndarray)
    assert (out.probs.argmax(1).cpu().numpy() == host.probs.argmax(1)).mean() > 0.99


def test_uint16_tiles_staged_as_stored_give_the_float32_result(demo_model: Path) -> None:
    """CUDA batches are copied in their stored dtype and made float32 on the device."""
    predictor = Predictor(load_package(demo_model), torch.device("cuda"))
    rng = np.random.default_rng(1)
    raw = rng.integers(0, 4000, size=(2, 4, 256, 256), dtype=np.uint16)
    valid = rng.random((2, 256, 256)) > 0.1
    assert np.array_equal(predictor(raw, valid), predictor(raw.astype(np.float32), valid))
