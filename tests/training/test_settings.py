"""`TrainSettings`: errors name the option; the Zion configs; command-line text forms."""

from __future__ import annotations

from pathlib import Path

import pytest

from geoseg.errors import ConfigError
from geoseg.training.loop import train
from geoseg.training.settings import load_train_settings
from tests.support.cli import REPO
from tests.support.training import ZION, needs_zion, tiny_settings


def test_settings_errors_name_the_option(scenes, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--loss: unknown loss 'hinge'"):
        tiny_settings(scenes, tmp_path / "m.geoseg", loss="hinge")
    config = tmp_path / "bad.yaml"
    config.write_text("tile_sise: 64\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: --tile-sise: unknown option"):
        load_train_settings(config)
    with pytest.raises(ConfigError, match=r"--encoder applies to smp-\* and fcn\*"):
        train(tiny_settings(scenes, tmp_path / "m.geoseg", encoder="resnet18"))
    with pytest.raises(ConfigError, match="--image given 2 times but --labels 1"):
        train(tiny_settings(scenes, tmp_path / "m.geoseg", labels=[scenes[0].labels_path]))


@needs_zion
def test_zion_configs_share_everything_but_the_loss() -> None:
    names = ("zion-ce", "zion-weighted-ce", "zion-focal")
    configs = [load_train_settings(REPO / "configs" / f"{n}.yaml") for n in names]
    assert [c.loss for c in configs] == ["ce", "weighted-ce", "focal"]
    for c in configs:
        assert c.image == [ZION / "image.tif"] or c.image[0].resolve() == ZION / "image.tif"
        assert c.window == ["cols=0:677"] and c.label_nodata == [0]
        assert c.out.resolve().parent == REPO / "outputs" / "zion"
    same = {"loss", "out", "name", "class_weighting", "weight_power", "max_class_weight"}
    dumps = [c.model_dump(exclude=same) for c in configs]
    assert dumps[0] == dumps[1] == dumps[2]
