import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DATA_ROOT = Path(os.environ.get("MEMGEN_DATA_ROOT", REPO.parent / "shared" / "data")).resolve()


def pytest_collection_modifyitems(config, items):
    import torch

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
