"""The ``linear`` learner: softmax regression on fixed features, thousands of models at once (:class:`LinearProbe`)."""

from __future__ import annotations

import numpy as np

from memgen.influence.learners import Outputs, _check_subsets, _check_task, _class_scores, _flat_float, register_learner
from memgen.runtime import progress, resolve_device

__all__ = ["LinearProbe"]


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
