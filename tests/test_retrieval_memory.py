import numpy as np
import pytest
import torch

from memgen.retrieval.gates import GATES, GateInputs, KnnInterpolation, LearnedGate, oracle_gate, register_gate
from memgen.retrieval.memory import Neighbors, find_neighbors, knn_classify, knn_predictions, knn_softmax, knn_table, knn_vote, leave_one_out_neighbors, softmax
from memgen.retrieval.transformer import predict_neighbor_transformer, train_neighbor_transformer


pytestmark = pytest.mark.usefixtures("single_torch_thread")


def _clusters(n, n_classes=10, dim=16, noise=1.0, seed=0):
    rng = np.random.default_rng(seed)
    centers = np.random.default_rng(123).normal(size=(n_classes, dim)) * 1.6
    y = rng.integers(0, n_classes, n)
    return (centers[y] + noise * rng.normal(size=(n, dim))).astype(np.float32), y.astype(np.int64)


# ------------------------------------------------------------------------------------------------- k-NN
def test_knn_majority_and_distance_votes_on_hand_made_neighbours():
    labels = np.array([[0, 1, 1],
                       [2, 2, 0],
                       [0, 1, 2],   # three-way tie -> nearest (class 0)
                       [1, 0, 0]])
    dist = np.array([[0.1, 1.0, 1.0],
                     [1.0, 1.0, 0.5],
                     [0.2, 0.3, 0.4],
                     [0.01, 1.0, 2.0]])
    pred, shares = knn_classify(labels, 3, weighting="majority")
    np.testing.assert_array_equal(pred, [1, 2, 0, 0])
    np.testing.assert_allclose(shares[0], [1 / 3, 2 / 3, 0])
    pred_w, shares_w = knn_classify(labels, 3, dist=dist, weighting="distance")
    # row 0: class 0 weight 10 vs class 1 weight 2; row 3: class 1 weight 100 vs class 0 weight 1.5
    np.testing.assert_array_equal(pred_w, [0, 2, 0, 1])
    np.testing.assert_allclose(shares_w.sum(1), 1, rtol=1e-6)
    # k=1 is the nearest label; k=2 on row 1 keeps the two class-2 votes
    np.testing.assert_array_equal(knn_classify(labels, 3, k=1)[0], labels[:, 0])
    np.testing.assert_array_equal(knn_classify(labels, 3, k=2)[0], [0, 2, 0, 1])  # ties -> nearest
    with pytest.raises(ValueError, match="dist"):
        knn_vote(labels, 3, weighting="distance")


def test_knn_softmax_limits():
    labels = np.array([[0, 1, 1]])
    dist = np.array([[0.0, 1.0, 1.0]])
    np.testing.assert_allclose(knn_softmax(labels, dist, 2, temperature=1e-3), [[1, 0]], atol=1e-6)
    np.testing.assert_allclose(knn_softmax(labels, dist, 2, temperature=np.inf), [[1 / 3, 2 / 3]])


def test_find_neighbors_matches_brute_force_both_metrics():
    rng = np.random.default_rng(0)
    keys, queries = rng.normal(size=(200, 8)).astype(np.float32), rng.normal(size=(20, 8)).astype(np.float32)
    nb = find_neighbors(queries, keys, 5, metric="l2")
    d = ((queries[:, None] - keys[None]) ** 2).sum(-1)
    np.testing.assert_array_equal(nb.ids, np.argsort(d, 1)[:, :5])
    np.testing.assert_allclose(nb.dist, np.sort(d, 1)[:, :5], rtol=1e-4, atol=1e-4)
    cos = find_neighbors(queries, keys, 5, metric="cosine")
    unit = lambda a: a / np.linalg.norm(a, axis=1, keepdims=True)  # noqa: E731
    sim = unit(queries) @ unit(keys).T
    np.testing.assert_array_equal(cos.ids, np.argsort(-sim, 1)[:, :5])
    np.testing.assert_allclose(cos.dist, 1 - np.sort(sim, 1)[:, ::-1][:, :5], atol=1e-5)
    assert nb.head(2).ids.shape == (20, 2)


