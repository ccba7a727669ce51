# geoseg: `make demo` runs the embedded default, `make test` runs ruff + the test suite.
# Both create .venv/ on first use and reuse it afterwards (torch is large: install once).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
BASE   := $(VENV)/.installed-base
DEV    := $(VENV)/.installed-dev
export HF_HUB_OFFLINE := 1
export PREFECT_SERVER_ANALYTICS_ENABLED := false

.PHONY: demo test lint gdal-bin demo-model clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(BASE): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e .
	touch $@

$(DEV): pyproject.toml $(BASE)
	$(BIN)/pip install -q -e '.[flows,dev]'
	touch $@

demo: $(BASE)
	$(BIN)/geoseg demo --out demo_out

# GDAL's own CLI (gdal_polygonize.py, gdalinfo) is what the tests compare against.
gdal-bin:
	@{ command -v gdal_polygonize.py && /usr/bin/python3 -c "import osgeo_utils"; } >/dev/null 2>&1 || { \
	  echo "installing Debian's gdal-bin (GDAL CLI used as the reference in tests)"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo -n ); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq gdal-bin python3-gdal >/dev/null; }

lint: $(DEV)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: $(DEV) gdal-bin lint
	$(BIN)/pytest -q --timeout=900

# Rebuild the shipped demo model from synthetic scenes (seeds 1 and 2; the demo uses seed 7).
demo-model: $(BASE)
	$(BIN)/geoseg synth --out build/train1 --size 1024 --seed 1
	$(BIN)/geoseg synth --out build/train2 --size 1024 --seed 2
	$(BIN)/geoseg train --image build/train1/scene.tif --labels build/train1/labels.tif \
	  --image build/train2/scene.tif --labels build/train2/labels.tif \
	  --arch smp-unet --encoder tu-mobilenetv3_small_100 --decoder-channels 64,32,24,16,8 \
	  --epochs 20 --steps-per-epoch 40 --batch-size 8 --tile-size 256 --lr 2e-3 --seed 0 \
	  --device cpu --name geoseg-demo --out geoseg/data/demo.geoseg

clean:
	rm -rf demo_out build .pytest_cache .ruff_cache
