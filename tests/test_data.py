import gzip
import hashlib
import io
import tarfile

import numpy as np
import pytest
from PIL import Image

from memgen.data import DataError, Dataset, load_cache, load_labels, read_dataset, read_idx, read_idx_dataset, read_image_folder, save_cache, source_files, subsample, verify


def idx_bytes(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    return header + array.astype(np.uint8).tobytes()


def write_idx_dataset(root, n_train=40, n_test=20, n_classes=4, gz=True, seed=0):
    rng = np.random.default_rng(seed)
    arrays = {"train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 6, 5)),
              "train-labels-idx1-ubyte": np.arange(n_train) % n_classes,
              "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 6, 5)),
              "t10k-labels-idx1-ubyte": np.arange(n_test) % n_classes}
    root.mkdir(parents=True, exist_ok=True)
    for name, array in arrays.items():
        raw = idx_bytes(array)
        (root / (name + ".gz" if gz else name)).write_bytes(gzip.compress(raw) if gz else raw)
    return arrays


def png_bytes(value: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((4, 4, 3), value, dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def image_folder_files(classes=("cat", "ant", "bee"), per_class=3):
    """{relative path: png bytes}; pixel value encodes (split, class, index) to check ordering."""
    files = {}
    for split, offset in (("train", 0), ("test", 100)):
        for c, cls in enumerate(classes):
            for i in range(per_class):
                files[f"ds/{split}/{cls}/{i:04d}.png"] = png_bytes(offset + 10 * c + i)
    return files


def test_idx_reader_reads_gz_and_raw_and_checks_md5(tmp_path):
    for gz in (True, False):
        arrays = write_idx_dataset(tmp_path / str(gz), gz=gz)
        ds = read_idx_dataset(tmp_path / str(gz))
        assert ds.x_train.shape == (40, 6, 5, 1) and ds.x_train.dtype == np.uint8
        np.testing.assert_array_equal(ds.x_train[..., 0], arrays["train-images-idx3-ubyte"])
        np.testing.assert_array_equal(ds.y_test, arrays["t10k-labels-idx1-ubyte"])
        assert ds.classes == ["0", "1", "2", "3"]
    good = hashlib.md5(idx_bytes(arrays["t10k-labels-idx1-ubyte"])).hexdigest()
    assert read_idx(tmp_path / "False" / "t10k-labels-idx1-ubyte", good).shape == (20,)
    with pytest.raises(DataError, match="checksum mismatch.*t10k-labels.*replace it"):
        read_idx(tmp_path / "False" / "t10k-labels-idx1-ubyte", "0" * 32)


@pytest.mark.parametrize("damage, message", [
    (lambda raw: raw[: len(raw) // 2], "cannot decompress|truncated"),
    (lambda raw: b"garbage" + raw, "cannot decompress"),
])
def test_corrupt_idx_file_names_the_file(tmp_path, damage, message):
    write_idx_dataset(tmp_path)
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(DataError, match=message) as err:
        read_idx_dataset(tmp_path)
    assert "train-images-idx3-ubyte.gz" in str(err.value)


def test_truncated_and_bad_magic_idx(tmp_path):
    raw = idx_bytes(np.zeros((10, 3, 3)))
    (tmp_path / "short").write_bytes(raw[:-5])
    with pytest.raises(DataError, match="truncated"):
        read_idx(tmp_path / "short")
    (tmp_path / "magic").write_bytes(b"\x01" + raw[1:])
    with pytest.raises(DataError, match="magic"):
        read_idx(tmp_path / "magic")


def test_missing_file_is_named_with_fix(tmp_path):
    write_idx_dataset(tmp_path)
    (tmp_path / "t10k-images-idx3-ubyte.gz").unlink()
    spec = {"source": "idx", "path": str(tmp_path)}
    with pytest.raises(DataError, match="t10k-images-idx3-ubyte.*config.yaml"):
        source_files(spec)
    with pytest.raises(DataError, match="missing dataset file .*t10k-images-idx3-ubyte"):
        read_dataset(spec)


@pytest.mark.parametrize("as_archive", [False, True])
def test_image_folder_directory_and_archive(tmp_path, as_archive):
    files = image_folder_files()
    if as_archive:
        path = tmp_path / "ds.tar.gz"
        with tarfile.open(path, "w:gz") as tar:
            for name, data in files.items():
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    else:
        for name, data in files.items():
            (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / name).write_bytes(data)
        path = tmp_path / "ds"
    ds = read_image_folder(path)
    assert ds.classes == ["ant", "bee", "cat"]  # alphabetical, label = position
    assert ds.x_train.shape == (9, 4, 4, 3)
    # class "ant" was written as class index 1, "cat" as 0; files within a class in name order
    np.testing.assert_array_equal(ds.x_train[:, 0, 0, 0], [10, 11, 12, 20, 21, 22, 0, 1, 2])
    np.testing.assert_array_equal(ds.y_test, [0, 0, 0, 1, 1, 1, 2, 2, 2])
    assert ds.x_test[0, 0, 0, 0] == 110


def test_corrupt_archive_and_missing_split(tmp_path):
    path = tmp_path / "broken.tar.gz"
    path.write_bytes(b"\x1f\x8b" + b"not really gzip" * 10)
    with pytest.raises(DataError, match="broken.tar.gz.*corrupt"):
        read_image_folder(path)
    only_train = tmp_path / "only_train"
    (only_train / "train" / "a").mkdir(parents=True)
    (only_train / "train" / "a" / "0.png").write_bytes(png_bytes(1))
    with pytest.raises(DataError, match="train/<class>/ and test/<class>/"):
        read_image_folder(only_train)


def test_verify_names_every_mismatch():
    ds = Dataset(np.zeros((6, 2, 2, 1), np.uint8), np.array([0, 1, 2, 0, 1, 2]), np.zeros((3, 2, 2, 1), np.uint8),
                 np.array([0, 1, 2]), ["a", "b", "c"])
    verify(ds, {"n_train": 6, "n_test": 3, "n_classes": 3, "shape": [2, 2, 1]})
    with pytest.raises(DataError, match="n_train is 6, expected 60000.*shape is \\[2, 2, 1\\], expected \\[28, 28, 1\\]"):
        verify(ds, {"n_train": 60000, "shape": [28, 28, 1]})
    ds.y_test = np.array([0, 1, 1])
    with pytest.raises(DataError, match="test set has no example of class\\(es\\) \\[2\\]"):
        verify(ds, {})


def test_cache_round_trip_and_label_only_load(tmp_path):
    write_idx_dataset(tmp_path / "raw")
    ds = read_idx_dataset(tmp_path / "raw")
    save_cache(ds, tmp_path / "cache.npz")
    back = load_cache(tmp_path / "cache.npz")
    np.testing.assert_array_equal(back.x_train, ds.x_train)
    assert back.classes == ds.classes
    y_train, y_test, classes = load_labels(tmp_path / "cache.npz")
    np.testing.assert_array_equal(y_train, ds.y_train)
    assert classes == ds.classes


def test_subsample_is_stratified_ordered_and_seeded(tmp_path):
    write_idx_dataset(tmp_path, n_train=400, n_test=200)
    ds = read_idx_dataset(tmp_path)
    small = subsample(ds, 40, 20, seed=3)
    assert np.bincount(small.y_train).tolist() == [10, 10, 10, 10]
    assert np.bincount(small.y_test).tolist() == [5, 5, 5, 5]
    again = subsample(ds, 40, 20, seed=3)
    np.testing.assert_array_equal(small.x_train, again.x_train)
    assert not np.array_equal(small.x_train, subsample(ds, 40, 20, seed=4).x_train)


def test_real_mnist_matches_official_checksums(data_root):
    ds = read_dataset({"source": "idx", "path": str(data_root / "mnist"),
                       "md5": {"train_images": "6bbc9ace898e44ae57da46a324031adb",
                               "test_labels": "27ae3e4e09519cfbb04c329615203637"},
                       "expect": {"n_train": 60000, "n_test": 10000, "shape": [28, 28, 1], "n_classes": 10}})
    assert np.bincount(ds.y_train).tolist()[:3] == [5923, 6742, 5958]  # the official class counts
