"""The memory document's claims on synthetic predictions with known effects."""

import numpy as np
import pytest

from memgen.claims import FAILS, HOLDS, INCONCLUSIVE
from memgen.retrieval.claims import (ORACLE_REDUCTION_LINE, SplitPredictions, retrieval_claims, tail_classes,
                                     tail_claims)
from memgen.retrieval.gates import GATES, ORACLE_LABEL

RNG = np.random.default_rng(0)


def predictions_with(y, accuracy_of: dict, split="full", train_y=None, test_group=None, base=None):
    """Predictions right on the given share of examples; every method is right where ``base`` is right unless
    its share says otherwise, so methods are correlated as real ones are."""
    n = len(y)
    base = RNG.random(n) if base is None else base
    preds = {}
    for name, share in accuracy_of.items():
        right = base < share
        preds[name] = np.where(right, y, (y + 1) % 10)
    return SplitPredictions("cifar10", split, y, preds, np.repeat(np.arange(10), 50) if train_y is None else train_y,
                            y if test_group is None else test_group, "resnet20", 12)


def _by_claim(rows):
    return {r["claim"]: r for r in rows}


def full_split(n=10000, net=0.85, knn1=0.81, knn10=0.85, transformer=0.851, oracle=0.886, gate=0.86):
    y = RNG.integers(0, 10, n)
    accs = {"network": net, "1-NN": knn1, "10-NN": knn10, "10-NN Transformer": transformer}
    for k in (1, 10):
        accs[ORACLE_LABEL.format(k=k)] = oracle
        for g in GATES.values():
            accs[g.label.format(k=k)] = gate
    return predictions_with(y, accs)


def test_table1_claims_get_the_verdicts_of_their_known_effects():
    p = full_split()
    rows = _by_claim(retrieval_claims([p], ks=[1, 10], gate_ks=[1, 10], transformer_k=10, rare_classes=[1, 3],
                                      data={"cifar10": "cifar10-jpeg.tar.gz"}))
    one = rows["1-NN over the memory is a bit below the network"]
    assert one["verdict"] == HOLDS and one["measured"] == pytest.approx(100 * (p.correct("1-NN").mean()
                                                                               - p.correct("network").mean()))
    assert one["measured"] == pytest.approx(-4.0, abs=0.6)
    assert one["published"] == pytest.approx(-0.83) and one["decision"] == "< 0"
    ten = rows["10-NN over the memory is about as accurate as the network"]
    assert ten["verdict"] == HOLDS and ten["measured"] == pytest.approx(0.0, abs=0.05)
    assert ten["hi"] - ten["lo"] < 0.1              # paired: same base, the two only differ on no example
    assert rows["the 10-NN Transformer adds nothing over the 10-NN vote"]["verdict"] == HOLDS
    oracle = rows["the oracle gate 1-NN / network removes a large share of the network's errors"]
    assert oracle["measured"] == pytest.approx(100 * (0.886 - 0.85) / 0.15, abs=1.0)
    assert oracle["verdict"] == HOLDS and oracle["decision"] == f"> {round(ORACLE_REDUCTION_LINE, 1):g}"
    gate = rows[f"the {GATES['learned_gate'].label.format(k=10)} improves on the network (the document's proposal)"]
    assert gate["verdict"] == HOLDS and gate["measured"] == pytest.approx(1.0, abs=0.3)
    assert "12-epoch ResNet-20 on cifar10-jpeg.tar.gz" in gate["scale"] and "200 epochs" in gate["scale"]


def test_a_table1_claim_whose_interval_spans_its_line_is_inconclusive():
    p = full_split(n=300)
    net = p.preds["network"]
    right, wrong = np.flatnonzero(net == p.y), np.flatnonzero(net != p.y)

    def swap(fixed, broken):
        """The network's answers with ``fixed`` of its errors fixed and ``broken`` of its right answers broken."""
        out = net.copy()
        out[wrong[:fixed]] = p.y[wrong[:fixed]]
        out[right[:broken]] = (p.y[right[:broken]] + 1) % 10
        return out

    p.preds["1-NN"] = swap(5, 6)                        # 1 example worse of 300: far below what 300 can show
    p.preds[GATES["learned_gate"].label.format(k=1)] = swap(6, 5)
    rows = _by_claim(retrieval_claims([p], ks=[1, 10], gate_ks=[1], transformer_k=10, rare_classes=[1, 3],
                                      data={"cifar10": "x"}))
    one = rows["1-NN over the memory is a bit below the network"]
    assert one["measured"] == pytest.approx(-100 / 300) and one["verdict"] == INCONCLUSIVE
    gate = rows[f"the {GATES['learned_gate'].label.format(k=1)} improves on the network (the document's proposal)"]
    assert gate["lo"] < 0 < gate["hi"] and gate["verdict"] == INCONCLUSIVE


