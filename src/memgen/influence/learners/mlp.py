"""The ``mlp`` learner: a fully connected ReLU network, many models trained at once (:class:`MLPLearner`)."""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from memgen.influence.learners import (Outputs, _check_subsets, _check_task, _flat_float, _groups_by_size,
                                      register_learner, scores_from_logits)
from memgen.runtime import autocast, progress, resolve_device, resolve_precision

__all__ = ["MLPLearner", "epoch_orders", "mlp_init"]


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
                if self.record is not None:   # filled per step, handed to the recorder once per epoch
                    seen_prob = torch.empty(k, m, dtype=dt, device=dev)
                    seen_correct = torch.empty(k, m, dtype=torch.bool, device=dev)
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
                        seen_prob[:, s:s + b] = g.gather(2, yk)[..., 0]
                        seen_correct[:, s:s + b] = acts[-1].argmax(-1) == yk[..., 0]
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
                if self.record is not None:
                    self.record(e, gidx, seen_prob, seen_correct, models=seeds)
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
