"""Cheap per-example proxies of memorization, and their validation against the subsampling estimator.

Feldman & Zhang's estimator (:mod:`memgen.influence.estimator`) needs thousands of models; Jiang et al. 2021
("Characterizing structural regularities of labeled data in overparameterized models") show that statistics of
one ordinary training run, or of the data's geometry, rank examples much like it. Two kinds, both "regularity"
scores (high = typical, learned early and everywhere; low = atypical, mislabelled or memorized):

* **learning speed** (``learn_prob``, ``learn_acc``): recorded while a model trains by the foundation
  :mod:`memgen.learning_speed` (training itself records it, so it lives beside :mod:`memgen.train`);
  :class:`LearningSpeed` and :class:`LearningSpeedRecorder` are re-exported here;
* :mod:`memgen.proxies.neighbourhood` -- ``knn_agree``, ``kde_posterior`` and ``class_density`` on embeddings or
  (PCA-reduced) pixels (:func:`neighbourhood_proxies`, :func:`pca_features`);
* :mod:`memgen.proxies.validation` -- a proxy against an estimate (:func:`validate`: Spearman correlations, top-1%
  overlap, a verdict in words);
* :mod:`memgen.proxies.stages` -- the workflow stages the rule scripts call (a study's own proxy, neighbourhood
  proxies, the validation table);
* :mod:`memgen.proxies.figures` -- the report's figures.
"""

from memgen.learning_speed import LEARNING_PROXIES, LearningSpeed, LearningSpeedRecorder, from_shards, shard_arrays
from memgen.proxies.neighbourhood import NEIGHBOURHOOD_PROXIES, neighbourhood_proxies, pca_features
from memgen.proxies.validation import agreement, validate, verdict

__all__ = ["LEARNING_PROXIES", "LearningSpeed", "LearningSpeedRecorder", "NEIGHBOURHOOD_PROXIES", "agreement",
           "from_shards", "neighbourhood_proxies", "pca_features", "shard_arrays", "validate", "verdict"]
