"""Memorization and influence estimation by subsampling (Feldman & Zhang 2020, Algorithm 1), one module per
concern; the names below are the estimator's public API.

1. :mod:`memgen.influence.estimator.shards` -- :class:`ShardSpec` fixes a study's subsets and training seeds
   (pure functions of ``(seed, k)``); :func:`run_shard` trains a range of models with a learner and writes one
   shard file; :func:`shard_ranges` cuts ``t`` models into shards.
2. :mod:`memgen.influence.estimator.estimation` -- :func:`estimate` streams the shards once: ``mem``, its
   standard error and interval, the held-out accuracy, the other score kinds, convergence in ``t``, and
   influence (an :class:`Estimate`).
3. :mod:`memgen.influence.estimator.intervals` -- Jeffreys and Newcombe intervals, counts above thresholds with
   their chance levels, and :func:`t_for_precision`.
4. :mod:`memgen.influence.estimator.influence` -- influence in blocks of training examples and the pairs of
   Figure 4.
5. :mod:`memgen.influence.estimator.removal` -- the removal experiment (Figure 2).
6. :mod:`memgen.influence.estimator.consistency` -- ``D``/``J`` between two estimates (Figure 7).
7. :mod:`memgen.influence.estimator.summaries` -- histograms and the most memorized examples (Figure 1).
"""

from memgen.influence.estimator.consistency import consistency_infl, consistency_mem
from memgen.influence.estimator.estimation import SCORE_KINDS, Estimate, estimate
from memgen.influence.estimator.influence import influence_blocks, influence_examples
from memgen.influence.estimator.intervals import (LEVEL, below_probability, chance_probability,
                                                  false_discoveries, interval_se, jeffreys_interval, mem_interval,
                                                  mem_posterior, t_for_precision, threshold_counts)
from memgen.influence.estimator.removal import removal_difference, removal_experiment, summarize_removal
from memgen.influence.estimator.shards import (ShardError, ShardSpec, check_shard, collect_shards, labels_digest,
                                               model_seed, run_shard, shard_path, shard_ranges, study_seed,
                                               subset_indices, subset_size)
from memgen.influence.estimator.summaries import mem_histogram, most_memorized

__all__ = ["LEVEL", "SCORE_KINDS", "Estimate", "ShardError", "ShardSpec", "below_probability", "chance_probability",
           "check_shard", "collect_shards", "consistency_infl", "consistency_mem", "estimate", "false_discoveries",
           "influence_blocks", "influence_examples", "interval_se", "jeffreys_interval", "labels_digest",
           "mem_histogram", "mem_interval", "mem_posterior", "model_seed", "most_memorized", "removal_difference",
           "removal_experiment", "run_shard", "shard_path", "shard_ranges", "study_seed", "subset_indices",
           "subset_size", "summarize_removal", "t_for_precision", "threshold_counts"]
