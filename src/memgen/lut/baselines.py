"""The standard methods of the LUT study's Table 1, on the same binarized inputs as the LUT networks.

Every method is a function ``(x_train, y_train, x_test, y_test, **options) -> {"train_acc", "test_acc", ...}`` on
0/1 bit arrays ``[N, D]`` (from :func:`memgen.bits.binarize`) and integer labels; the Table 1 jobs that run them
(and the memorization network itself) are :data:`memgen.lut.stages.TABLE1_METHODS`.

* :func:`conv_net`: LeNet-style CNN (:class:`memgen.nets.LeNet`) trained by :func:`memgen.train.train_classifier`
  on the bits laid out as images (bit planes as channels, values 0/255); it alone sees the pixel layout;
* :func:`knn_many`: k-nearest-neighbour majority votes for several k from one exact Hamming search on packed bits
  (faiss's binary index, :func:`hamming_search`); training accuracy queries the training set itself, so each point
  is its own nearest neighbour (as in the paper's 1-NN training accuracy of 1.00), optionally on a random subset
  of training points;
* :func:`random_forest`: scikit-learn, seeded;
* :func:`logistic_regression`: scikit-learn, L2, lbfgs;
* :func:`naive_bayes`: Bernoulli naive Bayes (the inputs are bits);
* :func:`random_guess`: uniformly random labels (seeded).
"""

from __future__ import annotations

import numpy as np


def _result(model_predict, x_train, y_train, x_test, y_test, **extra) -> dict:
    return {"train_acc": float(np.mean(model_predict(x_train) == y_train)),
            "test_acc": float(np.mean(model_predict(x_test) == y_test)), **extra}


def hamming_search(queries, keys, k: int, threads: int | None = None) -> np.ndarray:
    """Indices ``[Q, k]`` of the ``k`` keys nearest to each query in Hamming distance (= squared L2 on bits),
    nearest first. faiss's binary index on packed bits when available (about 4x faster than float L2 on 3072
    bits), else :func:`memgen.knn.search`. Equal distances may come in either order."""
    queries, keys = np.asarray(queries, dtype=np.uint8), np.asarray(keys, dtype=np.uint8)
    if not 1 <= k <= len(keys):
        raise ValueError(f"k={k} must be between 1 and the number of training examples ({len(keys)})")
    try:
        import faiss
    except ImportError:
        from memgen.knn import search

        return search(queries, keys, k)[1]
    if threads:
        faiss.omp_set_num_threads(int(threads))
    packed = np.packbits(keys, axis=1)                  # zero padding to whole bytes adds no distance
    index = faiss.IndexBinaryFlat(packed.shape[1] * 8)
    index.add(packed)
    return index.search(np.packbits(queries, axis=1), k)[1].astype(np.int64)


def knn_many(x_train, y_train, x_test, y_test, ks=(5, 1), train_queries: int | None = None, seed: int = 0,
             threads: int | None = None) -> list[dict]:
    """k-NN majority votes (ties: the smallest label) for every ``k`` in ``ks`` from one exact Hamming search.

    Training accuracy queries the training set itself (each point is its own nearest neighbour); with
    ``train_queries`` it is measured on that many training examples drawn at random (``seed``) against all of
    them, since querying every training point costs as much as the search itself (``n_train_eval`` says how many).
    """
    x_train, y_train = np.asarray(x_train), np.asarray(y_train)
    n_classes = int(max(y_train.max(), np.max(y_test))) + 1
    kmax = max(ks)
    q = np.arange(len(y_train))
    if train_queries and train_queries < len(q):
        q = np.sort(np.random.default_rng(seed).choice(len(q), size=int(train_queries), replace=False))
    neighbours = {"train": hamming_search(x_train[q], x_train, kmax, threads),
                  "test": hamming_search(x_test, x_train, kmax, threads)}
    truth = {"train": y_train[q], "test": np.asarray(y_test)}
    rows = []
    for k in ks:
        row = {"k": int(k), "n_train_eval": len(q)}
        for part, idx in neighbours.items():
            votes = np.zeros((len(idx), n_classes), dtype=np.int64)
            np.add.at(votes, (np.arange(len(idx))[:, None], y_train[idx[:, :k]]), 1)
            row[f"{part}_acc"] = float(np.mean(votes.argmax(1) == truth[part]))
        rows.append(row)
    return rows


def random_forest(x_train, y_train, x_test, y_test, n_trees: int = 10, seed: int = 0, n_jobs: int = 2) -> dict:
    from sklearn.ensemble import RandomForestClassifier

    model = RandomForestClassifier(n_estimators=n_trees, random_state=seed, n_jobs=n_jobs).fit(x_train, y_train)
    return _result(model.predict, x_train, y_train, x_test, y_test, n_trees=n_trees)


def logistic_regression(x_train, y_train, x_test, y_test, C: float = 1.0, max_iter: int = 1000) -> dict:
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(C=C, max_iter=max_iter).fit(np.asarray(x_train, np.float32), y_train)
    predict = lambda x: model.predict(np.asarray(x, np.float32))  # noqa: E731
    return _result(predict, x_train, y_train, x_test, y_test, C=C, n_iter=int(np.max(model.n_iter_)))


def naive_bayes(x_train, y_train, x_test, y_test, alpha: float = 1.0) -> dict:
    from sklearn.naive_bayes import BernoulliNB

    model = BernoulliNB(alpha=alpha, binarize=None).fit(x_train, y_train)
    return _result(model.predict, x_train, y_train, x_test, y_test, alpha=alpha)


def random_guess(x_train, y_train, x_test, y_test, seed: int = 0) -> dict:
    n_classes = int(np.max(y_train)) + 1
    rng = np.random.default_rng(seed)
    return _result(lambda x: rng.integers(0, n_classes, len(x)), x_train, y_train, x_test, y_test)


def bits_to_images(bits: np.ndarray, image_shape) -> np.ndarray:
    """0/1 bits ``[N, H*W*C]`` (binarize's order: pixel, then channel and bit) -> uint8 0/255 ``[N, H, W, C]``."""
    h, w, c = image_shape
    bits = np.asarray(bits)
    if bits.shape[1] != h * w * c:
        raise ValueError(f"{bits.shape[1]} bits per example do not make {h}x{w} images with {c} bit planes; "
                         "pass image_shape = (height, width, channels * bits per channel)")
    return (bits.reshape(len(bits), h, w, c) * 255).astype(np.uint8)


def conv_net(x_train, y_train, x_test, y_test, image_shape=(28, 28, 1), epochs: int = 10, lr: float = 0.05,
             batch_size: int = 128, seed: int = 0, device: str = "auto", show_progress: bool = False) -> dict:
    """LeNet-style CNN on the binarized images (no augmentation, one-cycle SGD); ``image_shape`` is
    ``(H, W, channels x bits per channel)`` of the bit array."""
    from memgen.nets import LeNet
    from memgen.train import predict_logits, train_classifier

    n_classes = int(np.max(y_train)) + 1
    model = LeNet(num_classes=n_classes, in_channels=image_shape[2], image_size=image_shape[0])
    images_train, images_test = bits_to_images(x_train, image_shape), bits_to_images(x_test, image_shape)
    metrics = train_classifier(model, images_train, np.asarray(y_train), epochs=epochs, batch_size=batch_size,
                               lr=lr, augment=False, device=device, seed=seed, show_progress=show_progress)
    predict = lambda images: predict_logits(model, images, device=metrics["device"]).argmax(1)  # noqa: E731
    return _result(predict, images_train, y_train, images_test, y_test, epochs=epochs, device=metrics["device"])

