"""How well a proxy tracks the subsampling estimate: Spearman correlation with held-out accuracy and with ``mem``,
and the overlap of the top-1% sets, on the examples both cover (:func:`validate`), with a verdict in words."""

from __future__ import annotations

import numpy as np
import pandas as pd


def _least_set(values: np.ndarray, size: int, seed: int) -> np.ndarray:
    """Positions of the ``size`` smallest values, ties broken at random (seeded): estimates of few models tie."""
    tiebreak = np.random.default_rng(seed).random(len(values))
    return np.lexsort((tiebreak, values))[:size]


def agreement(proxy: np.ndarray, heldout: np.ndarray, mem: np.ndarray, top_fraction: float = 0.01,
              seed: int = 0) -> dict:
    """Spearman correlation of a regularity proxy with held-out accuracy and with ``mem``, and the share of the
    ``top_fraction`` most memorized (and of the lowest held-out accuracy) examples that are also among the
    ``top_fraction`` least regular by the proxy (chance: ``top_fraction``)."""
    from scipy.stats import spearmanr

    proxy, heldout, mem = (np.asarray(a, np.float64) for a in (proxy, heldout, mem))
    ok = np.isfinite(proxy) & np.isfinite(heldout) & np.isfinite(mem)
    proxy, heldout, mem = proxy[ok], heldout[ok], mem[ok]
    size = max(1, int(round(top_fraction * len(proxy))))
    least = set(_least_set(proxy, size, seed))
    return {"n": int(ok.sum()), "top_size": size,
            "spearman_heldout": float(spearmanr(proxy, heldout).statistic) if len(proxy) > 2 else np.nan,
            "spearman_mem": float(spearmanr(proxy, mem).statistic) if len(proxy) > 2 else np.nan,
            "top_overlap_mem": len(least & set(_least_set(-mem, size, seed + 1))) / size,
            "top_overlap_heldout": len(least & set(_least_set(heldout, size, seed + 2))) / size}


def verdict(row: dict) -> str:
    """Plain words on how well a proxy tracks the estimate (regularity proxies should rise with held-out accuracy
    and fall with mem)."""
    rho, rho_mem = row["spearman_heldout"], row["spearman_mem"]
    if not np.isfinite(rho):
        return "fails: too few examples to correlate"
    if rho <= -0.1:
        return f"fails: ranks against the estimate (rho {rho:+.2f} with held-out accuracy)"
    if rho < 0.3:
        return f"fails: does not track the estimate (rho {rho:+.2f} with held-out accuracy)"
    strength = "tracks the estimate well" if rho >= 0.6 else "tracks the estimate partly"
    extra = "" if rho_mem <= -0.3 else f"; weak on mem itself (rho {rho_mem:+.2f})"
    return strength + extra


def validate(scores: pd.DataFrame, proxies: pd.DataFrame, names, top_fraction: float = 0.01,
             seed: int = 0) -> pd.DataFrame:
    """One row per proxy column in ``names``: :func:`agreement` on the examples that ``scores`` (an estimate's
    ``index``, ``label``, ``mem``, ``heldout_acc``) and ``proxies`` (``index``, ``label``, proxies) share, with
    a ``note``. Where a shared example has another label in the two (another task on the same images: binary,
    random labels) or fewer than 3 examples are shared, every proxy is reported as not comparable."""
    joined = scores[["index", "label", "mem", "heldout_acc"]].merge(proxies, on="index", suffixes=("", "_proxy"))
    same_task = "label_proxy" not in joined or bool((joined["label"] == joined["label_proxy"]).all())
    rows = []
    for name in names:
        if len(joined) < 3 or not same_task:
            why = "another task (labels differ)" if not same_task else "fewer than 3 shared examples"
            rows.append({"proxy": name, "n": len(joined), "note": f"not comparable: {why}"})
            continue
        row = {"proxy": name, **agreement(joined[name].to_numpy(), joined["heldout_acc"].to_numpy(),
                                          joined["mem"].to_numpy(), top_fraction, seed)}
        row["note"] = verdict(row)
        rows.append(row)
    return pd.DataFrame(rows)
