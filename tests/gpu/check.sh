#!/usr/bin/env bash
# The GPU check: GPU-marked tests, ResNet-20 training img/s, MNIST MLP estimator models/s, LUT fit time -> one JSON.
# Under 10 minutes on a machine with a CUDA device; without one, a fast degraded run at tiny sizes ("mode":
# "cpu-degraded" in the JSON). Exit status 0 when every part passed.
#   tests/gpu/check.sh [out.json]        (default results/gpu_check.json; PYTHON=... to pick the interpreter)
set -euo pipefail
cd "$(dirname "$0")/../.."
python=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}   # the degraded mode shares CPU cores: threads must not spin
exec timeout 570 "$python" tests/gpu/check.py --out "${1:-results/gpu_check.json}"
