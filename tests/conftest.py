import os
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
DATA_ROOT = Path(os.environ.get("MEMGEN_DATA_ROOT", REPO.parent / "shared" / "data")).resolve()


def pytest_collection_modifyitems(config, items):
    import torch

    for item in items:  # tests on the finished smoke DAG (minutes): `-m "not slow"` leaves them out
        if "smoke_run" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.slow)
    if torch.cuda.is_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)


@pytest.fixture(scope="session")
def data_root() -> Path:
    """The local dataset mirror; tests that need real data fail (not skip) without it."""
    if not (DATA_ROOT / "mnist").is_dir():
        pytest.fail(f"dataset mirror not found at {DATA_ROOT}; set MEMGEN_DATA_ROOT to the folder holding "
                    f"mnist/ and cifar10-jpeg.tar.gz")
    return DATA_ROOT


@pytest.fixture
def single_torch_thread():
    """Tiny models on a shared 2-core machine: one torch thread avoids OpenMP spin-wait stalls under load."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def recipe(**settings) -> dict:
    """A training recipe as the workflow passes it: ``settings`` with the schema's defaults for every other key
    (workflow/schemas/retrieval.schema.yaml, $defs/recipe)."""
    from snakemake.utils import validate

    entry = {"backbone": {"any": {"arch": "mnist_cnn", "epochs": 1, **settings}}}
    validate(entry, str(REPO / "workflow/schemas/retrieval.schema.yaml"))
    return {k: v for k, v in entry["backbone"]["any"].items() if k not in ("split_epochs", "flip_average",
                                                                            "translate_average")}


def bit_blobs(n=400, n_test=200, d=64, n_classes=2, seed=0):
    """Binary inputs drawn around a prototype per class (each bit flipped with probability 0.25)."""
    rng = np.random.default_rng(seed)
    protos = rng.integers(0, 2, (n_classes, d))

    def draw(m):
        c = rng.integers(0, n_classes, m)
        return (protos[c] ^ (rng.random((m, d)) < 0.25)).astype(np.uint8), c

    return (*draw(n), *draw(n_test))