def test_a_k_nn_well_below_the_network_is_not_about_as_accurate():
    rows = _by_claim(retrieval_claims([full_split(knn10=0.80)], ks=[10], gate_ks=[10], transformer_k=10,
                                      rare_classes=[1, 3], data={"cifar10": "x"}))
    assert rows["10-NN over the memory is about as accurate as the network"]["verdict"] == FAILS


def test_tail_claims_look_at_the_rarest_classes_only():
    counts = np.array([500, 400, 300, 200, 150, 100, 60, 30, 10, 5])       # classes 7, 8, 9 are the tail
    train_y = np.repeat(np.arange(10), counts)
    y = np.repeat(np.arange(10), 300)
    base = RNG.random(len(y))
    p = predictions_with(y, {"network": 0.8, "10-NN": 0.8}, split="lt100", train_y=train_y, base=base)
    assert sorted(tail_classes(p)) == [7, 8, 9]
    tail = np.isin(y, [7, 8, 9])
    helped = p.preds["network"].copy()
    helped[tail] = y[tail]                                          # 1-NN fixes every tail example
    p.preds["1-NN"] = helped
    rows = _by_claim(tail_claims(p, ks=[1, 10], gate_ks=[], data="x"))
    one = rows["lt100, the 3 rarest classes: the 1-NN is more accurate than the network"]
    assert one["verdict"] == HOLDS and one["measured"] == pytest.approx(100 * (1 - (base[tail] < 0.8).mean()))
    ten = rows["lt100, the 3 rarest classes: the 10-NN is more accurate than the network"]
    assert ten["measured"] == 0 and ten["verdict"] == FAILS                 # identical answers: no gain
    more = rows["lt100, the 3 rarest classes: 1-NN helps the rare classes more than it helps on average"]
    assert more["verdict"] == HOLDS and more["measured"] > 0


def test_rare_subgroup_claims_need_the_rare_classes_in_the_test_set():
    y = RNG.integers(0, 2, 400)
    group = RNG.integers(0, 10, 400)
    p = predictions_with(y, {"network": 0.9, "1-NN": 0.9}, split="rare", test_group=group)
    rows = retrieval_claims([p], ks=[1], gate_ks=[], transformer_k=10, rare_classes=[1, 3], data={"cifar10": "x"})
    assert [r["claim"] for r in rows] == ["rare, the rare subclasses: the 1-NN is more accurate than the network"]
    assert rows[0]["statistic"] == f"paired bootstrap over {int(np.isin(group, [1, 3]).sum())} test examples"
    with pytest.raises(ValueError, match="no test example of the rare classes"):
        retrieval_claims([p], ks=[1], gate_ks=[], transformer_k=10, rare_classes=[11], data={"cifar10": "x"})


def test_an_extra_backbones_memory_on_full_gets_the_table1_claims_at_its_own_scale():
    own = full_split()
    fast = SplitPredictions("cifar10", "full@fast", own.y, own.preds, own.train_y, own.test_group, "airbench94", 10)
    rows = retrieval_claims([own, fast], ks=[1, 10], gate_ks=[1, 10], transformer_k=10, rare_classes=[1, 3],
                            data={"cifar10": "cifar10-jpeg.tar.gz"})
    one = [r for r in rows if r["claim"] == "1-NN over the memory is a bit below the network"]
    assert [r["scale"].split(" on ")[0] for r in one] == ["12-epoch ResNet-20", "10-epoch airbench94"]
    assert len(rows) == 2 * len(retrieval_claims([own], ks=[1, 10], gate_ks=[1, 10], transformer_k=10,
                                                 rare_classes=[1, 3], data={"cifar10": "cifar10-jpeg.tar.gz"}))
