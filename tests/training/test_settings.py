"""`TrainSettings`: errors name the option; the Zion and fAIr configs; command-line text forms."""

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


def test_command_line_text_forms_equal_the_yaml_forms(tmp_path: Path) -> None:
    base = {"image": [tmp_path / "a.tif"], "labels": [tmp_path / "b.tif"], "out": tmp_path / "m"}
    text = load_train_settings(
        None,
        {
            **base,
            "label_map": "11=1,12=1,21=2",
            "bands": "1,2, 3,4",
            "band_names": "blue,green,red,nir",
            "decoder_channels": "64,32,16",
            "focal_alpha": "0.25,0.75",
        },
    )
    listed = load_train_settings(
        None,
        {
            **base,
            "label_map": {11: 1, 12: 1, 21: 2},
            "bands": [1, 2, 3, 4],
            "band_names": ["blue", "green", "red", "nir"],
            "decoder_channels": [64, 32, 16],
            "focal_alpha": [0.25, 0.75],
        },
    )
    assert text == listed
    assert text.label_map == {11: 1, 12: 1, 21: 2} and text.focal_alpha == [0.25, 0.75]
    # no number at all, or no name, is no value (the default)
    empty = load_train_settings(None, {**base, "bands": "", "band_names": ""})
    assert empty.bands is None and empty.band_names is None


def test_text_forms_that_do_not_parse_name_the_option(tmp_path: Path) -> None:
    base = {"image": [tmp_path / "a.tif"], "labels": [tmp_path / "b.tif"], "out": tmp_path / "m"}
    with pytest.raises(ConfigError, match=r"^--label-map '11:1': write e\.g\. 11=1,12=1$"):
        load_train_settings(None, {**base, "label_map": "11:1"})
    with pytest.raises(ConfigError, match=r"^--bands '1,b': expected comma-separated numbers$"):
        load_train_settings(None, {**base, "bands": "1,b"})
    config = tmp_path / "train.yaml"
    config.write_text("focal_alpha: 0.5,x\n")
    with pytest.raises(ConfigError, match=r"train\.yaml: --focal-alpha '0\.5,x': expected"):
        load_train_settings(config, base)


def test_fair_configs_share_the_recipe_and_train_only_on_the_west() -> None:
    """The three fAIr configs differ only in their data (and names) and in the choices made on
    one region's own validation blocks (Kampala's weight decay); each window is the western
    part up to the region's ``split_col`` (the east is what `make buildings` scores)."""
    import json

    fair = REPO.parent / "shared" / "data" / "fair-buildings"
    names = ("fair-zanzibar", "fair-kampala", "fair-both")
    configs = {n: load_train_settings(REPO / "configs" / f"{n}.yaml") for n in names}
    regions = {"fair-zanzibar": ["zanzibar"], "fair-kampala": ["kampala"]}
    regions["fair-both"] = regions["fair-zanzibar"] + regions["fair-kampala"]
    for name, config in configs.items():
        assert [p.resolve() for p in config.image] == [
            (fair / r / "image.tif").resolve() for r in regions[name]
        ]
        assert [p.resolve() for p in config.labels] == [
            (fair / r / "labels.tif").resolve() for r in regions[name]
        ]
        for region, window in zip(regions[name], config.window, strict=True):
            stats = fair / region / "stats.json"
            split = json.loads(stats.read_text())["split"]["split_col"] if stats.exists() else None
            assert window == f"cols=0:{split}" or (split is None and window.startswith("cols=0:"))
    data = {"image", "labels", "window", "out", "name", "val_block"}
    per_region = {"weight_decay"}
    dumps = [c.model_dump(exclude=data | per_region) for c in configs.values()]
    assert dumps[0] == dumps[1] == dumps[2]
    assert [c.weight_decay for c in configs.values()] == [0.0, 5e-4, 0.0]
