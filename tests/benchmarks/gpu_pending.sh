#!/usr/bin/env bash
# The GPU measurements still missing from the notebook headers, as one script (prints figures only).
#
#   bash tests/benchmarks/gpu_pending.sh            # from the repository root, on a CUDA machine
#
# 1. a4 `full`: the whole notebook (AT&T faces from LEAKLAB_DATA_DIR/att_faces, e.g. a copy of
#    ../shared/data/att_faces carried to the machine), its tables, time per part and peak memory.
# 2. a3 `full`: the stacked ResNet-20s' time per epoch and peak GPU memory, vmap against a loop
#    on CIFAR-shaped noise (the cost does not depend on the pixels, and the machine is offline:
#    no CIFAR-10); the TPR needs real CIFAR-10 and the whole notebook.
# Each step has its own time limit (11 minutes in all, inside a 15-minute device budget), so one
# failure or overrun still leaves the other figures. Run from the device tool with, e.g.,
#   carry=[".data"], command="LEAKLAB_DATA_DIR=$PWD/.data bash tests/benchmarks/gpu_pending.sh"
# after copying ../shared/data/att_faces to .data/att_faces (listed in .git/info/exclude).
set -u
export PYTHONPATH="$PWD/lib${PYTHONPATH:+:$PYTHONPATH}" LEAKLAB_PROGRESS=0 HF_HUB_OFFLINE=1
python - <<'EOF'
import importlib.util, torch
print("torch", torch.__version__, "cuda", torch.cuda.is_available(), torch.cuda.get_device_name() if torch.cuda.is_available() else "")
missing = [m for m in ("torchvision", "sklearn", "skimage", "tqdm", "pandas", "matplotlib", "safetensors")
           if importlib.util.find_spec(m) is None]
print("missing modules:", missing or "none")
EOF
echo "== a4 full: the whole notebook =="
timeout 360 python tests/benchmarks/gpu_check.py --notebook a4_model_inversion --profile full --epochs-measured 0
echo "== a3 full: one epoch of 65 stacked ResNet-20s (vmap), then the same as a loop =="
timeout 150 python tests/benchmarks/bench_stacked.py --profile full --epochs 1 --skip-sequential --random-inputs
timeout 150 python tests/benchmarks/bench_stacked.py --profile full --epochs 1 --skip-sequential --random-inputs --loop
