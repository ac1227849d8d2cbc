"""The LUT study (Chatterjee 2018, "Learning and memorization"): networks of k-input lookup tables trained by
memorization, beside standard methods, on binary and pairwise MNIST / CIFAR-10 tasks.

* :mod:`memgen.lut.network` -- the algorithm: :class:`LUTNetwork` (fit by counting, layer by layer), its
  accuracy rows (``evaluate``) and per-layer statistics (``layer_stats``), and the plain reference ``fit_plain``;
* :mod:`memgen.lut.baselines` -- the standard methods of Table 1 (conv net, k-NN, forests, logistic regression,
  naive Bayes, random guess) on the same bits;
* :mod:`memgen.lut.stages` -- the workflow stages the rule scripts call, with the Table 1 methods by job name
  (:data:`memgen.lut.stages.TABLE1_METHODS`);
* :mod:`memgen.lut.tables` -- the document's published numbers and the report's tables and level verdicts;
* :mod:`memgen.lut.claims` -- the document's claims on those tables, each with its 95% interval and verdict;
* :mod:`memgen.lut.figures` -- the report's figures (the speed benchmark is :mod:`memgen.bench.lut`).
"""

from memgen.lut.network import LUTNetwork

__all__ = ["LUTNetwork"]
