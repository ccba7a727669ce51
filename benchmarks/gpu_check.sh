#!/usr/bin/env bash
# One-shot GPU check (CUDA tests, throughput, demo run) for a remote CUDA machine.
#
# Expects the carried wheels already installed and on PYTHONPATH, e.g.
#   python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
#       --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD
# Each step's output goes to $OUT/<step>.log (7 files at most, the device tool returns 8) (default OUT: ./gpu_check_out). Every step runs
# under `timeout`: its own limit, cut to what is left of GPU_CHECK_BUDGET_S (whole script).
# .whl/extra/typing_extensions is installed into GPU_CHECK_SITE only if the machine's is older
# than pydantic's minimum (so a newer one there is never shadowed).
# Local dry run on CPU: GPU_CHECK_DEVICE=cpu GPU_CHECK_SIZE=1024 bash benchmarks/gpu_check.sh
# GPU_CHECK_STEPS="02_pytest_gpu 03_throughput_smp_unet" runs only the steps named (default:
# all but 06_vectorize, the 10k x 10k vectorize benchmark on 8 Dask workers).
set -u

OUT=${OUT:-$PWD/gpu_check_out}
DEVICE=${GPU_CHECK_DEVICE:-cuda}
SIZE=${GPU_CHECK_SIZE:-8192}
PY=${GPU_CHECK_PYTHON:-python3}
BUDGET=${GPU_CHECK_BUDGET_S:-540}
SITE=${GPU_CHECK_SITE:-/tmp/site}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
export PYTHONPATH=${PYTHONPATH:-$PWD}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/gpu_check.XXXXXX")
START=$(date +%s)
declare -a SUMMARY=()

STEPS=${GPU_CHECK_STEPS:-01_env 02_pytest_gpu 03_throughput_smp_unet 04_throughput_demo 05_demo_run 07_scene_10980}

# step NAME LIMIT_S CMD...: run CMD under `timeout`, tee its output into $OUT/NAME.log
step() {
    local name=$1 limit=$2
    shift 2
    [[ " $STEPS " == *" $name "* ]] || return 0
    local t0=$SECONDS rc left=$((BUDGET - $(date +%s) + START))
    if ((left < 20)); then
        echo "=== [$name] SKIPPED: ${left}s of the ${BUDGET}s budget left" | tee "$OUT/$name.log"
        SUMMARY+=("$name skipped")
        return
    fi
    ((limit > left)) && limit=$left
    echo "=== [$name] (limit ${limit}s, at +$(($(date +%s) - START))s): $*" | tee "$OUT/$name.log"
    timeout -k 10 "$limit" "$@" 2>&1 | tee -a "$OUT/$name.log"
    rc=${PIPESTATUS[0]}
    echo "=== [$name] rc=$rc in $((SECONDS - t0))s" | tee -a "$OUT/$name.log"
    SUMMARY+=("$name rc=$rc $((SECONDS - t0))s")
}

# pydantic 2.14 needs typing_extensions>=4.16: carried, installed only where the machine's is older
if "$PY" -c "import sys, importlib.metadata as m
v = tuple(int(x) for x in m.version('typing_extensions').split('.')[:2]); sys.exit(v < (4, 16))"; then
    SUMMARY+=("typing_extensions: the machine's own (>= 4.16)")
else
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target "$SITE" .whl/extra/typing_extensions-*.whl
    SUMMARY+=("typing_extensions: machine's older than 4.16, carried 4.16 installed, rc=$?")
fi

step 01_env 60 bash -c "nvidia-smi -L; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv; nproc; $PY - <<'EOF'
import importlib, sys
import torch
print('python', sys.version.split()[0], 'torch', torch.__version__,
      'cuda', torch.cuda.is_available(),
      torch.cuda.get_device_name(0) if torch.cuda.is_available() else '-')
for name in ('numpy', 'torchvision', 'timm', 'safetensors', 'huggingface_hub', 'typing_extensions',
             'pydantic', 'rasterio', 'pyogrio', 'pyproj', 'shapely', 'affine',
             'segmentation_models_pytorch', 'dask', 'distributed', 'tornado', 'scipy', 'typer',
             'rich', 'PIL', 'yaml', 'geoseg.pipeline.run', 'geoseg.cli'):
    try:
        m = importlib.import_module(name)
        print(f'{name:30s} {str(getattr(m, \"__version__\", \"\")):14s} {m.__file__}')
    except Exception as exc:
        print(f'{name:30s} IMPORT FAILED: {exc!r}')
import rasterio, pyogrio
print('gdal (rasterio)', rasterio.__gdal_version__, '| gdal (pyogrio)', pyogrio.__gdal_version_string__)
EOF"

step 02_pytest_gpu 240 "$PY" -m pytest -q -p no:cacheprovider tests/inference/test_gpu.py

step 03_throughput_smp_unet 300 "$PY" benchmarks/throughput.py --device "$DEVICE" \
    --arch smp-unet --encoder resnet34 --tile 512 --overlap 32 --batch 16 --size "$SIZE"

step 04_throughput_demo 150 "$PY" benchmarks/throughput.py --device "$DEVICE"

step 05_demo_run 120 "$PY" -c "from geoseg.cli import main; main()" demo --device "$DEVICE" \
    --out "$WORK/demo_out"
# the run's record (settings, versions, timings) of the demo, when it got that far
cp "$WORK/demo_out/run.json" "$OUT/05_demo_run.json" 2>/dev/null

# issue 16's end-to-end target: a 10980 x 10980 4-band scene, GeoTIFF to styled GeoPackage
# (whole_run_s, vectorization included) with U-Net/ResNet-34 and the batch filling the GPU
step 07_scene_10980 300 "$PY" benchmarks/throughput.py --device "$DEVICE" \
    --arch smp-unet --encoder resnet34 --tile 512 --overlap 32 --batch 0 --size 10980 --seconds 5 --repeats 1

step 06_vectorize 200 "$PY" benchmarks/vectorize.py --size 10000 --workers 8 --keep "$WORK/vec"

rm -rf "$WORK"
printf '%s\n' "=== summary (total $(($(date +%s) - START))s)" "${SUMMARY[@]}" | tee "$OUT/00_summary.log"
