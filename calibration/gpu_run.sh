#!/usr/bin/env bash
# One prepared GPU calibration: benchmark the presets' kernels with `moesim calibrate run --device cuda`,
# write the profile (with provenance) and print it, its fit and its validation against H800 measurements.
#
#   calibration/gpu_run.sh                 # full sweep, profile named after the GPU (e.g. profiles/h200-measured.json)
#   QUICK=1 calibration/gpu_run.sh         # 8 cases per op class, fewer repeats (a few minutes less)
#   OUT=/some/dir calibration/gpu_run.sh   # where the profile goes (default calibration/profiles)
#
# Needs a CUDA build of torch already installed (this script never installs torch: an unpinned torch pulls
# a multi-GB build). Expected time on one H100/H200-class GPU: about 2-4 minutes full, 1-2 quick.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
OUT_DIR=${OUT:-calibration/profiles}
mkdir -p "$OUT_DIR"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
moesim() { "$PY" -c 'import sys; sys.argv[0] = "moesim"; from moesim.simulator.cli import main; main()' "$@"; }

"$PY" - <<'PY'
import sys
missing = [m for m in ("torch", "pydantic", "typer", "rich", "simpy", "numpy", "networkx", "yaml", "plotly")
           if __import__("importlib.util").util.find_spec(m) is None]
if missing:
    sys.exit(f"gpu_run.sh: install first (python: {sys.executable}): {', '.join(missing)}; torch must be a CUDA build")
import torch
if not torch.cuda.is_available():
    sys.exit(f"gpu_run.sh: torch {torch.__version__} sees no CUDA device")
p = torch.cuda.get_device_properties(0)
print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, {torch.cuda.device_count()} x {p.name}, "
      f"{p.multi_processor_count} SMs, {p.total_memory / 1e9:.0f} GB")
PY
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,clocks.sm,power.draw \
  --format=csv || true

NAME=$("$PY" -c 'import torch; n = torch.cuda.get_device_name(0).lower(); print(next((k for k in ("h800", "h200", "h100", "b200", "a100") if k in n), n.split()[-1]))')
PROFILE="$OUT_DIR/$NAME-measured.json"   # never the published built-in (profiles/h800.json)
start=$(date +%s)
COLUMNS=140 moesim calibrate run --device cuda ${QUICK:+--quick} -o "$PROFILE" --force
echo "calibration took $(( $(date +%s) - start )) s"
COLUMNS=160 moesim calibrate show "$PROFILE"
COLUMNS=160 moesim calibrate compare h800 "$PROFILE"
COLUMNS=160 moesim calibrate validate --profile "$PROFILE"
