"""Gates between the network and the k-NN memory: per example, whose prediction to use.

* :func:`oracle_gate` -- the upper bound (whichever of the two is right), always reported, for the same pair
  (network, k-NN) the fitted gates of that ``k`` choose between;
* :data:`GATES` -- the fitted gates, registered with :func:`register_gate`: :class:`LearnedGate` (logistic
  regression on confidence / vote / distance features) and :class:`KnnInterpolation` (``p = lam * p_knn +
  (1 - lam) * p_net``, kNN-LM). The gate stage fits every registered gate and the evaluation reports each under
  its ``label``.

Labels name the pair: ``{k}`` in a label is the gate's number of neighbours. A fitted gate sees
:class:`GateInputs`, whose k-NN answer ``knn_pred`` is :func:`memgen.retrieval.memory.knn_classify`'s (the one
tie rule of every k-NN vote, :func:`memgen.knn.vote`); ``fit`` takes ``example_ids`` and ``backbone_train_ids`` and refuses to
fit when they overlap: gates are fit on the validation hold-out only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from memgen.retrieval.memory import knn_classify, knn_softmax

ORACLE_LABEL = "Oracle gate {k}-NN/network"


def oracle_gate(pred_a: np.ndarray, pred_b: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Upper bound: per example, the prediction of whichever model is correct (``pred_a`` when neither is).

    Its accuracy is the fraction of examples that at least one of the two gets right.
    """
    pred_a, pred_b, y = np.asarray(pred_a), np.asarray(pred_b), np.asarray(y)
    return np.where(pred_a == y, pred_a, np.where(pred_b == y, pred_b, pred_a))


def _check_holdout(example_ids, backbone_train_ids, n: int, what: str) -> None:
    example_ids = np.asarray(example_ids)
    if example_ids.shape != (n,):
        raise ValueError(f"{what}: example_ids must name each of the {n} fitting examples, got {example_ids.shape}")
    overlap = np.intersect1d(example_ids, np.asarray(backbone_train_ids))
    if len(overlap):
        raise ValueError(f"{what}: {len(overlap)} fitting examples (e.g. id {overlap[0]}) are in the backbone's "
                         "training set; fit gates on the validation hold-out (split val_idx) only")


@dataclass
class GateInputs:
    """What a gate sees of a set of examples: the network's softmax ``net_probs [N, C]``, the ``k``-NN vote shares
    ``knn_shares [N, C]``, the labels ``neighbor_labels [N, k]`` and distances ``nb_dist [N, k]`` of the ``k``
    nearest stored examples, and the k-NN's answer ``knn_pred [N]`` (the vote with its tie rule, as in the
    k-NN's own Table 1 row; not ``knn_shares.argmax``, which breaks ties by class index)."""

    net_probs: np.ndarray
    knn_shares: np.ndarray
    neighbor_labels: np.ndarray
    nb_dist: np.ndarray
    n_classes: int
    knn_pred: np.ndarray

    @classmethod
    def from_neighbors(cls, net_probs, neighbor_labels, nb_dist, n_classes: int) -> "GateInputs":
        """Inputs with the majority vote (answer and shares) of all ``k`` given neighbours."""
        pred, shares = knn_classify(neighbor_labels, n_classes, k=np.shape(neighbor_labels)[1])
        return cls(np.asarray(net_probs), shares, np.asarray(neighbor_labels), np.asarray(nb_dist), int(n_classes),
                   pred)


# The fitted gates by key (the name of their predictions in gates.npz and of their entries in gates.json).
GATES: dict[str, type] = {}


def register_gate(key: str, label: str):
    """Class decorator: a fitted gate, reported as method ``label`` (``{k}`` in it: the gate's k-NN). The class has ``fit(inputs, y, *,
    example_ids, backbone_train_ids) -> self``, ``predict(inputs) -> labels``, ``summary() -> dict`` (its fitted
    settings, JSON-ready) and ``arrays(inputs) -> dict`` (per-example outputs worth keeping, may be empty)."""
    def register(cls):
        if key in GATES:
            raise ValueError(f"gate '{key}' is registered twice ({GATES[key].__name__}, {cls.__name__})")
        cls.key, cls.label = key, label
        GATES[key] = cls
        return cls
    return register