def test_leave_one_out_excludes_self_even_with_duplicates():
    rng = np.random.default_rng(1)
    keys = rng.normal(size=(100, 4)).astype(np.float32)
    keys[50] = keys[10]  # an exact duplicate pair
    nb = leave_one_out_neighbors(keys, 3)
    assert nb.ids.shape == (100, 3)
    assert not np.any(nb.ids == np.arange(100)[:, None])
    assert nb.ids[10, 0] == 50 and nb.ids[50, 0] == 10 and nb.dist[10, 0] == pytest.approx(0, abs=1e-6)
    # otherwise identical to searching k+1 and dropping the first (self) hit
    plain = find_neighbors(keys, keys, 4)
    rows = [i for i in range(100) if i not in (10, 50)]
    np.testing.assert_array_equal(nb.ids[rows], plain.ids[rows, 1:])
    # a query that is not in the memory keeps its full k
    partial = find_neighbors(keys[:5] + 10, keys, 3, exclude_ids=np.array([0, -1, -1, -1, -1]))
    assert not np.any(partial.ids[0] == 0)


def test_knn_table_reports_every_setting():
    keys, y = _clusters(600)
    q, yq = _clusters(100, seed=1)
    nbs = {m: find_neighbors(q, keys, 30, metric=m) for m in ("l2", "cosine")}
    table = knn_table(nbs, y, yq, 10)
    assert len(table) == 2 * 4 * 2
    assert table.accuracy.min() > 0.5
    preds = knn_predictions(nbs, y, 10)
    pred, shares = preds["knn-cosine-k20-distance"]
    row = table[(table.metric == "cosine") & (table.k == 20) & (table.weighting == "distance")]
    assert row.accuracy.item() == pytest.approx((pred == yq).mean())
    assert shares.shape == (100, 10)
    with pytest.raises(ValueError, match="only 30"):
        knn_table(nbs, y, yq, 10, ks=(40,))


# ------------------------------------------------------------------------------------------------- gates
def test_oracle_gate_is_at_least_each_part():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 5, 1000)
    a = np.where(rng.random(1000) < 0.7, y, rng.integers(0, 5, 1000))
    b = np.where(rng.random(1000) < 0.6, y, rng.integers(0, 5, 1000))
    gated = oracle_gate(a, b, y)
    acc = (gated == y).mean()
    assert acc >= max((a == y).mean(), (b == y).mean())
    assert acc == pytest.approx(((a == y) | (b == y)).mean())
    np.testing.assert_array_equal(gated[(a != y) & (b != y)], a[(a != y) & (b != y)])


