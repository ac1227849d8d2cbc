"""The ``mlp`` learner: a fully connected ReLU network, many models trained at once (:class:`MLPLearner`)."""

from __future__ import annotations

import functools
import math
import sys
from typing import Sequence

import numpy as np

from memgen.influence.learners import (Outputs, _check_subsets, _check_task, _flat_float, _groups_by_size,
                                      register_learner, scores_from_logits)
from memgen.runtime import autocast, progress, resolve_device, resolve_precision

__all__ = ["MLPLearner", "compiled_sgd_step", "epoch_orders", "mlp_init", "sgd_step"]


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


def sgd_step(X, Y, idx, Ws, bs, bufW, bufb, low16, lr: float, momentum: float):
    """One SGD + momentum step of ``k`` MLPs on their batches ``idx [k, b]`` (rows of ``X``, labels ``Y``): forward,
    hand-written backward of the mean cross-entropy and update, in place, of the fp32 master weights
    ``Ws [k, in, out]`` / ``bs [k, 1, out]``, their momentum buffers ``bufW`` / ``bufb`` (torch's SGD:
    ``buf = momentum * buf + grad``) and ``low16``, the bf16 copies of the hidden layers that bf16 products read
    (empty in fp32). Returns each example's true-class probability and correctness before the step, ``[k, b]``.

    In fp32 the momentum update is folded into the weight-gradient product (one GEMM with ``beta=momentum``, no
    gradient tensor). In bf16 the hidden layers' products are bf16; the output layer (logits, loss and its
    gradient) and the bias gradients fp32. One model (``k`` = 1) takes 2-D products (``addmm`` fuses the bias; a
    little faster than ``baddbmm`` on the CPU)."""
    import torch

    k, b = idx.shape
    L, bf16, one = len(Ws), bool(low16), k == 1
    Wc = [*low16[:L - 1], Ws[-1]] if bf16 else Ws
    bc = [*low16[L - 1:], bs[-1]] if bf16 else bs
    acts = [X.index_select(0, idx.reshape(-1)).view(k, b, -1)]   # each layer's input, then the logits
    for l in range(L):
        a = acts[l].float() if bf16 and l == L - 1 else acts[l]   # bf16: the fp32 output layer's input, cast once
        h = torch.addmm(bc[l][0, 0], a[0], Wc[l][0]).unsqueeze(0) if one else torch.baddbmm(bc[l], a, Wc[l])
        acts.append(h.relu_() if l < L - 1 else h)
    head_in = a
    g = torch.softmax(acts[-1], dim=-1)          # d(mean cross-entropy)/d(logits) after the next two lines
    yb = Y.index_select(0, idx.reshape(-1)).view(k, b)
    seen = g.gather(2, yb[..., None])[..., 0], acts[-1].argmax(-1) == yb
    g.view(k * b, -1)[torch.arange(k * b, device=g.device), yb.reshape(-1)] -= 1.0
    g.mul_(1.0 / b)
    for l in range(L - 1, -1, -1):
        a = head_in if l == L - 1 else acts[l]
        if g.dtype == bufW[l].dtype:   # fused into the weight-gradient product: one GEMM
            if one:
                bufW[l][0].addmm_(a[0].T, g[0], beta=momentum)
            else:
                bufW[l].baddbmm_(a.transpose(1, 2), g, beta=momentum)
        else:                          # a bf16 product, accumulated into the fp32 buffer
            grad = torch.mm(a[0].T, g[0]).unsqueeze(0) if one else torch.bmm(a.transpose(1, 2), g)
            torch.add(grad, bufW[l], alpha=momentum, out=bufW[l])
        bufb[l].mul_(momentum).add_(g.sum(1, keepdim=True, dtype=bufb[l].dtype))
        if l > 0:
            g = torch.mm(g[0], Wc[l][0].T).unsqueeze(0) if one else torch.bmm(g, Wc[l].transpose(1, 2))
            if bf16 and l == L - 1:
                g = g.to(torch.bfloat16)
            torch.ops.aten.threshold_backward.grad_input(g, acts[l], 0.0, grad_input=g)   # through the ReLU
    torch._foreach_add_([*Ws, *bs], [*bufW, *bufb], alpha=-lr)
    if bf16:
        torch._foreach_copy_(low16, [*Ws[:-1], *bs[:-1]])
    return seen