GATE_FEATURES = ("net_conf", "net_margin", "net_entropy", "knn_share", "knn_margin", "knn_share_of_net_pred",
                 "net_prob_of_knn_pred", "agree", "log_d1", "log_dmean", "d1_over_dmean")


def gate_features(net_probs: np.ndarray, knn_shares: np.ndarray, nb_dist: np.ndarray,
                  knn_pred: np.ndarray) -> np.ndarray:
    """Features ``[N, len(GATE_FEATURES)]`` for :class:`LearnedGate`: softmax confidence and margin, entropy,
    k-NN vote share and margin, cross-support of the two predictions (``knn_pred``: the k-NN's answer),
    agreement, neighbour distances."""
    p = np.asarray(net_probs, dtype=np.float64)
    s = np.asarray(knn_shares, dtype=np.float64)
    d = np.maximum(np.asarray(nb_dist, dtype=np.float64), 0.0)
    rows = np.arange(len(p))
    ps, ss = np.sort(p, 1), np.sort(s, 1)
    net_pred, knn_pred = p.argmax(1), np.asarray(knn_pred)
    feats = [ps[:, -1], ps[:, -1] - ps[:, -2], -(p * np.log(np.clip(p, 1e-12, 1))).sum(1),
             ss[:, -1], ss[:, -1] - ss[:, -2], s[rows, net_pred], p[rows, knn_pred],
             (net_pred == knn_pred).astype(np.float64),
             np.log1p(d[:, 0]), np.log1p(d.mean(1)), d[:, 0] / np.maximum(d.mean(1), 1e-12)]
    return np.stack(feats, 1)


@register_gate("learned_gate", "Learned gate network/{k}-NN")
class LearnedGate:
    """Logistic-regression gate that picks the network's or the k-NN's prediction per example.

    Fitted on the examples where exactly one of the two is right (elsewhere the choice does not matter),
    with target "the k-NN is right"; at prediction time the k-NN answer is used when that probability exceeds
    ``threshold``. If the fitting set has fewer than ``min_per_side`` examples on either side, the gate is
    constant: it always uses whichever model was more accurate on the fitting set (``constant`` says which).
    """

    def __init__(self, C: float = 1.0, threshold: float = 0.5, min_per_side: int = 5):
        self.C, self.threshold, self.min_per_side = C, threshold, min_per_side
        self.model = None
        self.constant: str | None = None
        self.n_fit = 0

    def fit(self, inputs: GateInputs, y, *, example_ids, backbone_train_ids) -> "LearnedGate":
        """Fit on held-out examples. ``example_ids`` are the dataset indices of these examples and
        ``backbone_train_ids`` those the backbone (and memory) trained on; any overlap raises ValueError."""
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        y = np.asarray(y)
        _check_holdout(example_ids, backbone_train_ids, len(y), "LearnedGate.fit")
        net_probs, knn_shares, nb_dist = inputs.net_probs, inputs.knn_shares, inputs.nb_dist
        net_ok = np.asarray(net_probs).argmax(1) == y
        knn_ok = np.asarray(inputs.knn_pred) == y
        informative = net_ok != knn_ok
        target = knn_ok[informative].astype(int)
        self.n_fit = int(informative.sum())
        if target.sum() < self.min_per_side or (1 - target).sum() < self.min_per_side:
            self.constant = "knn" if knn_ok.mean() > net_ok.mean() else "net"
            self.model = None
            return self
        X = gate_features(net_probs, knn_shares, nb_dist, inputs.knn_pred)[informative]
        self.model = make_pipeline(StandardScaler(), LogisticRegression(C=self.C, max_iter=2000))
        self.model.fit(X, target)
        self.constant = None
        return self

    def knn_probability(self, inputs: GateInputs) -> np.ndarray:
        """Probability, per example, that the gate should trust the k-NN."""
        if self.model is None and self.constant is None:
            raise RuntimeError("LearnedGate is not fitted; call fit() on validation examples first")
        if self.model is None:
            return np.full(len(inputs.net_probs), 1.0 if self.constant == "knn" else 0.0)
        return self.model.predict_proba(gate_features(inputs.net_probs, inputs.knn_shares, inputs.nb_dist,
                                                      inputs.knn_pred))[:, 1]

    def predict(self, inputs: GateInputs) -> np.ndarray:
        use_knn = self.knn_probability(inputs) > self.threshold
        return np.where(use_knn, np.asarray(inputs.knn_pred), np.asarray(inputs.net_probs).argmax(1))

    def summary(self) -> dict:
        return {"constant": self.constant, "n_fit": self.n_fit}

    def arrays(self, inputs: GateInputs) -> dict:
        return {"use_knn": self.knn_probability(inputs)}


