"""Learning algorithms for the memorization estimator, behind one small protocol.

A learner is built once on a task (training and test examples with their labels) and then
``fit_predict(subsets, seeds)`` trains one model per subset of training *positions* (``0..n-1``)
with the given training seeds and reports, for every model, on every training and test example:
0/1 correctness, the probability of the true class and the margin (true-class score minus the best
other score).  The estimator (:mod:`memgen.influence.estimator`) needs nothing else, so every learner
(MLP, linear probe, k-NN, LUT network, convolutional network; :data:`LEARNERS` by config name) plugs into
the same shards.

Several models train at once where that pays (batched matrix products over models); the MLP and
the linear probe keep a one-model-at-a-time ``mode="reference"`` implementation of the same
algorithm, which tests compare against (k-NN is compared with brute force).  A model's result
depends only on its subset and seed, never on which other models share the batch.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, Sequence, runtime_checkable

import numpy as np

from memgen.knn import vote
from memgen.runtime import atomic_path, autocast, progress, resolve_device, resolve_precision, save_npz


@dataclass
class Outputs:
    """Per-model results: ``[k, n_train]`` and ``[k, n_test]`` arrays."""

    correct_train: np.ndarray  # bool
    correct_test: np.ndarray   # bool
    prob_train: np.ndarray     # float32, probability of the true class
    prob_test: np.ndarray
    margin_train: np.ndarray   # float32, true-class score minus best other score (> 0 iff correct)
    margin_test: np.ndarray

    @property
    def k(self) -> int:
        return len(self.correct_train)

    @classmethod
    def empty(cls, k: int, n_train: int, n_test: int) -> "Outputs":
        z = np.zeros
        return cls(z((k, n_train), bool), z((k, n_test), bool), z((k, n_train), np.float32),
                   z((k, n_test), np.float32), z((k, n_train), np.float32), z((k, n_test), np.float32))

    @classmethod
    def concat(cls, parts: Sequence["Outputs"]) -> "Outputs":
        if len(parts) == 1:
            return parts[0]
        return cls(*(np.concatenate([getattr(p, f) for p in parts]) for f in cls.__dataclass_fields__))

    def take(self, rows) -> "Outputs":
        return Outputs(*(getattr(self, f)[rows] for f in self.__dataclass_fields__))

    def put(self, rows, other: "Outputs") -> None:
        for f in self.__dataclass_fields__:
            getattr(self, f)[rows] = getattr(other, f)

    def check(self, k: int, n_train: int, n_test: int) -> None:
        for f in self.__dataclass_fields__:
            want = (k, n_train if f.endswith("train") else n_test)
            if getattr(self, f).shape != want:
                raise ValueError(f"learner output '{f}' has shape {getattr(self, f).shape}, expected {want}")


@runtime_checkable
class Learner(Protocol):
    """What the estimator needs from a learning algorithm."""

    name: str
    n_train: int
    n_test: int
    y_train: np.ndarray
    y_test: np.ndarray

    def fit_predict(self, subsets: Sequence[np.ndarray], seeds: Sequence[int]) -> Outputs:
        """Train one model per subset (training positions) and seed; evaluate on all train/test examples."""
        ...


# The learners a study can name (config ``influence.studies.<name>.learner``), by name.
LEARNERS: dict[str, type] = {}


def register_learner(name: str):
    """Class decorator: the learner ``name`` of the config. The class builds itself from a study's task and
    ``settings`` (the config entry, validated by workflow/schemas/influence.schema.yaml) with
    ``from_settings(x_train, y_train, x_test, y_test, settings, *, n_classes, device, show_progress)``."""
    def register(cls):
        if name in LEARNERS:
            raise ValueError(f"learner '{name}' is registered twice ({LEARNERS[name].__name__}, {cls.__name__})")
        LEARNERS[name] = cls
        return cls
    return register


def scores_from_logits(logits, y):
    """``logits [k, c, C]`` (torch), ``y [c]`` -> (correct bool, true-class prob, margin) numpy ``[k, c]``."""
    y = y.to(logits.device)
    correct, prob, margin = _class_scores(logits, y.view(1, -1, 1), dim=2)
    return correct.cpu().numpy(), prob.float().cpu().numpy(), margin.float().cpu().numpy()


def _class_scores(logits, yv, dim: int):
    """Correctness (``argmax == y``, first maximum on ties), true-class probability and margin (true
    logit minus the best other logit) along class dimension ``dim``; ``yv`` broadcasts with size 1
    there.  Uses max-reductions only (``argmax`` over a short non-contiguous dimension is slow on CPU)."""
    import torch

    C = logits.shape[dim]
    shape = [1] * logits.ndim
    shape[dim] = C
    cls = torch.arange(C, device=logits.device).view(shape)
    idx = yv.expand(*[1 if d == dim else s for d, s in enumerate(logits.shape)])
    true = logits.gather(dim, idx).squeeze(dim)
    prob = torch.exp(true - torch.logsumexp(logits, dim))
    lo = logits.masked_fill(cls >= yv, -math.inf).amax(dim)   # best class before y
    hi = logits.masked_fill(cls <= yv, -math.inf).amax(dim)   # best class after y
    correct = (true > lo) & (true >= hi)
    return correct, prob, true - torch.maximum(lo, hi)


def _flat_float(x, dtype, scale_uint8: bool = True):
    import torch

    x = np.asarray(x)
    flat = x.reshape(len(x), -1)
    if flat.dtype == np.uint8 and scale_uint8:
        t = torch.from_numpy(np.array(flat, copy=True)).to(dtype).div_(255.0)
    else:
        t = torch.from_numpy(np.array(flat, dtype=np.float64, copy=True)).to(dtype)
    return t.contiguous()


def _check_task(x_train, y_train, x_test, y_test):
    if len(x_train) != len(y_train) or len(x_test) != len(y_test):
        raise ValueError(f"examples and labels differ in number (train {len(x_train)} vs {len(y_train)}, "
                         f"test {len(x_test)} vs {len(y_test)})")
    y_train, y_test = np.asarray(y_train, np.int64), np.asarray(y_test, np.int64)
    if len(y_train) and y_train.min() < 0:
        raise ValueError("labels must be non-negative class indices")
    return y_train, y_test


def _check_subsets(subsets, seeds, n):
    subsets = [np.asarray(s, dtype=np.int64) for s in subsets]
    if len(subsets) != len(seeds):
        raise ValueError(f"{len(subsets)} subsets but {len(seeds)} seeds")
    for s in subsets:
        if len(s) == 0 or s.min() < 0 or s.max() >= n:
            raise ValueError(f"a subset is empty or holds positions outside 0..{n - 1}")
    return subsets, [int(s) for s in seeds]


def _groups_by_size(subsets, chunk: int):
    """Indices of models grouped by subset size, in chunks of at most ``chunk`` (input order kept)."""
    by = {}
    for q, s in enumerate(subsets):
        by.setdefault(len(s), []).append(q)
    for qs in by.values():
        for a in range(0, len(qs), chunk):
            yield qs[a:a + chunk]


# --- MLP ------------------------------------------------------------------------------------------

def mlp_init(sizes: Sequence[int], seed: int, dtype=None):
    """PyTorch's default ``nn.Linear`` initialisation, drawn from ``seed``: ``[(W [in, out], b [out]), ...]``."""
    import torch

    g = torch.Generator().manual_seed(int(seed))
    params = []
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
        bound = 1.0 / math.sqrt(fan_in)
        w = (torch.rand(fan_out, fan_in, generator=g, dtype=torch.float64) * 2 - 1) * bound
        b = (torch.rand(fan_out, generator=g, dtype=torch.float64) * 2 - 1) * bound
        params.append((w.T.contiguous().to(dtype or torch.float32), b.to(dtype or torch.float32)))
    return params


