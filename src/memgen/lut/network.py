"""Networks of k-input lookup tables trained by memorization (Chatterjee 2018, "Learning and memorization").

A network is layers of LUTs. Each LUT reads ``k`` distinct units of the previous layer (binarized pixels for
the first layer), picked at random from ``seed``. Training is pure counting, layer by layer from inputs to
output: each LUT maps each of its ``2**k`` input patterns to the label (0/1) seen most often with it in the
training set; ties, including patterns never seen, get a random label (seeded). The layer's outputs on the
training set are the next layer's inputs; inference runs the same tables forward.

Fast path (numpy, CPU). Activations are kept unit-major (``[units, examples]``, 0/1 as uint16) and examples
sorted by label once. A layer runs in blocks of LUTs on a small thread pool (numpy and scipy release the GIL):
the block's pattern indices ``P[l, n] = sum_j bit(conn[l, j], n) << j`` are one sparse-times-dense product (a
matrix holding ``2**j`` at ``(l, conn[l, j])``); counts are one ``np.bincount`` per LUT and class; the majority
rule with seeded ties is vectorised over the block; the outputs are one ``np.take`` per LUT. Only a block's
patterns and counts exist at a time, which bounds memory at k=16 (1024 x 65536 entries per layer). Tables are
uint8 in memory and packed bits on disk. The torch path (``device='cuda'``, or ``backend='torch'`` on the CPU)
runs the same algorithm (counts by ``bincount`` over ``lut * 2**k + pattern``); wiring and tie-break bits are
always drawn with numpy from ``seed``, so both paths give identical tables. :func:`fit_plain` is the plain
one-LUT-input-at-a-time implementation the fast path is checked and timed against.
"""

from __future__ import annotations

import json
import os
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd

from memgen.runtime import atomic_path

MAX_K = 16                   # pattern indices are uint16; a 1024-LUT layer then holds 64M table entries
_BINS = {"numpy": 1 << 20, "torch": 1 << 22}   # most table entries counted per block of LUTs
_FORMAT = 1


# ------------------------------------------------------------------------------------------- input checks
def check_bits(bits, n_inputs: int | None = None) -> np.ndarray:
    """Return ``bits`` as a uint8 ``[N, D]`` 0/1 array, or raise an error that says how to fix it."""
    bits = np.asarray(bits)
    if bits.ndim != 2 or bits.shape[0] == 0:
        raise ValueError(f"LUT inputs must be a non-empty 2-D array [examples, bits], got shape {bits.shape}; "
                         "flatten images with memgen.bits.binarize")
    if bits.dtype != np.bool_ and not np.issubdtype(bits.dtype, np.integer):
        raise TypeError(f"LUT inputs must be 0/1 integers or booleans, got {bits.dtype}; use memgen.bits.binarize")
    if bits.dtype != np.bool_ and (bits.min() < 0 or bits.max() > 1):
        raise ValueError(f"LUT inputs must be bits (0/1), found values {bits.min()}..{bits.max()}; "
                         "binarize the images first with memgen.bits.binarize")
    if n_inputs is not None and bits.shape[1] != n_inputs:
        raise ValueError(f"the network was fit on {n_inputs} input bits but got {bits.shape[1]}; "
                         "binarize with the same scheme as for training")
    return bits.view(np.uint8) if bits.dtype == np.bool_ else bits.astype(np.uint8, copy=False)


def check_labels(y, n: int) -> np.ndarray:
    """Return ``y`` as uint8 0/1 labels of length ``n`` with both classes present, or raise."""
    y = np.asarray(y)
    if y.shape != (n,):
        raise ValueError(f"labels must be a 1-D array with one label per example ({n}), got shape {y.shape}")
    values = np.unique(y)
    if not np.isin(values, [0, 1]).all():
        raise ValueError(f"LUT networks learn binary tasks: labels must be 0/1, found {values[:10].tolist()}; "
                         "relabel to two classes (e.g. a 'binary' or 'pair<a>v<b>' split)")
    if len(values) < 2:
        raise ValueError(f"the task has no training example of class {1 - int(values[0])}; both classes need "
                         "examples: check the split or the labels")
    return y.astype(np.uint8)


