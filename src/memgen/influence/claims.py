"""Feldman & Zhang's claims, each tested on this run's estimates with a 95% interval (:mod:`memgen.claims`):
removal of memorized examples against random ones (Figure 2, per threshold), full networks against linear models
on their representation (the last-layer finding), cross-architecture consistency against each side's noise floor
(Figure 7) and high-influence pairs beyond estimation noise (Figure 4).

The document trains t = 4,000 models per study (2,000 on ImageNet) and repeats removal 100 times (MNIST,
CIFAR-100); each claim says the scale it was measured at.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from memgen.claims import Claim, above, below, bootstrap_interval, judge, write_claims
from memgen.influence.estimator import (below_probability, chance_probability, consistency_mem, mem_posterior,
                                       removal_difference)
from memgen.influence.stages import MEM_THETA
from memgen.influence.tables import PUBLISHED_LAST_LAYER, floor_pair, same_algorithm, study_run

DOCUMENT = "F&Z"
DOCUMENT_T = 4000                 # models per study on MNIST and CIFAR-100
DOCUMENT_TRIALS = 100             # removal trials on MNIST and CIFAR-100 (Figure 2)
Z = float(stats.norm.ppf(0.975))
# "Nearly as consistent as one architecture with itself": the document shows J_mem of other architectures below
# ResNet50's own without a number; an overlap at most 0.1 under the worse floor counts as nearly as consistent.
CONSISTENCY_TOLERANCE = 0.1
PUBLISHED_NETWORK_COUNT = PUBLISHED_LAST_LAYER["examples with mem >= 0.25, full networks"]
PUBLISHED_LINEAR_COUNT = PUBLISHED_LAST_LAYER["examples with mem >= 0.25, linear models"]

REMOVAL = Claim(DOCUMENT, "Figure 2", "Removing the examples with mem >= theta lowers test accuracy more than "
                "removing as many random ones", "test accuracy, memorized removed minus random removed (points)",
                below(0.0))
LAST_LAYER = Claim(DOCUMENT, "Section 4, last layer", "Full networks memorize far more examples than linear models "
                   "trained on their representation", "examples with mem >= 0.25, full networks minus linear models",
                   above(0.0), published=PUBLISHED_NETWORK_COUNT - PUBLISHED_LINEAR_COUNT)
CONSISTENCY = Claim(DOCUMENT, "Figure 7", "Two architectures' memorization estimates agree nearly as well as two "
                    f"runs of one architecture (J_mem at most {CONSISTENCY_TOLERANCE:g} under the worse noise floor)",
                    "J_mem(a, b) minus the worse same-algorithm floor, mem >= 0.25", above(-CONSISTENCY_TOLERANCE))
PAIRS = Claim(DOCUMENT, "Figure 4", "Memorized training examples strongly influence some test examples: "
              "high-influence pairs exist beyond estimation noise", "high-influence pairs minus those expected if "
              "nothing influenced anything", above(0.0))
CLAIMS = (REMOVAL, LAST_LAYER, CONSISTENCY, PAIRS)


def _scale(t: int, extra: str = "") -> str:
    return f"t = {t} models{extra} (document: t = {DOCUMENT_T:,})"


def removal_claims(removal: dict, scores: dict) -> list[dict]:
    """Per removal study and threshold: memorized minus random removal, with a Welch interval over the trials."""
    rows = []
    for study, path in removal.items():
        df = pd.read_csv(path)
        retrained = bool(df["representation_retrained"].iloc[0])
        for r in removal_difference(df).itertuples():
            why = "nothing removed at this threshold" if r.n_removed == 0 else \
                "one trial: no interval" if r.trials < 2 else f"Welch t over {r.trials} trials of each kind"
            effect, lo, hi = (r.difference, np.nan, np.nan) if r.n_removed == 0 else (r.difference, r.lo, r.hi)
            scale = _scale(study_run(scores[study])[2], f", {r.trials} removal trials (document: {DOCUMENT_TRIALS})"
                           + ("" if retrained else "; only the last layer refit on fixed embeddings"))
            rows.append(judge(REMOVAL, effect, lo, hi, statistic=f"{study}, theta = {r.theta:g}, "
                              f"{r.n_removed} removed: {why}", scale=scale))
    return rows


def memorized_count(scores_npz, theta: float = MEM_THETA) -> tuple[float, float]:
    """Posterior expected number of examples whose true mem is at least ``theta`` and its standard deviation
    (:func:`memgen.influence.estimator.mem_posterior`): the count a point or lower-bound count estimates."""
    with np.load(scores_npz) as z:
        k_in = np.rint(z["in_acc"] * z["n_in"])
        post = mem_posterior(k_in, z["n_in"], z["n_correct"] - k_in, int(z["t"]) - z["n_in"])
    above_theta = 1 - below_probability(post, theta)
    above_theta = np.clip(above_theta[np.isfinite(above_theta)], 0, 1)
    return float(above_theta.sum()), float(np.sqrt(np.sum(above_theta * (1 - above_theta))))


def last_layer_claim(last_layer: dict, scores: dict) -> list[dict]:
    """Full networks minus linear models: posterior expected counts of mem >= 0.25, normal interval."""
    linear, network = last_layer.get("linear"), last_layer.get("network")
    if not linear:
        return []
    if not network:
        return [judge(LAST_LAYER, np.nan, np.nan, np.nan, statistic=f"{linear} only: no full-network study at this "
                      "preset (workflow/presets/paper.yaml adds one)", scale=_scale(study_run(scores[linear])[2]))]
    (n_net, sd_net), (n_lin, sd_lin) = memorized_count(scores[network]), memorized_count(scores[linear])
    half = Z * np.hypot(sd_net, sd_lin)
    effect = n_net - n_lin
    t_net, t_lin = study_run(scores[network])[2], study_run(scores[linear])[2]
    scale = _scale(min(t_net, t_lin), f" ({network} {t_net}, {linear} {t_lin})")
    return [judge(LAST_LAYER, effect, effect - half, effect + half, scale=scale,
                  statistic=f"{network} {n_net:.0f} - {linear} {n_lin:.0f}: posterior expected counts (empirical "
                  "Bayes), normal interval of their Bernoulli sums")]


def _jaccard(a: np.ndarray, b: np.ndarray, theta: float) -> float:
    return float(consistency_mem(a, b, [theta])["J_mem"].iloc[0])


def consistency_claims(pairs_of_studies, scores: dict, studies: dict, theta: float = MEM_THETA,
                       n_boot: int = 1000) -> list[dict]:
    """Per configured pair of two algorithms: J_mem(a, b) minus the worse of the two sides' same-algorithm floors
    (:func:`memgen.influence.tables.floor_pair`), with a bootstrap over the training examples (all four
    estimates resampled together, so the pair and its floors stay paired)."""
    runs = {name: study_run(scores[name]) for pair in pairs_of_studies for name in pair}
    mems = {}

    def mem(name):
        if name not in mems:
            with np.load(scores[name]) as z:
                mems[name] = np.asarray(z["mem"], float)
        return mems[name]

    rows = []
    for a, b in pairs_of_studies:
        if same_algorithm(studies[a], studies[b]):
            continue
        floors = {side: floor_pair(side, pairs_of_studies, studies, runs) for side in (a, b)}
        scale = _scale(min(runs[a][2], runs[b][2]), f" ({a} {runs[a][2]}, {b} {runs[b][2]})")
        missing = [side for side, pair in floors.items() if pair is None]
        if missing:
            rows.append(judge(CONSISTENCY, np.nan, np.nan, np.nan, statistic=f"{a} vs {b}: no independent "
                              f"same-algorithm pair of {', '.join(missing)} at its t configured", scale=scale))
            continue
        (xa, ya), (xb, yb) = floors[a], floors[b]

        def gap(ma, mb, fa_x, fa_y, fb_x, fb_y):
            return _jaccard(ma, mb, theta) - min(_jaccard(fa_x, fa_y, theta), _jaccard(fb_x, fb_y, theta))

        effect, lo, hi = bootstrap_interval(gap, mem(a), mem(b), mem(xa), mem(ya), mem(xb), mem(yb), n_boot=n_boot)
        rows.append(judge(CONSISTENCY, effect, lo, hi, scale=scale, statistic=(
            f"{a} vs {b}: J_mem {_jaccard(mem(a), mem(b), theta):.3f}, floors {xa} vs {ya} "
            f"{_jaccard(mem(xa), mem(ya), theta):.3f} and {xb} vs {yb} {_jaccard(mem(xb), mem(yb), theta):.3f}; "
            f"bootstrap over training examples ({n_boot})")))
    return rows


def pairs_claim(study: str, scores_npz, pairs_csv, infl_threshold: float, mem_threshold: float,
                n_boot: int = 2000) -> list[dict]:
    """High-influence pairs of the Figure-4 study against the pairs expected if no training example influenced any
    test example.  A candidate pair (a training example with mem >= ``mem_threshold`` against a test example)
    reaches ``infl_threshold`` by chance with the probability that permuting the training example's in/out flags
    across the t models gives it, the test example's correct models kept
    (:func:`memgen.influence.estimator.chance_probability`).  The effect is the pairs found minus those expected,
    summed over the memorized training examples, with a bootstrap over them (a training example's pairs share its
    subsets, so they are not independent).  At small t noise alone gives most of the pairs."""
    with np.load(scores_npz) as z:
        mem, n_in, t, test_correct = z["mem"], z["n_in"], int(z["t"]), z["test_n_correct"]
    rows = np.flatnonzero(mem >= mem_threshold)
    correct, tests = np.unique(test_correct, return_counts=True)
    ins, inverse = np.unique(n_in[rows], return_inverse=True)
    grid_in, grid_correct = np.meshgrid(ins, correct, indexing="ij")
    p = chance_probability(grid_correct.ravel(), grid_in.ravel(), t, infl_threshold).reshape(grid_in.shape)
    expected = np.nan_to_num(p) @ tests                           # per memorized example, pairs from noise alone
    pairs = pd.read_csv(pairs_csv)
    found = pairs["train_pos"].value_counts().reindex(rows, fill_value=0).to_numpy()
    excess = found - expected[inverse.ravel()]
    effect, lo, hi = bootstrap_interval(np.sum, excess, n_boot=n_boot) if len(rows) else (np.nan, np.nan, np.nan)
    return [judge(PAIRS, effect, lo, hi, scale=_scale(t), statistic=(
        f"{study}: {len(pairs)} pairs with infl >= {infl_threshold:g} and mem >= {mem_threshold:g}, "
        f"{expected[inverse.ravel()].sum():.1f} expected if nothing influenced anything, over {len(rows)} memorized x "
        f"{tests.sum()} test examples; bootstrap over the memorized examples ({n_boot})"))]


def write_influence_claims(output, *, scores: dict, removal: dict, studies: dict, consistency, last_layer: dict,
                           figure_study: str | None, pairs: dict, infl_threshold: float,
                           mem_threshold: float) -> list[dict]:
    """Every F&Z claim this configuration can test, one row each (:data:`memgen.claims.CLAIM_COLUMNS`)."""
    rows = removal_claims(removal, scores) + last_layer_claim(last_layer, scores) + \
        consistency_claims([tuple(p) for p in consistency], scores, studies)
    if figure_study:
        rows += pairs_claim(figure_study, scores[figure_study], pairs[figure_study], infl_threshold, mem_threshold)
    write_claims(rows, output)
    return rows
