"""The influence study: Feldman & Zhang's (2020) subsampling estimator of per-example memorization and influence,
for every model family (MLP, linear probe, k-NN, LUT network, convolutional network), with the removal
experiment and the consistency of two estimates.

* :mod:`memgen.influence.estimator` -- the estimator, one module per concern: :class:`ShardSpec` (a study's
  subsets and seeds) and :func:`run_shard` (train a range of models, one shard file) in ``shards``,
  :func:`estimate` (mem, influence, convergence from the shards) in ``estimation``, intervals and counts in
  ``intervals``, and the experiments (``removal``, ``consistency``, ``influence`` pairs, ``summaries``);
* :mod:`memgen.influence.learners` -- the learning algorithms behind one protocol, one module per config name
  (:data:`LEARNERS`, by :func:`register_learner`);
* :mod:`memgen.influence.stages` -- the workflow stages the rule scripts call (a study's task and its
  :data:`memgen.influence.stages.FEATURES`, shard, estimate, removal);
* :mod:`memgen.influence.tables` / :mod:`memgen.influence.figures` -- the report's tables and figures;
* :mod:`memgen.influence.claims` -- the document's claims (removal, last layer, consistency, influence pairs),
  each decided by a 95% interval.
"""

from memgen.influence.estimator import ShardSpec, estimate, removal_experiment, run_shard, shard_ranges
from memgen.influence.learners import LEARNERS, Learner, Outputs, register_learner

__all__ = ["LEARNERS", "Learner", "Outputs", "ShardSpec", "estimate", "register_learner", "removal_experiment",
           "run_shard", "shard_ranges"]
