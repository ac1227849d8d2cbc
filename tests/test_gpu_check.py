"""tests/gpu/check.sh works where the tests run: without a CUDA device it runs its degraded mode and writes the
same JSON a GPU machine gets."""

import json
import os
import subprocess
import sys

from conftest import REPO


def test_gpu_check_writes_every_part_in_one_json(tmp_path):
    import torch

    out = tmp_path / "gpu_check.json"
    proc = subprocess.run(["bash", str(REPO / "tests/gpu/check.sh"), str(out)], capture_output=True, text=True,
                          timeout=570, env={**os.environ, "PYTHON": sys.executable})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["ok"] and result["failed_parts"] == []
    assert result["mode"] == ("gpu" if torch.cuda.is_available() else "cpu-degraded")
    tests = result["gpu_tests"]
    assert tests["tests"] >= 4 and tests["failures"] == tests["errors"] == 0
    if not torch.cuda.is_available():
        assert tests["skipped"] == tests["tests"]
    assert result["resnet20_training"]["images_per_s"] > 0
    assert result["resnet20_training"]["steps"] == result["sizes"]["resnet_steps"]
    assert result["mlp_estimator"]["models_per_s"] > 0
    assert result["mlp_estimator"]["models"] == result["sizes"]["mlp_models"]
    assert result["lut_fit"]["fit_s"] > 0 and 0.5 < result["lut_fit"]["test_accuracy"] <= 1