@functools.cache
def compiled_sgd_step():
    """:func:`sgd_step` compiled by ``torch.compile`` (Inductor; on the CPU, C++ loops that fuse the casts, the ReLU
    masks, the loss gradient and the update around the matrix products), built once per process. Each shape
    compiles on its first call, or loads from Inductor's on-disk cache (``TORCHINDUCTOR_CACHE_DIR``; the workflow
    keeps it in ``.snakemake/memgen/torchinductor``) where an earlier process compiled it. ``fullgraph``: anything
    dynamo cannot compile whole, a recompile limit included, raises instead of running eager unannounced."""
    import torch

    return torch.compile(sgd_step, dynamic=False, fullgraph=True)


@register_learner("mlp")
class MLPLearner:
    """Fully connected ReLU network trained with SGD + momentum on cross-entropy (the authors' MNIST
    demo: 784-512-256-10, lr 0.1, momentum 0.9, batch 128, 10 epochs).

    ``mode="batched"`` trains ``parallel`` models at once with batched matrix products and a
    hand-written backward pass (:func:`sgd_step`): data preallocated on the device, one ``index_select`` per
    batch and one foreach parameter update per step.  With ``k`` = 1 it is the fast single-model path.
    ``compile=True`` (on the CPU) runs the step compiled (:func:`compiled_sgd_step`) and the short last batch of an
    epoch eager; where compiling fails the learner says why on stderr and trains eager. ``training_step`` records
    which ran: ``{"step": "compiled"}`` or ``{"step": "eager", "reason": ...}`` (shards keep it).
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
    ``record`` (e.g. a :class:`memgen.learning_speed.LearningSpeedRecorder` keyed by model seed) receives every training
    pass as ``record(epoch, idx [k, n], prob [k, n], correct [k, n], models=seeds)``: each model's positions, their
    true-class probability and correctness in the forward pass before their step. The batched path calls it once
    per epoch with the whole epoch (one scatter instead of one per step); the reference path once per batch.
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
                 precision: str = "auto", eval_batch: int = 8192, compile: bool = True, show_progress: bool = False,
                 record=None):
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
        if mode == "reference":
            self.training_step = {"step": "eager", "reason": "reference mode: torch.nn with autograd"}
        elif not compile:
            self.training_step = {"step": "eager", "reason": "compile: false"}
        elif self.device != "cpu":
            self.training_step = {"step": "eager", "reason": f"compiled on the CPU only, not on {self.device}"}
        else:
            self.training_step = {"step": "compiled"}
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
        k, m = subsets.shape
        inits = [mlp_init(self.sizes, s, dt) for s in seeds]
        Ws = [torch.stack([p[l][0] for p in inits]).to(dev) for l in range(len(self.sizes) - 1)]
        bs = [torch.stack([p[l][1] for p in inits]).unsqueeze(1).to(dev) for l in range(len(self.sizes) - 1)]
        bufW, bufb = [torch.zeros_like(w) for w in Ws], [torch.zeros_like(b) for b in bs]   # momentum buffers
        # the weights the bf16 products read: bf16 copies of the hidden layers (refreshed after each update)
        low16 = [t.to(torch.bfloat16) for t in [*Ws[:-1], *bs[:-1]]] if self.precision == "bf16" else []
        sub = torch.from_numpy(subsets).to(dev)
        orders = [epoch_orders(s, m, self.epochs) for s in seeds]
        with torch.no_grad():
            for e in range(self.epochs):
                perm = torch.from_numpy(np.stack([o[e] for o in orders])).to(dev)
                gidx = torch.gather(sub, 1, perm)  # [k, m] positions in visiting order
                seen = []
                for s in range(0, m, self.batch_size):
                    # contiguous: a view's strides would carry the subset size into the compiled step's guards
                    idx = gidx[:, s:s + self.batch_size].contiguous()
                    # a short last batch runs eager: its shape, one per subset size, would compile again
                    step = self._step if idx.shape[1] == self.batch_size else sgd_step
                    seen.append(step(self.X, self.Y, idx, Ws, bs, bufW, bufb, low16, self.lr, self.momentum))
                if self.record is not None:   # the whole epoch at once: one scatter instead of one per step
                    self.record(e, gidx, torch.cat([p for p, _ in seen], 1), torch.cat([c for _, c in seen], 1),
                                models=seeds)
        return list(zip(Ws, bs))

    def _step(self, *args):
        """:func:`sgd_step` as ``training_step`` says: compiled, or eager for good once compiling failed."""
        if self.training_step["step"] == "compiled":
            try:
                return compiled_sgd_step()(*args)
            except Exception as err:   # no compiler, an unsupported platform or torch build, a compiler error
                first = (str(err).strip().splitlines() or [""])[0][:300]
                self.training_step = {"step": "eager", "reason": f"torch.compile failed: {type(err).__name__}: {first}"}
                print(f"MLP learner: {self.training_step['reason']}; training with the eager step", file=sys.stderr,
                      flush=True)
        return sgd_step(*args)

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
