"""Small runtime helpers shared by every stage: device and precision choice, seeding, atomic writes, progress."""

from __future__ import annotations

import contextlib
import os
import random
import sys
import tempfile
from pathlib import Path

import numpy as np


def resolve_device(device: str = "auto") -> str:
    """Map the config value ``auto``/``cpu``/``cuda[:N]`` to a torch device string."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"device '{device}' was requested but CUDA is not available; set device: auto or cpu")
    return device


PRECISIONS = ("auto", "fp32", "bf16")
# Set to 1 to make native-bf16 detection answer "no" (runs the fp32 fallback on any CPU; used by tests).
NO_NATIVE_BF16_ENV = "MEMGEN_NO_NATIVE_BF16"


def cpu_has_native_bf16() -> bool:
    """Whether this CPU executes bf16 matrix products in hardware, as torch reports it: AVX512-BF16 or AMX
    tiles on x86, the BF16 extension on Arm (oneDNN's check). Without them torch emulates bf16, slower than
    fp32. ``MEMGEN_NO_NATIVE_BF16=1`` makes the answer "no"."""
    import platform

    import torch

    if os.environ.get(NO_NATIVE_BF16_ENV, "") not in ("", "0"):
        return False
    if platform.machine().lower() in ("x86_64", "amd64", "i686", "x86"):
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())


def resolve_precision(precision: str = "auto", device: str = "cpu") -> str:
    """Map the config value ``auto``/``fp32``/``bf16`` to the arithmetic a run uses on ``device``:
    ``auto`` is bf16 on CUDA and on CPUs with native bf16 (:func:`cpu_has_native_bf16`), fp32 elsewhere.
    bf16 means bf16 matrix products (autocast or bf16 weight copies) with fp32 master weights, loss and
    optimizer state."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision '{precision}'; use one of {PRECISIONS}")
    if precision != "auto":
        return precision
    return "bf16" if str(device).startswith("cuda") or cpu_has_native_bf16() else "fp32"


def autocast(precision: str, device: str):
    """The autocast context of a resolved ``precision`` on ``device`` (a no-op context for fp32)."""
    import torch

    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast("cuda" if str(device).startswith("cuda") else "cpu", dtype=torch.bfloat16)


def usable_cores() -> int:
    """Physical cores this process may run on: its CPU affinity (a cluster job's allocation), SMT siblings counted
    once, bounded by a cgroup CPU quota (a container limited to fewer CPUs than its host shows)."""
    cpus = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else range(os.cpu_count() or 1)
    cores = set()
    for cpu in cpus:
        topology = Path(f"/sys/devices/system/cpu/cpu{cpu}/topology")
        try:
            cores.add(((topology / "physical_package_id").read_text().strip(), (topology / "core_id").read_text().strip()))
        except OSError:
            cores.add(("cpu", cpu))
    quota = cgroup_cpu_quota()
    return max(1, min(len(cores), quota) if quota else len(cores))


def cgroup_cpu_quota(root: str | os.PathLike = "/sys/fs/cgroup") -> int | None:
    """CPUs allowed by the cgroup's CFS quota (v2 ``cpu.max`` or v1 ``cpu.cfs_quota_us``), rounded up; None if
    unlimited or unreadable."""
    root = Path(root)
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]
    except (OSError, ValueError):
        try:
            quota = (root / "cpu" / "cpu.cfs_quota_us").read_text().strip()
            period = (root / "cpu" / "cpu.cfs_period_us").read_text().strip()
        except OSError:
            return None
    if quota in ("max", "-1"):
        return None
    return max(1, -(-int(quota) // int(period)))


def seed_everything(seed: int) -> np.random.Generator:
    """Seed python, numpy and torch; return a numpy Generator for explicit use."""
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return np.random.default_rng(seed)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temporary path next to ``path``; rename it into place only if the block succeeds.

    A failing stage therefore never leaves a half-written output behind.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=path.suffix)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; give outputs the usual permissions
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def save_npz(path: str | os.PathLike, compress: bool = True, **arrays) -> None:
    """Write an npz atomically (uncompressed loads faster, for large image caches)."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            (np.savez_compressed if compress else np.savez)(fh, **arrays)


def progress(iterable=None, **kwargs):
    """tqdm that also prints readable lines when stderr is a log file, not a terminal."""
    from tqdm.auto import tqdm

    if not sys.stderr.isatty():
        kwargs.setdefault("mininterval", 10.0)
        kwargs.setdefault("ascii", True)
    return tqdm(iterable, **kwargs)


@contextlib.contextmanager
def log_to(path: str | os.PathLike | None):
    """Send stdout and stderr (progress bars included) to a rule's log file."""
    if not path:
        yield
        return
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", buffering=1) as fh, contextlib.redirect_stdout(fh), contextlib.redirect_stderr(fh):
        yield


def quick_device(device: str) -> str:
    """``auto`` without an NVIDIA driver is the CPU, decided without importing torch (seconds per job)."""
    if device == "auto" and not Path("/proc/driver/nvidia").exists():
        return "cpu"
    if device == "cpu":
        return device
    return resolve_device(device)


def write_csv(path: str | os.PathLike, table) -> None:
    """Write a DataFrame atomically, without its index (a failing job leaves no output)."""
    with atomic_path(path) as tmp:
        table.to_csv(tmp, index=False)


def write_json(path: str | os.PathLike, obj) -> None:
    """Write a JSON document atomically (numpy scalars as floats)."""
    import json

    with atomic_path(path) as tmp:
        Path(tmp).write_text(json.dumps(obj, indent=2, default=float))