def epoch_orders(seed: int, m: int, epochs: int) -> np.ndarray:
    """``[epochs, m]``: the order in which a model visits its ``m`` subset positions in each epoch."""
    rng = np.random.default_rng(int(seed))
    return np.stack([rng.permutation(m) for _ in range(epochs)]) if epochs else np.zeros((0, m), np.int64)


@register_learner("mlp")
class MLPLearner:
    """Fully connected ReLU network trained with SGD + momentum on cross-entropy (the authors' MNIST
    demo: 784-512-256-10, lr 0.1, momentum 0.9, batch 128, 10 epochs).

    ``mode="batched"`` trains ``parallel`` models at once with batched matrix products and a
    hand-written backward pass: data preallocated on the device, one ``index_select`` per batch and
    one foreach parameter update per step.  With ``k`` = 1 it is the fast single-model path.
    ``mode="reference"`` trains one ``torch.nn`` model at a time with autograd and
    ``torch.optim.SGD``.  Both use the same initialisation (from the model seed), the same per-model
    batch order and the same arithmetic, so they agree up to floating-point rounding.
    ``parallel=None``: 256 models at once on CUDA; on CPU as many as torch threads, so that each
    thread runs whole matrix products of its own model (no synchronisation inside the small
    products, which stalls when other processes share the cores).

    ``precision`` (:func:`memgen.runtime.resolve_precision`): in ``fp32`` the momentum update is
    folded into the weight-gradient product (``buf = momentum * buf + a.T @ g`` is one GEMM with
    ``beta=momentum``, no gradient tensors).  In ``bf16`` the data and the hidden layers' matrix
    products are bf16 (the reference: ``torch.autocast``); master weights, momentum buffers, the
    output layer (logits, loss and its gradient) and the bias gradients stay fp32.  The batched
    path keeps bf16 copies of the hidden weights, refreshed once per step by one foreach copy
    after the update, so no product re-casts its weights.  ``dtype`` is the fp32-mode data and
    weight type (``torch.float64`` for exact comparisons).
    ``record`` (e.g. a :class:`memgen.proxies.LearningSpeedRecorder` keyed by model seed) is called after every
    forward pass of training as ``record(epoch, idx [k, b], prob [k, b], correct [k, b], models=seeds)``: each
    model's batch positions, their true-class probability and correctness before the step.
    """

    # trains with bf16 products where the precision setting resolves to bf16 (from_settings takes ``precision``)
    mixed_precision = True

    @classmethod
    def from_settings(cls, x_train, y_train, x_test, y_test, settings: dict, *, n_classes: int, device: str,
                      show_progress: bool, precision: str = "auto"):
        return cls(x_train, y_train, x_test, y_test, **settings, n_classes=n_classes, device=device,
                   precision=precision, show_progress=show_progress)

    def __init__(self, x_train, y_train, x_test, y_test, hidden: Sequence[int] = (512, 256), epochs: int = 10,
                 lr: float = 0.1, momentum: float = 0.9, batch_size: int = 128, n_classes: int | None = None,
                 mode: str = "batched", parallel: int | None = None, device: str = "auto", dtype=None,
                 precision: str = "auto", eval_batch: int = 8192, show_progress: bool = False, record=None):
        import torch

        if mode not in ("batched", "reference"):
            raise ValueError(f"unknown mode '{mode}'; use 'batched' or 'reference'")
        if epochs < 0 or batch_size < 1 or lr <= 0:
            raise ValueError(f"bad training settings epochs={epochs}, batch_size={batch_size}, lr={lr}")
        self.y_train, self.y_test = _check_task(x_train, y_train, x_test, y_test)
        self.device = resolve_device(device)
        self.precision = resolve_precision(precision, self.device)
        self.dtype = dtype or torch.float32
        if self.precision == "bf16" and self.dtype != torch.float32:
            raise ValueError(f"dtype {self.dtype} needs precision 'fp32' (bf16 keeps float32 master weights)")
        data_dtype = torch.bfloat16 if self.precision == "bf16" else self.dtype
        self.n_classes = int(n_classes or (max(self.y_train.max(initial=0), self.y_test.max(initial=0)) + 1))
        self.X = torch.cat([_flat_float(x_train, data_dtype), _flat_float(x_test, data_dtype)]).to(self.device)
        self.Y = torch.from_numpy(np.concatenate([self.y_train, self.y_test])).to(self.device)
        self.n_train, self.n_test = len(self.y_train), len(self.y_test)
        self.sizes = [self.X.shape[1], *map(int, hidden), self.n_classes]
        self.epochs, self.lr, self.momentum, self.batch_size = int(epochs), float(lr), float(momentum), int(batch_size)
        self.mode = mode
        self.parallel = parallel or (256 if self.device.startswith("cuda") else torch.get_num_threads())
        self.eval_batch = int(eval_batch)
        self.show_progress = show_progress
        self.record = record
        self.name = (f"mlp{'-'.join(map(str, self.sizes))}_e{self.epochs}_lr{self.lr:g}_m{self.momentum:g}"
                     f"_b{self.batch_size}" + ("_bf16" if self.precision == "bf16" else ""))

    # -- protocol
    def fit_predict(self, subsets, seeds) -> Outputs:
        subsets, seeds = _check_subsets(subsets, seeds, self.n_train)
        out = Outputs.empty(len(subsets), self.n_train, self.n_test)
        chunk = 1 if self.mode == "reference" else self.parallel
        for qs in progress(list(_groups_by_size(subsets, chunk)), desc="mlp models", disable=not self.show_progress):
            if self.mode == "reference":
                params = self.train_reference(subsets[qs[0]], seeds[qs[0]])
            else:
                params = self.train_batched(np.stack([subsets[q] for q in qs]), [seeds[q] for q in qs])
            out.put(qs, self.evaluate(params))
        return out

    # -- training
    def train_batched(self, subsets: np.ndarray, seeds: Sequence[int]):
        """Train ``len(seeds)`` models on equal-size subsets ``[k, m]`` at once; return stacked params
        ``[(W [k, in, out], b [k, 1, out]), ...]`` (the master weights)."""
        import torch

        dev, dt = self.device, self.dtype
        bf16 = self.precision == "bf16"
        k, m = subsets.shape
        inits = [mlp_init(self.sizes, s, dt) for s in seeds]
        Ws = [torch.stack([p[l][0] for p in inits]).to(dev) for l in range(len(self.sizes) - 1)]
        bs = [torch.stack([p[l][1] for p in inits]).unsqueeze(1).to(dev) for l in range(len(self.sizes) - 1)]
        params = [*Ws, *bs]
        bufW = [torch.zeros_like(w) for w in Ws]   # momentum buffers
        bufb = [torch.zeros_like(b) for b in bs]
        bufs = [*bufW, *bufb]
        L = len(Ws)
        # the weights the products read: bf16 copies of the hidden layers (refreshed after each update)
        low = [*Ws[:-1], *bs[:-1]] if bf16 else []
        low16 = [t.to(torch.bfloat16) for t in low]
        Wc = [*low16[:L - 1], Ws[-1]] if bf16 else Ws
        bc = [*low16[L - 1:], bs[-1]] if bf16 else bs
        sub = torch.from_numpy(subsets).to(dev)
        orders = [epoch_orders(s, m, self.epochs) for s in seeds]
        X, Y, B, mom = self.X, self.Y, self.batch_size, self.momentum
        D = X.shape[1]
        relu_backward = torch.ops.aten.threshold_backward.grad_input
        if k == 1:   # one model: 2-D products (addmm fuses the bias; a little faster than baddbmm on CPU)
            def linear(b_, a_, w_):
                return torch.addmm(b_[0, 0], a_[0], w_[0]).unsqueeze(0)

            def weight_grad(a_, g_):
                return torch.mm(a_[0].T, g_[0]).unsqueeze(0)

            def momentum_grad(buf, a_, g_):
                buf[0].addmm_(a_[0].T, g_[0], beta=mom)

            def back(g_, w_):
                return torch.mm(g_[0], w_[0].T).unsqueeze(0)
        else:
            def linear(b_, a_, w_):
                return torch.baddbmm(b_, a_, w_)

            def weight_grad(a_, g_):
                return torch.bmm(a_.transpose(1, 2), g_)

            def momentum_grad(buf, a_, g_):
                buf.baddbmm_(a_.transpose(1, 2), g_, beta=mom)

            def back(g_, w_):
                return torch.bmm(g_, w_.transpose(1, 2))
        with torch.no_grad():
            for e in range(self.epochs):
                perm = torch.from_numpy(np.stack([o[e] for o in orders])).to(dev)
                gidx = torch.gather(sub, 1, perm)  # [k, m] positions in visiting order
                for s in range(0, m, B):
                    idx = gidx[:, s:s + B].reshape(-1)
                    b = idx.numel() // k
                    acts = [X.index_select(0, idx).view(k, b, D)]
                    for l in range(L):
                        if bf16 and l == L - 1:   # fp32 output layer: its input, cast once
                            head_in = acts[-1].float()
                        h = linear(bc[l], head_in if bf16 and l == L - 1 else acts[-1], Wc[l])
                        if l < L - 1:
                            h.relu_()
                        acts.append(h)
                    g = torch.softmax(acts[-1], dim=-1)          # d(mean cross-entropy)/d(logits)
                    yb = Y.index_select(0, idx)
                    if self.record is not None:
                        yk = yb.view(k, b, 1)
                        self.record(e, idx.view(k, b), g.gather(2, yk)[..., 0],
                                    acts[-1].argmax(-1) == yk[..., 0], models=seeds)
                    g.view(k * b, -1)[torch.arange(k * b, device=dev), yb] -= 1.0
                    g.mul_(1.0 / b)
                    for l in range(L - 1, -1, -1):
                        # SGD momentum (torch semantics: buf = momentum * buf + grad)
                        if g.dtype == bufW[l].dtype:   # fused into the weight-gradient product: one GEMM
                            momentum_grad(bufW[l], head_in if bf16 else acts[l], g)
                        else:                          # a bf16 product, accumulated into the fp32 buffer
                            torch.add(weight_grad(acts[l], g), bufW[l], alpha=mom, out=bufW[l])
                        bufb[l].mul_(mom).add_(g.sum(1, keepdim=True, dtype=bufb[l].dtype))
                        if l > 0:
                            g = back(g, Wc[l])
                            if bf16 and l == L - 1:
                                g = g.to(torch.bfloat16)
                            relu_backward(g, acts[l], 0.0, grad_input=g)
                    torch._foreach_add_(params, bufs, alpha=-self.lr)
                    if bf16:
                        torch._foreach_copy_(low16, low)
        return list(zip(Ws, bs))

    def train_reference(self, subset: np.ndarray, seed: int):
        """One model with ``torch.nn`` + autograd + ``torch.optim.SGD`` (bf16: hidden layers under
        ``torch.autocast``, the output layer in fp32); returns params in the batched layout (k=1)."""
        import torch
        import torch.nn.functional as F

        dev, dt = self.device, self.dtype
        layers = []
        for l, (w, b) in enumerate(mlp_init(self.sizes, seed, dt)):
            lin = torch.nn.Linear(w.shape[0], w.shape[1], dtype=dt)
            with torch.no_grad():
                lin.weight.copy_(w.T)
                lin.bias.copy_(b)
            layers += [lin, torch.nn.ReLU()]
        model = torch.nn.Sequential(*layers[:-1]).to(dev)
        hidden, head = model[:-1], model[-1]
        opt = torch.optim.SGD(model.parameters(), lr=self.lr, momentum=self.momentum, foreach=True)
        sub = torch.from_numpy(np.asarray(subset)).to(dev)
        for e, order in enumerate(epoch_orders(seed, len(subset), self.epochs)):
            gidx = sub[torch.from_numpy(order).to(dev)]
            for s in range(0, len(subset), self.batch_size):
                idx = gidx[s:s + self.batch_size]
                with autocast(self.precision, dev):
                    h = hidden(self.X.index_select(0, idx))
                logits, yb = head(h.to(dt)), self.Y.index_select(0, idx)
                if self.record is not None:
                    self.record(e, idx[None], torch.softmax(logits.detach(), 1).gather(1, yb[:, None]).T,
                                (logits.detach().argmax(1) == yb)[None], models=[seed])
                loss = F.cross_entropy(logits, yb)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
        lins = [m for m in model if isinstance(m, torch.nn.Linear)]
        return [(lin.weight.detach().T.unsqueeze(0).contiguous(), lin.bias.detach().view(1, 1, -1)) for lin in lins]

    def evaluate(self, params) -> Outputs:
        """Scores of stacked models ``[(W [k, in, out], b [k, 1, out])...]`` on all train and test examples."""
        import torch

        k = params[0][0].shape[0]
        N = self.n_train + self.n_test
        correct, prob, margin = np.empty((k, N), bool), np.empty((k, N), np.float32), np.empty((k, N), np.float32)
        rows = max(64, min(self.eval_batch, 2 ** 25 // (k * max(self.sizes[1:]))))  # bound activation memory
        if self.precision == "bf16":   # the arithmetic of training: bf16 hidden layers, fp32 output layer
            params = [(w.to(torch.bfloat16), b.to(torch.bfloat16)) for w, b in params[:-1]] + [params[-1]]
        with torch.no_grad():
            for a in range(0, N, rows):
                h = self.X[a:a + rows]
                for l, (w, b) in enumerate(params):
                    h = torch.matmul(h.to(w.dtype), w) + b   # [c, in] @ [k, in, out] broadcasts to [k, c, out]
                    if l < len(params) - 1:
                        h.relu_()
                c, p, mg = scores_from_logits(h, self.Y[a:a + rows])
                correct[:, a:a + len(c[0])], prob[:, a:a + len(c[0])], margin[:, a:a + len(c[0])] = c, p, mg
        n = self.n_train
        return Outputs(correct[:, :n], correct[:, n:], prob[:, :n], prob[:, n:], margin[:, :n], margin[:, n:])


# --- linear probe ---------------------------------------------------------------------------------

@register_learner("linear")
class LinearProbe:
    """Softmax regression (one linear layer) on fixed features, trained with minibatch SGD + momentum
    and L2 weight decay from zero initialisation.

    Batch schedule: in epoch ``e`` the whole training set is visited in the order of a permutation
    drawn from ``order_seed`` (shared by all models); a model's batch is the part of each chunk of
    ``batch_size`` positions that lies in its subset (about ``ratio * batch_size`` examples, the
    mean loss over them).  A model is thus a deterministic function of its subset (the model seed
    is not used), and ``mode="batched"`` trains thousands of models with two large matrix products
    per step (``X_chunk @ W_all`` and ``X_chunk.T @ G_all``, the subset as a 0/1 weight), exactly
    the same algorithm as ``mode="reference"`` (one ``torch.nn.Linear`` at a time, autograd,
    ``torch.optim.SGD``).  ``batch_size=None`` is full-batch gradient descent.

    ``standardize`` scales features with the mean/std of all training features (label-free; shared
    by all models).
    """

    @classmethod
    def from_settings(cls, x_train, y_train, x_test, y_test, settings: dict, *, n_classes: int, device: str,
                      show_progress: bool):
        return cls(x_train, y_train, x_test, y_test, **settings, n_classes=n_classes, device=device,
                   show_progress=show_progress)

    def __init__(self, x_train, y_train, x_test, y_test, epochs: int = 10, batch_size: int | None = 256,
                 lr: float = 0.1, momentum: float = 0.9, weight_decay: float = 5e-4, order_seed: int = 0,
                 standardize: bool = True, n_classes: int | None = None, mode: str = "batched",
                 parallel: int = 1024, device: str = "auto", dtype=None, eval_batch: int = 2048,
                 show_progress: bool = False):
        import torch

        if mode not in ("batched", "reference"):
            raise ValueError(f"unknown mode '{mode}'; use 'batched' or 'reference'")
        self.y_train, self.y_test = _check_task(x_train, y_train, x_test, y_test)
        self.device = resolve_device(device)
        self.dtype = dtype or torch.float32
        self.n_train, self.n_test = len(self.y_train), len(self.y_test)
        self.n_classes = int(n_classes or (max(self.y_train.max(initial=0), self.y_test.max(initial=0)) + 1))
        xtr, xte = _flat_float(x_train, torch.float64), _flat_float(x_test, torch.float64)
        if standardize:
            mu, sd = xtr.mean(0), xtr.std(0)
            sd = torch.where(sd > 1e-12, sd, torch.ones_like(sd))   # constant features are left unscaled
            xtr, xte = (xtr - mu) / sd, (xte - mu) / sd
        self.X = torch.cat([xtr, xte]).to(self.dtype).to(self.device).contiguous()
        self.Y = torch.from_numpy(np.concatenate([self.y_train, self.y_test])).to(self.device)
        self.epochs, self.lr, self.momentum, self.wd = int(epochs), float(lr), float(momentum), float(weight_decay)
        self.batch_size = int(batch_size) if batch_size else self.n_train
        self.order_seed, self.mode, self.parallel = int(order_seed), mode, int(parallel)
        self.eval_batch, self.show_progress = int(eval_batch), show_progress
        self.name = (f"linear_d{self.X.shape[1]}_e{self.epochs}_lr{self.lr:g}_m{self.momentum:g}_wd{self.wd:g}"
                     f"_b{self.batch_size}_o{self.order_seed}")

    def orders(self) -> np.ndarray:
        rng = np.random.default_rng(np.random.SeedSequence([self.order_seed], spawn_key=(7,)))
        return np.stack([rng.permutation(self.n_train) for _ in range(self.epochs)]) if self.epochs \
            else np.zeros((0, self.n_train), np.int64)

    def fit_predict(self, subsets, seeds) -> Outputs:
        subsets, seeds = _check_subsets(subsets, seeds, self.n_train)
        out = Outputs.empty(len(subsets), self.n_train, self.n_test)
        chunk = 1 if self.mode == "reference" else self.parallel
        groups = [qs[a:a + chunk] for qs in [list(range(len(subsets)))] for a in range(0, len(subsets), chunk)]
        for qs in progress(groups, desc="linear models", disable=not self.show_progress):
            if self.mode == "reference":
                W, b = self.train_reference(subsets[qs[0]])
            else:
                W, b = self.train_batched([subsets[q] for q in qs])
            out.put(qs, self.evaluate(W, b))
        return out

    def _masks(self, subsets):
        import torch

        M = np.zeros((len(subsets), self.n_train), dtype=bool)
        for q, s in enumerate(subsets):
            M[q, s] = True
        return torch.from_numpy(np.ascontiguousarray(M.T)).to(self.device)   # [n, k]

    def train_batched(self, subsets):
        """All models at once; returns ``W [D, C, k]``, ``b [C, k]`` (class-major: reductions over
        classes then run along contiguous model rows, which is what makes small ``C`` fast on CPU)."""
        import torch

        k, D, C = len(subsets), self.X.shape[1], self.n_classes
        dev, dt = self.device, self.dtype
        M = self._masks(subsets)                     # [n, k] subset membership (bool)
        W = torch.zeros(D, C * k, dtype=dt, device=dev)
        b = torch.zeros(C * k, dtype=dt, device=dev)
        bufW, bufb = torch.zeros_like(W), torch.zeros_like(b)
        gW, gb = torch.empty_like(W), torch.empty_like(b)
        X, Y = self.X, self.Y
        with torch.no_grad():
            for order in self.orders():
                order = torch.from_numpy(order).to(dev)
                for s in range(0, self.n_train, self.batch_size):
                    idx = order[s:s + self.batch_size]
                    B = len(idx)
                    xb = X.index_select(0, idx)                       # [B, D]
                    w = M.index_select(0, idx).to(dt)                 # [B, k] 0/1 subset weights
                    w.div_(w.sum(0).clamp_min(1.0))                   # mean over the model's part of the chunk
                    g = torch.addmm(b, xb, W).view(B, C, k).softmax(1)
                    g.mul_(w.unsqueeze(1))                            # d(weighted CE)/d(logits) = w * (p - onehot)
                    g[torch.arange(B, device=dev), Y.index_select(0, idx)] -= w
                    g = g.view(B, C * k)
                    torch.mm(xb.T, g, out=gW)
                    torch.sum(g, 0, out=gb)
                    torch._foreach_add_([gW, gb], [W, b], alpha=self.wd)
                    torch._foreach_mul_([bufW, bufb], self.momentum)
                    torch._foreach_add_([bufW, bufb], [gW, gb])
                    torch._foreach_add_([W, b], [bufW, bufb], alpha=-self.lr)
        return W.view(D, C, k), b.view(C, k)

    def train_reference(self, subset):
        """One model: ``torch.nn.Linear`` + autograd + ``torch.optim.SGD`` on the in-subset part of each chunk."""
        import torch
        import torch.nn.functional as F

        D, C = self.X.shape[1], self.n_classes
        lin = torch.nn.Linear(D, C, dtype=self.dtype).to(self.device)
        with torch.no_grad():
            lin.weight.zero_()
            lin.bias.zero_()
        opt = torch.optim.SGD(lin.parameters(), lr=self.lr, momentum=self.momentum, weight_decay=self.wd, foreach=True)
        member = np.zeros(self.n_train, bool)
        member[subset] = True
        for order in self.orders():
            for s in range(0, self.n_train, self.batch_size):
                chunk = order[s:s + self.batch_size]
                sel = torch.from_numpy(chunk[member[chunk]]).to(self.device)
                opt.zero_grad(set_to_none=False)
                if len(sel):
                    F.cross_entropy(lin(self.X.index_select(0, sel)), self.Y.index_select(0, sel)).backward()
                opt.step()
        return lin.weight.detach().T.reshape(D, C, 1), lin.bias.detach().view(C, 1)

    def evaluate(self, W, b) -> Outputs:
        """Scores of class-major models ``W [D, C, k]``, ``b [C, k]`` on all train and test examples."""
        import torch

        D, C, k = W.shape
        N = self.n_train + self.n_test
        correct, prob, margin = np.empty((k, N), bool), np.empty((k, N), np.float32), np.empty((k, N), np.float32)
        Wf, bf = W.reshape(D, C * k), b.reshape(C * k)
        rows = max(16, min(self.eval_batch, 2 ** 23 // (k * C)))  # bound logits memory
        with torch.no_grad():
            for a in range(0, N, rows):
                logits = torch.addmm(bf, self.X[a:a + rows], Wf).view(-1, C, k)
                y = self.Y[a:a + rows]
                c, p, mg = _class_scores(logits, y.view(-1, 1, 1), dim=1)           # [c, k]
                e = a + len(y)
                correct[:, a:e] = c.T.cpu().numpy()
                prob[:, a:e] = p.T.float().cpu().numpy()
                margin[:, a:e] = mg.T.float().cpu().numpy()
        n = self.n_train
        return Outputs(correct[:, :n], correct[:, n:], prob[:, :n], prob[:, n:], margin[:, :n], margin[:, n:])


# --- k-nearest neighbours -------------------------------------------------------------------------

def knn_vote(labels: np.ndarray, y: np.ndarray, k: int):
    """Majority vote over neighbour labels ``[..., k]`` (nearest first) by :func:`memgen.knn.vote`: ties go
    to the tied class whose nearest member is nearest.  Returns (prediction, correct, true-class vote share, margin), where
    margin = (votes of the true class - most votes of another class) / k."""
    pred, counts = vote(labels)                                   # votes of the class at each position
    is_true = labels == y[..., None] if np.ndim(y) else labels == y
    votes_true = is_true.sum(-1)
    votes_other = np.where(is_true, 0, counts).max(-1)
    return pred, pred == y, (votes_true / k).astype(np.float32), ((votes_true - votes_other) / k).astype(np.float32)


@register_learner("knn")
class KNNLearner:
    """k-nearest-neighbour classifier (majority vote of the ``k`` nearest in-subset training examples;
    a training example is its own nearest neighbour when it is in the subset: that is memorization).

    The ``candidates`` nearest training examples of every train and test point are searched once
    (:func:`memgen.knn.search`); a model's prediction takes the first ``k`` candidates inside its
    subset, vectorised over models.  Points with fewer than ``k`` candidates in a subset fall back to an
    exact search over that subset, so the result equals brute-force k-NN on the subset.  Models are a
    deterministic function of the subset (seeds unused).
    """

    @classmethod
    def from_settings(cls, x_train, y_train, x_test, y_test, settings: dict, *, n_classes: int, device: str,
                      show_progress: bool):
        return cls(x_train, y_train, x_test, y_test, **settings, device=resolve_device(device))

    def __init__(self, x_train, y_train, x_test, y_test, k: int = 1, candidates: int | None = None,
                 metric: str = "l2", device: str = "cpu", parallel: int = 16, scale_uint8: bool = True):
        from memgen.knn import search

        self.y_train, self.y_test = _check_task(x_train, y_train, x_test, y_test)
        self.n_train, self.n_test = len(self.y_train), len(self.y_test)
        if not 1 <= k <= self.n_train:
            raise ValueError(f"k={k} must be between 1 and the number of training examples ({self.n_train})")
        self.k, self.metric, self.device, self.parallel = int(k), metric, device, int(parallel)
        self.candidates = int(min(self.n_train, candidates or max(32, 8 * self.k)))
        to = (lambda x: _flat_float(x, __import__("torch").float32, scale_uint8).numpy())
        self.x_train, self.x_test = to(x_train), to(x_test)
        queries = np.concatenate([self.x_train, self.x_test])
        _, self.nbr = search(queries, self.x_train, self.candidates, metric=metric, device=device)
        self.nbr_labels = self.y_train[self.nbr]
        self.y_all = np.concatenate([self.y_train, self.y_test])
        self.name = f"knn_k{self.k}_{metric}_d{self.x_train.shape[1]}"

    def fit_predict(self, subsets, seeds) -> Outputs:
        subsets, seeds = _check_subsets(subsets, seeds, self.n_train)
        out = Outputs.empty(len(subsets), self.n_train, self.n_test)
        n = self.n_train
        for a in range(0, len(subsets), self.parallel):
            qs = list(range(a, min(len(subsets), a + self.parallel)))
            member = np.zeros((len(qs), n), bool)
            for r, q in enumerate(qs):
                member[r, subsets[q]] = True
            inside = member[:, self.nbr]                              # [km, N, K]
            found = inside.sum(-1) >= self.k
            if self.k == 1:
                pos = inside.argmax(-1)[..., None]
            else:
                pos = np.argsort(~inside, axis=-1, kind="stable")[..., :self.k]
            labels = np.take_along_axis(np.broadcast_to(self.nbr_labels, inside.shape), pos, -1)
            _, correct, prob, margin = knn_vote(labels, self.y_all[None, :], self.k)
            for r in range(len(qs)):                                  # exact fallback where candidates ran out
                miss = np.flatnonzero(~found[r])
                if len(miss):
                    correct[r, miss], prob[r, miss], margin[r, miss] = self._exact(subsets[qs[r]], miss)
            out.put(qs, Outputs(correct[:, :n], correct[:, n:], prob[:, :n], prob[:, n:], margin[:, :n], margin[:, n:]))
        return out

    def _exact(self, subset, rows):
        from memgen.knn import search

        queries = np.concatenate([self.x_train, self.x_test])[rows]
        _, idx = search(queries, self.x_train[subset], self.k, metric=self.metric, device=self.device)
        _, correct, prob, margin = knn_vote(self.y_train[subset][idx], self.y_all[rows], self.k)
        return correct, prob, margin


# --- LUT network (binary tasks) -------------------------------------------------------------------

@register_learner("lut")
class LUTLearner:
    """Adapter for :class:`memgen.lut.LUTNetwork` (networks of ``k``-input lookup tables, binary 0/1
    tasks, 0/1 input bits from :func:`memgen.bits.binarize`).  Model ``q`` is ``LUTNetwork(k, (width,) *
    depth, seed=seeds[q]).fit(bits_train[subset], y_train[subset])``, one at a time (the network's own kernels
    are vectorised over LUTs).  The network outputs hard labels, so the
    reported probability is the 0/1 outcome and the margin is +1/-1 (no variance reduction there).
    """

    @classmethod
    def from_settings(cls, bits_train, y_train, bits_test, y_test, settings: dict, *, n_classes: int, device: str,
                      show_progress: bool):
        from memgen.runtime import quick_device

        return cls(bits_train, y_train, bits_test, y_test, **settings, device=quick_device(device))

    def __init__(self, bits_train, y_train, bits_test, y_test, k: int = 8, width: int = 1024, depth: int = 5,
                 device: str = "cpu", threads: int | None = None):
        from memgen.lut.network import check_bits, check_labels

        self.y_train, self.y_test = _check_task(bits_train, y_train, bits_test, y_test)
        check_labels(self.y_train, len(self.y_train))
        if len(self.y_test) and not np.isin(self.y_test, [0, 1]).all():
            raise ValueError("LUT networks learn binary tasks: test labels must be 0/1; relabel the task")
        self.bits_train, self.bits_test = check_bits(bits_train), check_bits(bits_test, np.shape(bits_train)[1])
        self.bits_all = np.concatenate([self.bits_train, self.bits_test])
        self.n_train, self.n_test = len(self.y_train), len(self.y_test)
        self.k, self.widths, self.device, self.threads = int(k), (int(width),) * int(depth), device, threads
        self.name = f"lut_k{self.k}_w{'-'.join(map(str, self.widths))}"

    def fit_predict(self, subsets, seeds) -> Outputs:
        from memgen.lut.network import LUTNetwork

        subsets, seeds = _check_subsets(subsets, seeds, self.n_train)
        y_all = np.concatenate([self.y_train, self.y_test])
        out = Outputs.empty(len(subsets), self.n_train, self.n_test)
        n = self.n_train
        for q, (sub, seed) in enumerate(zip(subsets, seeds)):
            net = LUTNetwork(self.k, self.widths, seed=seed, device=self.device, threads=self.threads)
            net.fit(self.bits_train[sub], self.y_train[sub])
            correct = net.predict(self.bits_all).astype(np.int64) == y_all
            out.correct_train[q], out.correct_test[q] = correct[:n], correct[n:]
            out.prob_train[q], out.prob_test[q] = correct[:n], correct[n:]
            out.margin_train[q], out.margin_test[q] = 2.0 * correct[:n] - 1, 2.0 * correct[n:] - 1
        return out


# --- convolutional network (the full-network case) -------------------------------------------------

@register_learner("net")
class NetLearner:
    """A network of :mod:`memgen.nets` (e.g. ResNet-20) trained from scratch on each subset with
    :func:`memgen.train.train_classifier`, on uint8 images ``[N, H, W, C]``: the document's full-network
    case, GPU scale.  One model at a time; the model seed fixes initialisation, batch order and
    augmentation, so a model is a pure function of (subset, seed).  ``settings`` is a training recipe: ``arch``
    and every key of :data:`memgen.train.RECIPE_KEYS` (the study's config entry, whose schema fills the
    defaults). ``record`` is called as in :class:`MLPLearner` (``[1, b]`` arrays, ``models=[seed]``) at every
    training step. ``precision``: bf16 autocast in training and prediction where it resolves to bf16."""

    # trains with bf16 products where the precision setting resolves to bf16 (from_settings takes ``precision``)
    mixed_precision = True

    @classmethod
    def from_settings(cls, x_train, y_train, x_test, y_test, settings: dict, *, n_classes: int, device: str,
                      show_progress: bool, precision: str = "auto"):
        return cls(x_train, y_train, x_test, y_test, settings, n_classes=n_classes, device=device,
                   precision=precision, show_progress=show_progress)

    def __init__(self, x_train, y_train, x_test, y_test, settings: dict, n_classes: int | None = None,
                 device: str = "auto", precision: str = "auto", show_progress: bool = False, record=None):
        from memgen.data import check_images
        from memgen.train import recipe_kwargs

        self.y_train, self.y_test = _check_task(x_train, y_train, x_test, y_test)
        self.x_train, self.x_test = check_images(x_train), check_images(x_test)
        self.n_train, self.n_test = len(self.y_train), len(self.y_test)
        self.n_classes = int(n_classes or (max(self.y_train.max(initial=0), self.y_test.max(initial=0)) + 1))
        if "arch" not in settings:
            raise ValueError("NetLearner settings need 'arch' (a network of memgen.nets)")
        self.settings = dict(settings)
        self.recipe = recipe_kwargs(self.settings)
        self.device = resolve_device(device)
        self.precision = resolve_precision(precision, self.device)
        self.show_progress = show_progress
        self.record = record
        s = self.settings
        self.name = (f"net_{s['arch']}_e{s['epochs']}_lr{s['lr']:g}_b{s['batch_size']}_{s['schedule']}"
                     + ("_bf16" if self.precision == "bf16" else ""))
        self.checkpoint_dir, self.checkpoint_every_s = None, 300.0

    def checkpoint_to(self, folder, every_s: float = 300.0) -> None:
        """Keep the resume file of the network in training (:func:`memgen.train.train_classifier`, written every
        ``every_s`` seconds) and the outputs of each finished network in ``folder``: a rerun after an interruption
        skips the finished networks and continues the interrupted one. Files are named by a fingerprint of the
        network's data, subset, seed and settings, so a folder left by other settings is never reused."""
        self.checkpoint_dir, self.checkpoint_every_s = Path(folder), float(every_s)

    def _model_key(self, subset, seed: int) -> str:
        h = hashlib.sha256(repr((sorted(self.settings.items()), self.n_classes, int(seed), self.precision)).encode())
        for part in (self.x_train, self.y_train, self.x_test, self.y_test, np.asarray(subset, dtype=np.int64)):
            h.update(repr(part.shape).encode())
            h.update(np.ascontiguousarray(part).tobytes())
        return h.hexdigest()[:24]

    def _build(self):
        from memgen.nets import build_net

        h, _, c = self.x_train.shape[1:]
        extra = {"image_size": h} if self.settings["arch"] in ("mnist_cnn", "lenet") else {}
        return build_net(self.settings["arch"], num_classes=self.n_classes, in_channels=c, **extra)

    def fit_predict(self, subsets, seeds) -> Outputs:
        import torch

        from memgen.runtime import seed_everything
        from memgen.train import predict_logits, train_classifier

        subsets, seeds = _check_subsets(subsets, seeds, self.n_train)
        n = self.n_train
        out = Outputs.empty(len(subsets), n, self.n_test)
        x_all = np.concatenate([self.x_train, self.x_test])
        y_all = torch.from_numpy(np.concatenate([self.y_train, self.y_test]))
        for q in progress(range(len(subsets)), desc="networks", disable=not self.show_progress):
            key = self._model_key(subsets[q], seeds[q]) if self.checkpoint_dir else None
            finished = self.checkpoint_dir / f"outputs_{key}.npz" if key else None
            recorded = self.checkpoint_dir / f"record_{key}.pt" if key and self.record is not None else None
            if finished and finished.exists():
                with np.load(finished) as z:
                    out.put([q], Outputs(*(z[f] for f in Outputs.__dataclass_fields__)))
                if recorded:      # the recorder's sums after this network (networks run in order)
                    self.record.load_state_dict(torch.load(recorded, weights_only=False))
                continue
            seed_everything(seeds[q])
            model = self._build()
            record = None if self.record is None else _SubsetRecord(self.record, subsets[q], seeds[q], self.device)
            train_classifier(model, self.x_train[subsets[q]], self.y_train[subsets[q]], **self.recipe,
                             device=self.device, seed=seeds[q], precision=self.precision, show_progress=False, record=record,
                             resume_path=self.checkpoint_dir / f"training_{key}.pt" if key else None,
                             checkpoint_every_s=self.checkpoint_every_s)
            logits = torch.from_numpy(predict_logits(model, x_all, device=self.device,
                                                             precision=self.precision))[None]
            c, p, m = scores_from_logits(logits, y_all)
            result = Outputs(c[:, :n], c[:, n:], p[:, :n], p[:, n:], m[:, :n], m[:, n:])
            if recorded:
                with atomic_path(recorded) as tmp:
                    torch.save(self.record.state_dict(), tmp)
            if finished:
                save_npz(finished, compress=False, **{f: getattr(result, f) for f in Outputs.__dataclass_fields__})
            out.put([q], result)
        return out


class _SubsetRecord:
    """A network's record hook: maps batch positions in its subset to training positions for the shard's recorder,
    whose sums it saves and restores with the network's training state."""

    def __init__(self, recorder, subset, seed: int, device: str):
        import torch

        self.recorder, self.seed = recorder, int(seed)
        self.subset = torch.as_tensor(subset, device=device)

    def __call__(self, epoch, idx, prob, correct) -> None:
        self.recorder(epoch, self.subset[idx][None], prob[None], correct[None], models=[self.seed])

    def state_dict(self) -> dict:
        return self.recorder.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.recorder.load_state_dict(state)
