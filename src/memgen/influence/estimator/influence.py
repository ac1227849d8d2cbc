"""Influence of training examples on test examples, computed in blocks (Feldman & Zhang 2020, Algorithm 1:
``infl(i, j) = P[correct on j | i in subset] - P[correct on j | i not in subset]``), and the pairs of Figure 4.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from memgen.runtime import progress


def influence_blocks(masks: np.ndarray, scores: np.ndarray, mem: np.ndarray | None = None, *,
                     infl_threshold: float = 0.15, mem_threshold: float = 0.25, top_k: int = 4,
                     block_size: int = 1024, device: str = "cpu", binary: bool | None = None,
                     rows: str = "all", show_progress: bool = False):
    """Blocked influence: ``infl(i, j) = mean(scores[:, j] | i in) - mean(scores[:, j] | i out)``.

    ``masks`` bool ``[t, n]``, ``scores`` ``[t, n_test]``.  Returns ``(pairs, top_pos, top_infl,
    top_se)``: the pairs with ``infl >= infl_threshold`` whose training example has
    ``mem >= mem_threshold`` (all training examples when ``mem`` is None) as a DataFrame
    (train_pos, test_pos, mem, infl, infl_se), and each test example's ``top_k`` most influential
    training examples ``[n_test, top_k]`` (positions, influence, standard error).  Only
    ``block_size x n_test`` influence values exist at a time; non-0/1 scores need a second product
    per block (for the variances).

    ``rows="all"`` computes every training example's row (top influencers among all of them);
    ``rows="memorized"`` only the rows with ``mem >= mem_threshold``: the same pairs, top
    influencers among memorized examples only, about ``n / #memorized`` times less work.
    """
    import torch

    t, n = masks.shape
    n_test = scores.shape[1]
    if rows not in ("all", "memorized"):
        raise ValueError(f"rows='{rows}': use 'all' or 'memorized'")
    if binary is None:
        binary = bool(np.isin(scores, (0.0, 1.0)).all())
    dev = torch.device(device)
    S = torch.from_numpy(np.ascontiguousarray(scores, dtype=np.float32)).to(dev)
    tot = S.sum(0, dtype=torch.float64)
    S2 = None if binary else S * S
    tot2 = tot if binary else S2.sum(0, dtype=torch.float64)
    eligible = np.ones(n, bool) if mem is None else (np.asarray(mem) >= mem_threshold)
    todo = np.arange(n) if rows == "all" else np.flatnonzero(eligible)
    top_k = max(1, min(top_k, len(todo)))
    top_v = torch.full((top_k, n_test), -torch.inf, dtype=torch.float64, device=dev)
    top_s = torch.full((top_k, n_test), torch.nan, dtype=torch.float64, device=dev)
    top_i = torch.full((top_k, n_test), -1, dtype=torch.int64, device=dev)
    pair_parts = []
    for a in progress(range(0, len(todo), block_size), desc="influence blocks", disable=not show_progress):
        idx = todo[a:a + block_size]
        cols = masks[:, idx[0]:idx[-1] + 1] if rows == "all" else masks[:, idx]
        Mb = torch.from_numpy(np.ascontiguousarray(cols)).to(dev).to(torch.float32)   # [t, B]
        s_in = (Mb.T @ S).double()                                    # [B, n_test]
        q_in = s_in if binary else (Mb.T @ S2).double()
        k_in = Mb.sum(0, dtype=torch.float64)[:, None]                # [B, 1]
        k_out = t - k_in
        # infl = s_in / k_in - (tot - s_in) / k_out, as two in-place passes over the block
        infl = (s_in * (1.0 / k_in + 1.0 / k_out)).addr_((1.0 / k_out)[:, 0], tot, alpha=-1.0)
        undefined = ((k_in == 0) | (k_out == 0))[:, 0]
        if undefined.any():                                           # never in / never out: no estimate
            infl[undefined] = -torch.inf

        def se_at(ii, jj):
            kin, kout = k_in[ii, 0], k_out[ii, 0]
            sin, qin = s_in[ii, jj], q_in[ii, jj]
            mi, mo = sin / kin, (tot[jj] - sin) / kout
            var_in = torch.clamp(qin - kin * mi * mi, min=0) / (kin - 1)
            var_out = torch.clamp((tot2[jj] - qin) - kout * mo * mo, min=0) / (kout - 1)
            return torch.sqrt(var_in / kin + var_out / kout)

        idx_t = torch.from_numpy(idx).to(dev)
        kb = min(top_k, len(idx))
        v, i = torch.topk(infl, kb, dim=0)
        jj = torch.arange(n_test, device=dev).expand(kb, n_test)
        cat_v = torch.cat([top_v, v])
        cat_i = torch.cat([top_i, idx_t[i]])
        cat_s = torch.cat([top_s, se_at(i.reshape(-1), jj.reshape(-1)).view(kb, n_test)])
        sel = torch.topk(cat_v, top_k, dim=0).indices
        top_v, top_i, top_s = (torch.gather(x, 0, sel) for x in (cat_v, cat_i, cat_s))
        erows = torch.from_numpy(np.flatnonzero(eligible[idx])).to(dev)
        if len(erows):
            hit = infl.index_select(0, erows) >= infl_threshold
            rr, jj = hit.nonzero(as_tuple=True)
            ii = erows[rr]
            pair_parts.append((idx[ii.cpu().numpy()], jj.cpu().numpy(), infl[ii, jj].cpu().numpy(),
                               se_at(ii, jj).cpu().numpy()))
        del s_in, q_in, infl
    if pair_parts:
        tp, jp, iv, sv = (np.concatenate(x) for x in zip(*pair_parts))
    else:
        tp = jp = np.zeros(0, np.int64)
        iv = sv = np.zeros(0)
    pairs = pd.DataFrame({"train_pos": tp.astype(np.int64), "test_pos": jp.astype(np.int64),
                          "mem": np.asarray(mem)[tp] if mem is not None else np.full(len(tp), np.nan),
                          "infl": iv, "infl_se": sv})
    pairs = pairs.sort_values(["infl", "train_pos", "test_pos"], ascending=[False, True, True], ignore_index=True)
    return pairs, top_i.T.cpu().numpy(), top_v.T.cpu().numpy(), top_s.T.cpu().numpy()


def influence_examples(pairs: pd.DataFrame, n_examples: int = 10, per_example: int = 4) -> pd.DataFrame:
    """Figure 4: memorized training examples (highest top influence first) with their ``per_example``
    most influenced test examples.  ``pairs`` as from :meth:`Estimate.pairs_frame` or ``Estimate.pairs``."""
    if len(pairs) == 0:
        return pairs.assign(rank=pd.Series(dtype=int)).iloc[:0]
    key = "train_index" if "train_index" in pairs else "train_pos"
    p = pairs.sort_values([key, "infl"], ascending=[True, False])
    p = p.groupby(key, sort=False).head(per_example).copy()
    p["rank"] = p.groupby(key).cumcount()
    best = p.groupby(key)["infl"].max().sort_values(ascending=False, kind="stable").index[:n_examples]
    p = p[p[key].isin(best)]
    p["_order"] = p[key].map({k: i for i, k in enumerate(best)})
    return p.sort_values(["_order", "rank"]).drop(columns="_order").reset_index(drop=True)
