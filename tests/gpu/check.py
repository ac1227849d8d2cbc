"""The GPU check (run through tests/gpu/check.sh): the GPU-marked tests, ResNet-20 training throughput, the MNIST
MLP estimator's models per second (batched) and the LUT fit, in one JSON. Under 10 minutes on a machine with a
CUDA device; without one it runs the same steps at tiny sizes on the CPU (``"mode": "cpu-degraded"``), which says
only that the check itself works.

    python tests/gpu/check.py --out gpu_check.json [--mnist ../shared/data/mnist]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "src"))

# Per mode: ResNet-20 steps and batch; MLP estimator models, hidden sizes, epochs, training examples; LUT k, widths.
SIZES = {
    "gpu": {"resnet_steps": 300, "resnet_batch": 128, "mlp_models": 256, "mlp_hidden": [512, 256], "mlp_epochs": 10,
            "mlp_train": None, "lut_k": 8, "lut_widths": [1024] * 5, "lut_train": None},
    "cpu-degraded": {"resnet_steps": 2, "resnet_batch": 16, "mlp_models": 4, "mlp_hidden": [32], "mlp_epochs": 1,
                     "mlp_train": 2000, "lut_k": 4, "lut_widths": [32, 32], "lut_train": 2000},
}


def log(*args):
    print(*args, flush=True)


def gpu_tests(timeout_s: int) -> dict:
    """``pytest -m gpu`` in a subprocess; counts from its JUnit report (skipped ones need a CUDA device)."""
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "gpu.xml"
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-p", "no:cacheprovider",
                               f"--junitxml={report}", "tests"], cwd=ROOT, capture_output=True, text=True,
                              timeout=timeout_s)
        suite = ET.parse(report).getroot()
        suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
        counts = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
        failed = [case.get("classname", "") + "::" + case.get("name", "") for case in suite.iter("testcase")
                  if case.find("failure") is not None or case.find("error") is not None]
    return {**counts, "passed": counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"],
            "failed": failed, "returncode": proc.returncode, "wall_s": time.perf_counter() - start,
            "tail": "\n".join(proc.stdout.splitlines()[-5:])}


def resnet_throughput(device: str, steps: int, batch: int) -> dict:
    """ResNet-20 training on random CIFAR-sized images (speed does not depend on the pixels), the study's recipe."""
    from memgen.nets import build_net
    from memgen.runtime import seed_everything
    from memgen.train import train_classifier

    rng = np.random.default_rng(0)
    n = batch * min(steps, 40)
    x, y = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8), rng.integers(0, 10, n)
    seed_everything(0)
    warm = build_net("resnet20", num_classes=10)
    train_classifier(warm, x, y, epochs=1, batch_size=batch, device=device, max_steps=min(steps, 10),
                     show_progress=False)                                            # warm-up (kernels, cudnn)
    model = build_net("resnet20", num_classes=10)
    epochs = -(-steps // (n // batch))
    metrics = train_classifier(model, x, y, epochs=epochs, batch_size=batch, device=device, max_steps=steps,
                               show_progress=False)
    return {"steps": metrics["steps"], "batch_size": batch, "images_per_s": metrics["images_per_s"],
            "precision": metrics["precision"], "train_time_s": metrics["train_time_s"]}


def mnist(path: Path | None):
    from memgen.data import read_idx_dataset

    if path and path.is_dir():
        ds = read_idx_dataset(path)
        return ds.x_train, ds.y_train, ds.x_test, ds.y_test, "mnist"
    rng = np.random.default_rng(0)
    return (rng.integers(0, 256, (60000, 28, 28, 1), dtype=np.uint8), rng.integers(0, 10, 60000),
            rng.integers(0, 256, (10000, 28, 28, 1), dtype=np.uint8), rng.integers(0, 10, 10000), "random")


def mlp_models_per_s(data, device: str, models: int, hidden, epochs: int, n_train: int | None) -> dict:
    """The influence estimator's MNIST MLP, ``models`` trained at once on 70% subsets (the paper preset's recipe)."""
    import torch

    from memgen.influence.learners import MLPLearner

    x, y, xt, yt, source = data
    if n_train:
        x, y, xt, yt = x[:n_train], y[:n_train], xt[:n_train // 5], yt[:n_train // 5]
    learner = MLPLearner(x, y, xt, yt, hidden=hidden, epochs=epochs, lr=0.1, momentum=0.9, batch_size=128,
                         parallel=models, device=device)
    rng = np.random.default_rng(0)
    subsets = [np.sort(rng.choice(len(y), int(0.7 * len(y)), replace=False)) for _ in range(models)]
    learner.fit_predict(subsets[:1], [0])                                             # warm-up
    start = time.perf_counter()
    out = learner.fit_predict(subsets, list(range(models)))
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    return {"models": models, "hidden": list(hidden), "epochs": epochs, "n_train": len(y), "data": source,
            "seconds": seconds, "models_per_s": models / seconds,
            "mean_test_accuracy": float(out.correct_test.mean())}


def lut_fit(data, device: str, k: int, widths, n_train: int | None) -> dict:
    """A LUT network memorizing binary MNIST (classes 0-4 vs 5-9, threshold 128), the LUT study's task."""
    import torch

    from memgen.bits import binarize
    from memgen.lut.network import LUTNetwork

    x, y, xt, yt, source = data
    if n_train:
        x, y = x[:n_train], y[:n_train]
    bits, labels = binarize(x), (y >= 5).astype(np.uint8)
    LUTNetwork(k, widths[:1], seed=0, device=device).fit(bits[:1000], labels[:1000])      # warm-up
    start = time.perf_counter()
    net = LUTNetwork(k, widths, seed=0, device=device).fit(bits, labels)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    accuracy = float((net.predict(binarize(xt)) == (yt >= 5)).mean())
    return {"k": k, "widths": list(widths), "n_train": len(y), "data": source, "fit_s": seconds,
            "test_accuracy": accuracy}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--mnist", type=Path, help="MNIST IDX folder (default: $MEMGEN_DATA_ROOT/mnist or "
                        "../shared/data/mnist; random images, speed only, where it is missing)",
                        default=Path(os.environ.get("MEMGEN_DATA_ROOT", ROOT.parent / "shared" / "data")) / "mnist")
    parser.add_argument("--pytest-timeout", type=int, default=300)
    args = parser.parse_args(argv)

    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    mode = "gpu" if device == "cuda" else "cpu-degraded"
    sizes = SIZES[mode]
    result = {"mode": mode, "device": torch.cuda.get_device_name() if device == "cuda" else platform.processor(),
              "torch": torch.__version__, "cuda": torch.version.cuda, "sizes": sizes,
              "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    if mode != "gpu":
        log("no CUDA device: degraded mode, tiny sizes on the CPU (checks the check, measures nothing)")
    start = time.perf_counter()
    steps = [("gpu_tests", lambda: gpu_tests(args.pytest_timeout)),
             ("resnet20_training", lambda: resnet_throughput(device, sizes["resnet_steps"], sizes["resnet_batch"])),
             ("mlp_estimator", lambda: mlp_models_per_s(data, device, sizes["mlp_models"], sizes["mlp_hidden"],
                                                        sizes["mlp_epochs"], sizes["mlp_train"])),
             ("lut_fit", lambda: lut_fit(data, device, sizes["lut_k"], sizes["lut_widths"], sizes["lut_train"]))]
    data = mnist(args.mnist)
    failures = []
    for name, step in steps:
        log(f"{name} ...")
        try:
            result[name] = step()
        except Exception as err:                       # one broken part must not hide the others' numbers
            result[name] = {"error": f"{type(err).__name__}: {err}"}
            failures.append(name)
        log(f"{name}: {json.dumps(result[name], default=str)[:300]}")
    tests = result["gpu_tests"]
    if "error" not in tests and (tests["failures"] or tests["errors"]):
        failures.append("gpu_tests")
    result.update(total_s=time.perf_counter() - start, failed_parts=failures, ok=not failures)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, default=str))
    log(f"wrote {args.out} ({'ok' if result['ok'] else 'FAILED: ' + ', '.join(failures)}) in {result['total_s']:.0f} s")
    return result


if __name__ == "__main__":
    sys.exit(0 if main()["ok"] else 1)
