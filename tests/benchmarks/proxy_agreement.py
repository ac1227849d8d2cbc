"""How well the cheap proxies track the subsampling estimate on real MNIST, at a size that runs in minutes on a CPU.

Not a speed benchmark: it measures agreement. A stratified subsample of MNIST (``--n-train`` training, ``--n-test``
test images) gets the estimator's MLP study (``--t`` models on 70% subsets, recording their learning speed), the
learning speed of one small CNN trained on all of it (:func:`memgen.train.learning_speed`) and the neighbourhood
proxies on PCA pixels; every proxy is then compared with the estimate (:func:`memgen.proxies.validate`).

    PYTHONPATH=src python tests/benchmarks/proxy_agreement.py --data /work/shared/data/mnist --t 64
"""

from __future__ import annotations

import argparse
import tempfile

import numpy as np
import pandas as pd
import torch

from memgen.data import read_idx_dataset, subsample
from memgen.influence.estimator import ShardSpec, estimate, model_seed, run_shard
from memgen.influence.learners import MLPLearner
from memgen.nets import build_net
from memgen.proxies import LearningSpeed, LearningSpeedRecorder, neighbourhood_proxies, pca_features, validate
from memgen.runtime import seed_everything
from memgen.train import learning_speed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, help="folder of the MNIST IDX files")
    ap.add_argument("--n-train", type=int, default=4000)
    ap.add_argument("--n-test", type=int, default=1000)
    ap.add_argument("--t", type=int, default=64, help="models of the estimator")
    ap.add_argument("--epochs", type=int, default=10, help="MLP epochs (the document's demo: 10)")
    ap.add_argument("--cnn-epochs", type=int, default=3)
    ap.add_argument("--k", type=int, default=20, help="neighbours of the neighbourhood proxies")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    ds = subsample(read_idx_dataset(args.data), args.n_train, args.n_test, seed=args.seed)
    x, y, xt, yt = ds.x_train, ds.y_train.astype(np.int64), ds.x_test, ds.y_test.astype(np.int64)
    seeds = [model_seed(args.seed, k) for k in range(args.t)]
    recorder = LearningSpeedRecorder(len(y), models=seeds)
    learner = MLPLearner(x, y, xt, yt, hidden=(512, 256), epochs=args.epochs, device="cpu", record=recorder)
    spec = ShardSpec.for_learner(learner, ratio=0.7, seed=args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        run_shard(learner, spec, 0, args.t, f"{tmp}/models.npz")
        est = estimate([f"{tmp}/models.npz"], spec=spec, t=args.t, y_train=y, y_test=yt, influence=False,
                       show_progress=False)
    scores = est.scores_frame()

    sources = {"the estimate's own MLPs": LearningSpeed.from_recorder(recorder).frame(label=y)}
    seed_everything(args.seed)
    cnn = build_net("mnist_cnn", num_classes=10, in_channels=1, image_size=28)
    ls, metrics = learning_speed(cnn, x, y, epochs=args.cnn_epochs, batch_size=128, lr=0.05, flip=False,
                                 device="cpu", seed=args.seed, show_progress=False)
    sources[f"one CNN, {args.cnn_epochs} epochs"] = ls.frame(label=y)
    nb = neighbourhood_proxies(pca_features(x, 64), y, k=args.k)
    sources["PCA-64 pixel neighbours"] = nb.assign(index=np.arange(len(y)), label=y)
    rows = []
    for source, frame in sources.items():
        names = [c for c in ("learn_prob", "learn_acc", "knn_agree", "kde_posterior", "class_density") if c in frame]
        rows.append(validate(scores, frame, names).assign(source=source))
    table = pd.concat(rows, ignore_index=True)
    print(f"MNIST {len(y)} train / {len(yt)} test, t = {args.t} MLPs (mean test accuracy "
          f"{np.mean(est.model_test_acc):.4f}, mean standard error of mem {np.nanmean(scores['mem_se']):.3f}); "
          f"CNN train accuracy {metrics['train_accuracy']:.3f}")
    cols = ["source", "proxy", "n", "spearman_heldout", "spearman_mem", "top_size", "top_overlap_mem",
            "top_overlap_heldout", "note"]
    print(table[cols].to_string(index=False, float_format=lambda v: f"{v:.3f}"))


if __name__ == "__main__":
    main()