# ------------------------------------------------------------------------------------------- the network
class LUTNetwork:
    """Layers of ``k``-input LUTs: hidden ``widths`` then one output LUT.

    ``device``: ``cpu`` (numpy fast path), ``cuda[:N]`` (torch) or ``auto``; ``backend='torch'`` forces the
    torch path on any device. ``threads``: CPU worker threads (default: the usable cores).
    After :meth:`fit`: ``connections[i]`` (int32 ``[L_i, k]``, indices into layer ``i-1``, or the input bits
    for ``i = 0``), ``tables[i]`` (uint8 ``[L_i, 2**k]``) and ``lut_train_accuracy[i]`` (float64 ``[L_i]``:
    each LUT's own accuracy on the training labels); the last entry is the output LUT.
    """

    def __init__(self, k: int, widths=(1024,) * 5, seed: int = 0, device: str = "cpu",
                 backend: str | None = None, threads: int | None = None):
        if int(k) != k or not 1 <= k <= MAX_K:
            raise ValueError(f"k={k} is outside 1..{MAX_K}: each LUT holds 2**k entries (k={MAX_K} gives a "
                             f"1024-LUT layer 64M entries); use an integer k between 1 and {MAX_K}")
        widths = tuple(int(w) for w in widths)
        if any(w < 1 for w in widths):
            raise ValueError(f"layer widths must be positive, got {widths}")
        for i, w in enumerate(widths):
            if k > w:
                raise ValueError(f"k={k} exceeds the width {w} of hidden layer {i + 1}, which feeds layer {i + 2}; "
                                 f"each LUT reads k distinct units, so use k <= {w} or widen that layer")
        if device != "cpu":
            from memgen.runtime import resolve_device
            device = resolve_device(device)
        backend = backend or ("numpy" if device == "cpu" else "torch")
        if backend not in ("numpy", "torch") or (backend == "numpy" and device != "cpu"):
            raise ValueError(f"backend '{backend}' on device '{device}' is not supported; use backend 'numpy' "
                             "(CPU only) or 'torch' (CPU or CUDA)")
        self.k, self.widths, self.seed, self.device, self.backend = int(k), widths, int(seed), device, backend
        self.threads = threads or (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                                   else os.cpu_count() or 1)
        self.n_inputs: int | None = None
        self.connections: list[np.ndarray] = []
        self.tables: list[np.ndarray] = []
        self.lut_train_accuracy: list[np.ndarray] = []

    @property
    def sizes(self) -> tuple[int, ...]:
        return (*self.widths, 1)

    @property
    def train_accuracy(self) -> float:
        """Training accuracy of the whole network (= the output LUT's own training accuracy)."""
        self._check_fitted()
        return float(self.lut_train_accuracy[-1][0])

    # ---- seeded randomness: wiring and tie-break bits, per layer, always from numpy
    def _wire(self, layer: int, n_in: int) -> np.ndarray:
        rng = np.random.default_rng([self.seed, layer, 0])
        keys = rng.random((self.sizes[layer], n_in), dtype=np.float32)
        return np.argpartition(keys, self.k - 1, axis=1)[:, :self.k].astype(np.int32)

    def _ties(self, layer: int) -> np.ndarray:
        n = self.sizes[layer] << self.k
        coins = np.frombuffer(np.random.default_rng([self.seed, layer, 1]).bytes((n + 7) // 8), dtype=np.uint8)
        return np.unpackbits(coins, count=n).view(np.bool_).reshape(self.sizes[layer], 1 << self.k)

    # ---- training
    def fit(self, bits, y) -> "LUTNetwork":
        """Memorize the 0/1 labels ``y`` of the 0/1 inputs ``bits`` ``[N, D]``, layer by layer."""
        bits = check_bits(bits)
        y = check_labels(y, len(bits))
        if self.k > bits.shape[1]:
            raise ValueError(f"k={self.k} exceeds the {bits.shape[1]} input bits that feed the first layer; "
                             f"use k <= {bits.shape[1]} or more input bits (e.g. more bits per channel)")
        order = np.argsort(y, kind="stable")       # class 0 first: counting is then one bincount per class
        n0 = int(np.sum(y == 0))
        kern = self._kernels()
        self.n_inputs, self.connections, self.tables, self.lut_train_accuracy = bits.shape[1], [], [], []
        conn = self._wire(0, bits.shape[1])
        x, local = kern.first_input(bits, conn, order)
        for layer, width in enumerate(self.sizes):
            if layer:
                conn = local = self._wire(layer, len(x))
            ties = kern.asarray(self._ties(layer))
            table = np.empty((width, 1 << self.k), dtype=np.uint8)
            hits = np.empty(width, dtype=np.int64)                # training examples each LUT gets right

            def block(b0: int, b1: int, patterns, out):
                c0, c1 = kern.counts(patterns, n0)                # [b1 - b0, 2**k] counts per class
                t = (c1 > c0) | ((c1 == c0) & ties[b0:b1])        # majority label, seeded ties
                table[b0:b1], hits[b0:b1] = kern.numpy(t), kern.numpy((c0 + t * (c1 - c0)).sum(1))
                kern.lookup(t, patterns, out)                     # outputs = the next layer's inputs

            x = kern.layer(x, local, block)
            self.connections.append(conn)
            self.tables.append(table)
            self.lut_train_accuracy.append(hits / len(y))
        return self

    # ---- inference
    def layer_outputs(self, bits) -> list[np.ndarray]:
        """Every layer's outputs, uint8 ``[N, L_i]`` per layer (the last is the prediction ``[N, 1]``)."""
        return [o.T for o in self._forward(bits, keep=True)]

    def predict(self, bits) -> np.ndarray:
        """Predicted 0/1 labels, uint8 ``[N]``."""
        return self._forward(bits, keep=False)[-1][0]

    def score(self, bits, y) -> float:
        """Accuracy of :meth:`predict` on labels ``y``."""
        return float(np.mean(self.predict(bits) == np.asarray(y)))

    def _forward(self, bits, keep: bool) -> list[np.ndarray]:
        """Unit-major uint8 outputs of every layer (``keep``) or of the output LUT only."""
        self._check_fitted()
        bits = check_bits(bits, self.n_inputs)
        kern = self._kernels()
        x, local = kern.first_input(bits, self.connections[0])
        outs = []
        for conn, table in zip([local, *self.connections[1:]], self.tables):
            table = kern.asarray(table)
            x = kern.layer(x, conn, lambda b0, b1, patterns, out: kern.lookup(table[b0:b1], patterns, out))
            if keep:
                outs.append(kern.numpy(x).astype(np.uint8))
        return outs if keep else [kern.numpy(x).astype(np.uint8)]

    def _kernels(self):
        return (_TorchKernels if self.backend == "torch" else _NumpyKernels)(self.k, self.device, self.threads)

    def _check_fitted(self) -> None:
        if not self.tables:
            raise RuntimeError("the LUT network is not fitted yet; call fit(bits, y) or LUTNetwork.load(path)")

    # ---- persistence
    def save(self, path: str | os.PathLike) -> None:
        """Write the fitted network (wiring, bit-packed tables, per-LUT training accuracy) atomically."""
        self._check_fitted()
        meta = {"format": _FORMAT, "k": self.k, "widths": list(self.widths), "seed": self.seed,
                "n_inputs": self.n_inputs}
        arrays = {"meta": np.array(json.dumps(meta))}
        for i, (conn, table, acc) in enumerate(zip(self.connections, self.tables, self.lut_train_accuracy)):
            arrays[f"conn{i}"] = conn
            arrays[f"table{i}"] = np.packbits(table, axis=1, bitorder="little")
            arrays[f"acc{i}"] = acc
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, **arrays)

    @classmethod
    def load(cls, path: str | os.PathLike, device: str = "cpu", backend: str | None = None,
             threads: int | None = None) -> "LUTNetwork":
        """Read a network written by :meth:`save`."""
        with np.load(path) as f:
            meta = json.loads(str(f["meta"]))
            if meta.get("format") != _FORMAT:
                raise ValueError(f"{path} holds LUT network format {meta.get('format')}, this code reads "
                                 f"{_FORMAT}; refit the network")
            net = cls(meta["k"], meta["widths"], meta["seed"], device, backend, threads)
            net.n_inputs = meta["n_inputs"]
            for i in range(len(net.sizes)):
                net.connections.append(f[f"conn{i}"])
                net.tables.append(np.unpackbits(f[f"table{i}"], axis=1, count=1 << net.k, bitorder="little"))
                net.lut_train_accuracy.append(f[f"acc{i}"])
        return net


# ---------------------------------------------------------------------------------------- kernels
class _NumpyKernels:
    """CPU fast path. Activations are unit-major uint16 0/1 arrays ``[units, examples]``; a layer is processed
    in blocks of LUTs (on a thread pool): patterns by one sparse product, counts by one bincount per LUT and
    class, outputs by one ``take`` per LUT. A block's patterns never outlive the block."""

    def __init__(self, k: int, device: str, threads: int):
        self.k, self.threads = k, threads

    def first_input(self, bits: np.ndarray, conn: np.ndarray, order=None):
        """Unit-major copy of the input bits some LUT reads (examples in ``order``), and the first layer's
        connections renumbered into it."""
        used = np.unique(conn)
        x = np.empty((len(used), len(bits)), dtype=np.uint16)
        for c0 in range(0, len(bits), 256):                 # transpose in cache-sized chunks
            rows = bits[c0:c0 + 256] if order is None else bits[order[c0:c0 + 256]]
            x[:, c0:c0 + 256] = rows[:, used].T
        return x, np.searchsorted(used, conn).astype(np.int32)

    def patterns(self, x: np.ndarray, conn: np.ndarray) -> np.ndarray:
        """uint16 ``[L, N]``, bit j of ``P[l, n]`` = row ``conn[l, j]`` of ``x``: one sparse-dense product."""
        import scipy.sparse as sp

        width, k = conn.shape
        a = sp.csr_matrix((np.tile((1 << np.arange(k)).astype(np.uint16), width), conn.ravel(),
                           np.arange(0, width * k + 1, k)), shape=(width, len(x)))
        return a @ x

    def layer(self, x: np.ndarray, conn: np.ndarray, fn) -> np.ndarray:
        """Run ``fn(b0, b1, patterns_of_block, out)`` over blocks of LUTs; return the layer's outputs."""
        width = len(conn)
        step = max(1, min(-(-width // (4 * self.threads)), _BINS["numpy"] >> self.k))   # >= 4 blocks per thread
        out = np.empty((width, x.shape[1]), dtype=np.uint16)
        spans = [(b0, min(width, b0 + step)) for b0 in range(0, width, step)]

        def run(span):
            fn(*span, self.patterns(x, conn[span[0]:span[1]]), out[span[0]:span[1]])

        if self.threads <= 1 or len(spans) == 1:
            list(map(run, spans))
        else:
            with ThreadPoolExecutor(min(self.threads, len(spans))) as pool:
                list(pool.map(run, spans))
        return out

    def counts(self, p: np.ndarray, n0: int):
        c = np.empty((2, len(p), 1 << self.k), dtype=np.int32)
        for i, row in enumerate(p):
            c[0, i] = np.bincount(row[:n0], minlength=1 << self.k)
            c[1, i] = np.bincount(row[n0:], minlength=1 << self.k)
        return c[0], c[1]

    @staticmethod
    def lookup(t: np.ndarray, p: np.ndarray, out: np.ndarray) -> None:
        t = t.astype(np.uint16)
        for i, row in enumerate(p):
            np.take(t[i], row, out=out[i], mode="clip")       # indices < 2**k by construction

    asarray = staticmethod(np.asarray)
    numpy = staticmethod(np.asarray)


class _TorchKernels:
    """The same algorithm in torch (GPU, or CPU for checking): a layer's patterns at once, counts by
    ``bincount`` over ``lut * 2**k + pattern`` in blocks of LUTs."""

    def __init__(self, k: int, device: str, threads: int):
        import torch

        self.torch, self.k, self.device = torch, k, device

    def first_input(self, bits: np.ndarray, conn: np.ndarray, order=None):
        used = np.unique(conn)
        bits = bits if order is None else bits[order]
        return self.asarray(bits[:, used].T), np.searchsorted(used, conn).astype(np.int32)

    def layer(self, x, conn: np.ndarray, fn):
        src = self.asarray(conn.astype(np.int64))
        p = self.torch.zeros((len(conn), x.shape[1]), dtype=self.torch.int64, device=self.device)
        for j in range(conn.shape[1]):
            p |= x[src[:, j]].to(self.torch.int64) << j
        out = self.torch.empty((len(conn), x.shape[1]), dtype=self.torch.uint8, device=self.device)
        step = max(1, min(len(conn), _BINS["torch"] >> self.k))
        for b0 in range(0, len(conn), step):
            b1 = min(len(conn), b0 + step)
            fn(b0, b1, p[b0:b1], out[b0:b1])
        return out

    def _index(self, p):
        return (p + (self.torch.arange(len(p), device=self.device)[:, None] << self.k)).ravel()

    def counts(self, p, n0: int):
        return [self.torch.bincount(self._index(part), minlength=len(p) << self.k).view(len(p), -1)
                for part in (p[:, :n0], p[:, n0:])]

    def lookup(self, t, p, out) -> None:
        out[:] = t.ravel()[self._index(p)].view(out.shape)

    def asarray(self, a):
        return self.torch.from_numpy(np.ascontiguousarray(a)).to(self.device)

    @staticmethod
    def numpy(a) -> np.ndarray:
        return a.cpu().numpy()


# ---------------------------------------------------------------------------------- plain reference
def fit_plain(net: LUTNetwork, bits, y) -> LUTNetwork:
    """The plain implementation: one LUT at a time, gathering its k input columns one at a time from the
    example-major ``[N, D]`` arrays with numpy. Same wiring and tie bits as :meth:`LUTNetwork.fit`, so the
    tables must come out identical; used by the tests and as the benchmark's baseline."""
    bits = check_bits(bits)
    y = check_labels(y, len(bits))
    k, n = net.k, len(bits)
    is0, is1 = y == 0, y == 1
    net.n_inputs, net.connections, net.tables, net.lut_train_accuracy = bits.shape[1], [], [], []
    x = bits
    for layer, width in enumerate(net.sizes):
        conn, ties = net._wire(layer, x.shape[1]), net._ties(layer)
        table = np.empty((width, 1 << k), dtype=np.uint8)
        acc = np.empty(width)
        out = np.empty((n, width), dtype=np.uint8)
        for lut in range(width):
            p = np.zeros(n, dtype=np.int64)
            for j in range(k):
                p |= x[:, conn[lut, j]].astype(np.int64) << j
            c0, c1 = np.bincount(p[is0], minlength=1 << k), np.bincount(p[is1], minlength=1 << k)
            t = (c1 > c0) | ((c1 == c0) & ties[lut])
            table[lut], acc[lut], out[:, lut] = t, np.where(t, c1, c0).sum() / n, t[p]
        net.connections.append(conn)
        net.tables.append(table)
        net.lut_train_accuracy.append(acc)
        x = out
    return net


# ------------------------------------------------------------------------------------------ experiments
BASELINE_WIDTHS = (1024,) * 5


def evaluate(x_train, y_train, x_test, y_test, k: int, widths=BASELINE_WIDTHS, seed: int = 0,
             device: str = "cpu", net: LUTNetwork | None = None, **extra) -> dict:
    """Fit (unless ``net`` is given, already fitted) and score one network; ``extra`` is copied into the row."""
    t0 = time.perf_counter()
    if net is None:
        net = LUTNetwork(k, widths, seed=seed, device=device).fit(x_train, y_train)
    fit_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    test_acc = net.score(x_test, y_test)
    return {**extra, "k": net.k, "depth": len(net.widths), "width": max(net.widths, default=0), "seed": net.seed,
            "n_train": len(y_train), "n_test": len(y_test), "train_acc": net.train_accuracy, "test_acc": test_acc,
            "gap": net.train_accuracy - test_acc, "fit_s": fit_s, "predict_s": time.perf_counter() - t0}


def layer_stats(net: LUTNetwork, bits, y) -> pd.DataFrame:
    """Table 2 for a network fitted on ``bits``/``y``: one row per layer (0 = inputs, last = output LUT).

    Standard deviations are population (ddof=0) values over the layer's LUTs.
    """
    bits = check_bits(bits, net.n_inputs)
    y = np.asarray(y)
    hits = np.zeros(bits.shape[1], dtype=np.int64)
    for start in range(0, len(bits), 8192):                    # input bit as a predictor of the label
        hits += (bits[start:start + 8192] == y[start:start + 8192, None]).sum(0)
    accs = [hits / len(y), *net.lut_train_accuracy]
    return pd.DataFrame([{"layer": i, "count": len(a), "mean": a.mean(), "std": a.std(), "min": a.min(),
                          "max": a.max()} for i, a in enumerate(accs)])