@register_gate("knn_lm", "kNN-LM interpolation network/{k}-NN")
class KnnInterpolation:
    """kNN-LM-style mixture ``p = lam * p_knn + (1 - lam) * p_net`` with ``p_knn = softmax(-d / T)`` by label.

    ``lam`` (grid ``lambdas``) and ``T`` (grid: ``temperature_factors`` x the median 1-NN distance of the
    fitting set, plus ``inf`` = plain vote share) are chosen on held-out examples by accuracy, ties broken by
    lower negative log-likelihood.
    """

    def __init__(self, lambdas=None, temperature_factors=(0.1, 0.3, 1.0, 3.0, 10.0)):
        self.lambdas = np.linspace(0, 1, 21) if lambdas is None else np.asarray(lambdas, dtype=np.float64)
        self.temperature_factors = tuple(temperature_factors)
        self.lam: float | None = None
        self.temperature: float | None = None
        self.table: pd.DataFrame | None = None

    def fit(self, inputs: GateInputs, y, *, example_ids, backbone_train_ids) -> "KnnInterpolation":
        """Pick ``lam`` and ``T`` on held-out examples (``example_ids`` must not overlap ``backbone_train_ids``)."""
        y = np.asarray(y)
        _check_holdout(example_ids, backbone_train_ids, len(y), "KnnInterpolation.fit")
        neighbor_labels, n_classes = inputs.neighbor_labels, inputs.n_classes
        p_net = np.asarray(inputs.net_probs, dtype=np.float64)
        d = np.asarray(inputs.nb_dist, dtype=np.float64)
        scale = max(float(np.median(d[:, 0])), 1e-12)
        rows = []
        for T in [scale * f for f in self.temperature_factors] + [np.inf]:
            p_knn = knn_softmax(neighbor_labels, d, n_classes, T)
            for lam in self.lambdas:
                p = lam * p_knn + (1 - lam) * p_net
                acc = float((p.argmax(1) == y).mean())
                nll = float(-np.log(np.clip(p[np.arange(len(y)), y], 1e-12, 1)).mean())
                rows.append({"temperature": T, "lam": float(lam), "accuracy": acc, "nll": nll})
        self.table = pd.DataFrame(rows)
        best = self.table.sort_values(["accuracy", "nll"], ascending=[False, True]).iloc[0]
        self.lam, self.temperature = float(best["lam"]), float(best["temperature"])
        self.n_classes = n_classes
        return self

    def predict_proba(self, inputs: GateInputs) -> np.ndarray:
        if self.lam is None:
            raise RuntimeError("KnnInterpolation is not fitted; call fit() on validation examples first")
        p_knn = knn_softmax(inputs.neighbor_labels, inputs.nb_dist, self.n_classes, self.temperature)
        return self.lam * p_knn + (1 - self.lam) * np.asarray(inputs.net_probs, dtype=np.float64)

    def predict(self, inputs: GateInputs) -> np.ndarray:
        return self.predict_proba(inputs).argmax(1)

    def summary(self) -> dict:
        return {"lambda": self.lam, "temperature": self.temperature}

    def arrays(self, inputs: GateInputs) -> dict:
        return {}