def _gate_problem(n, seed):
    """The net is right and confident on 'easy' examples, wrong and unsure on 'hard' ones where the k-NN is right;
    the k-NN is wrong (with a split vote) on a third of the easy ones."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 4, n)
    hard = rng.random(n) < 0.3
    other = (y + rng.integers(1, 4, n)) % 4
    net_pred = np.where(hard, other, y)
    logits = np.eye(4)[net_pred] * np.where(hard, 0.3, 4.0)[:, None] + 0.1 * rng.normal(size=(n, 4))
    knn_wrong = ~hard & (rng.random(n) < 0.33)
    knn_pred = np.where(knn_wrong, other, y)
    share_top = np.where(knn_wrong, 0.45, 0.9)
    shares = np.full((n, 4), 0.0)
    shares[np.arange(n), knn_pred] = share_top
    shares[np.arange(n), (knn_pred + 1) % 4] += 1 - share_top
    dist = np.sort(rng.random((n, 10)), 1)
    return GateInputs(softmax(logits), shares, None, dist, 4, knn_pred), y


def test_learned_gate_fits_on_holdout_only_and_beats_both_parts():
    val, y_val = _gate_problem(600, 0)
    val_ids, train_ids = np.arange(1000, 1600), np.arange(1000)
    with pytest.raises(ValueError, match="backbone's training set"):
        LearnedGate().fit(val, y_val, example_ids=np.arange(900, 1500), backbone_train_ids=train_ids)
    with pytest.raises(TypeError):
        LearnedGate().fit(val, y_val)  # the ids are required keywords
    with pytest.raises(RuntimeError, match="not fitted"):
        LearnedGate().predict(val)
    gate = LearnedGate().fit(val, y_val, example_ids=val_ids, backbone_train_ids=train_ids)
    test, y = _gate_problem(2000, 1)
    p, s = test.net_probs, test.knn_shares
    acc_net, acc_knn = (p.argmax(1) == y).mean(), (s.argmax(1) == y).mean()
    acc_gate = (gate.predict(test) == y).mean()
    assert acc_gate > max(acc_net, acc_knn) + 0.1
    assert acc_gate <= (oracle_gate(p.argmax(1), s.argmax(1), y) == y).mean()
    assert gate.summary() == {"constant": None, "n_fit": gate.n_fit} and gate.n_fit > 100
    use_knn = gate.arrays(test)["use_knn"]
    np.testing.assert_array_equal(gate.predict(test), np.where(use_knn > 0.5, s.argmax(1), p.argmax(1)))


def test_learned_gate_falls_back_to_constant_without_disagreements():
    inputs, y = _gate_problem(50, 0)
    agreeing = GateInputs(inputs.net_probs, inputs.net_probs, None, inputs.nb_dist, 4, inputs.net_probs.argmax(1))
    gate = LearnedGate().fit(agreeing, y, example_ids=np.arange(50), backbone_train_ids=np.arange(50, 60))
    assert gate.constant == "net" and gate.n_fit == 0
    np.testing.assert_array_equal(gate.predict(inputs), inputs.net_probs.argmax(1))


def test_knn_interpolation_picks_lambda_on_validation():
    rng = np.random.default_rng(0)
    n, c = 800, 5
    y = rng.integers(0, c, n)
    net_right = rng.random(n) < 0.6
    net_pred = np.where(net_right, y, (y + 1) % c)
    p_net = softmax(np.eye(c)[net_pred] * 1.5)
    good_labels = np.where(rng.random((n, 10)) < 0.8, y[:, None], rng.integers(0, c, (n, 10)))
    dist = np.sort(rng.random((n, 10)), 1)
    ids, train = np.arange(n), np.arange(n, 2 * n)
    good = GateInputs.from_neighbors(p_net, good_labels, dist, c)
    with pytest.raises(ValueError, match="training set"):
        KnnInterpolation().fit(good, y, example_ids=ids, backbone_train_ids=ids)
    interp = KnnInterpolation().fit(good, y, example_ids=ids, backbone_train_ids=train)
    assert interp.lam > 0.3 and interp.summary() == {"lambda": interp.lam, "temperature": interp.temperature}
    acc = (interp.predict(good) == y).mean()
    assert acc > (p_net.argmax(1) == y).mean() + 0.1
    # an uninformative memory (random labels) gets (almost) no weight
    bad_inputs = GateInputs.from_neighbors(p_net, rng.integers(0, c, (n, 10)), dist, c)
    bad = KnnInterpolation().fit(bad_inputs, y, example_ids=ids, backbone_train_ids=train)
    assert bad.lam <= 0.2
    np.testing.assert_allclose(bad.predict_proba(bad_inputs).sum(1), 1, rtol=1e-6)


def test_gate_inputs_vote_over_all_given_neighbours():
    labels = np.array([[1, 0, 0], [2, 2, 1]])
    inputs = GateInputs.from_neighbors(np.full((2, 3), 1 / 3), labels, np.ones((2, 3)), 3)
    np.testing.assert_allclose(inputs.knn_shares, [[2 / 3, 1 / 3, 0], [0, 1 / 3, 2 / 3]])


def test_registered_gates_have_unique_keys_and_labels():
    assert list(GATES) == ["learned_gate", "knn_lm"]
    assert len({g.label for g in GATES.values()}) == len(GATES)
    with pytest.raises(ValueError, match="registered twice"):
        register_gate("knn_lm", "again")(KnnInterpolation)


# ------------------------------------------------------------------------------------ neighbour transformer
@pytest.fixture(scope="module")
def clustered_memory():
    keys, y = _clusters(1200, noise=1.2)
    q, yq = _clusters(300, noise=1.2, seed=1)
    return keys, y, leave_one_out_neighbors(keys, 10), q, yq, find_neighbors(q, keys, 10)


@pytest.mark.parametrize("variant", ["ce", "query_drop", "aux"])
def test_neighbor_transformer_variants_learn(clustered_memory, variant):
    keys, y, nb_train, q, yq, nb_test = clustered_memory
    model, metrics = train_neighbor_transformer(keys, y, nb_train, n_classes=10, variant=variant, epochs=5,
                                                batch_size=128, lr=2e-3, d_model=32, n_heads=2, n_layers=1,
                                                dim_ff=64, device="cpu", seed=0, val=(q, yq, nb_test),
                                                show_progress=False)
    assert metrics["loss_curve"][-1] < metrics["loss_curve"][0]
    acc = (predict_neighbor_transformer(model, q, keys, y, nb_test, device="cpu").argmax(1) == yq).mean()
    assert acc > 0.6  # chance is 0.1
    assert metrics["val_accuracy"] == pytest.approx(acc)
    if variant == "query_drop":
        # trained to classify from the neighbourhood when the query is hidden
        masked = predict_neighbor_transformer(model, q, keys, y, nb_test, device="cpu", mask_query=True)
        assert (masked.argmax(1) == yq).mean() > 0.6
    if variant == "aux":
        assert model.isolate_neighbors
        aux = predict_neighbor_transformer(model, q, keys, y, nb_test, device="cpu", aux=True)
        assert (aux.argmax(1) == yq).mean() > 0.6


def test_neighbor_transformer_is_deterministic_and_checks_inputs(clustered_memory):
    keys, y, nb_train, q, yq, nb_test = clustered_memory
    kw = dict(n_classes=10, epochs=1, batch_size=256, d_model=16, n_heads=2, n_layers=1, dim_ff=32, device="cpu",
              show_progress=False, k=5)
    a, _ = train_neighbor_transformer(keys, y, nb_train, seed=3, **kw)
    b, _ = train_neighbor_transformer(keys, y, nb_train, seed=3, **kw)
    assert all(torch.equal(a.state_dict()[k], b.state_dict()[k]) for k in a.state_dict())
    with_self = find_neighbors(keys, keys, 10)  # not leave-one-out: every row retrieves itself first
    with pytest.raises(ValueError, match="leave_one_out"):
        train_neighbor_transformer(keys, y, with_self, **kw)
    with pytest.raises(ValueError, match="variant"):
        train_neighbor_transformer(keys, y, nb_train, variant="contrastive", **kw)
    with pytest.raises(ValueError, match="only 10"):
        Neighbors(nb_train.ids, nb_train.dist).head(11)


def test_every_knn_vote_breaks_ties_the_same_way():
    """Retrieval's k-NN rows, the gates' k-NN answer and the influence study's k-NN learner share one vote:
    on ties the tied class whose nearest member ranks first wins (not the lowest class index)."""
    from memgen.influence.learners import knn_vote as learner_vote
    from memgen.knn import vote

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, (3000, 4))                # k = 4 over 4 classes: many 2-2 and 1-1-1-1 ties
    labels[:3] = [[3, 1, 1, 3], [2, 0, 1, 3], [3, 3, 0, 0]]
    pred, shares = knn_classify(labels, 4)
    assert pred[:3].tolist() == [3, 2, 3]
    tied = np.sort(shares, 1)[:, -1] == np.sort(shares, 1)[:, -2]
    assert tied.sum() > 500 and (pred[tied] != shares[tied].argmax(1)).any()   # argmax would differ
    np.testing.assert_array_equal(learner_vote(labels, np.zeros(len(labels), int), 4)[0], pred)
    np.testing.assert_array_equal(vote(labels)[0], pred)
    p_net = np.eye(4)[(labels[:, 0] + 1) % 4] * 0.5 + 0.125
    inputs = GateInputs.from_neighbors(p_net, labels, np.ones(labels.shape), 4)
    np.testing.assert_array_equal(inputs.knn_pred, pred)
    gate = LearnedGate(min_per_side=10 ** 9).fit(inputs, pred, example_ids=np.arange(3000),
                                                 backbone_train_ids=np.arange(3000, 3010))
    assert gate.constant == "knn"                         # a constant gate: always the k-NN's answer
    np.testing.assert_array_equal(gate.predict(inputs), pred)
    d = rng.random(labels.shape).cumsum(1)
    wpred, _ = knn_classify(labels, 4, dist=d, weighting="distance")
    np.testing.assert_array_equal(wpred, vote(labels, 1.0 / (d + 1e-8))[0])
