"""The retrieval study: a memory-augmented classifier. A backbone (ResNet-20 on CIFAR-10, a small CNN on MNIST)
embeds the training set into an explicit memory; k-NN votes over it, a Transformer over the retrieved
neighbours and gates between the network and the memory classify the test images, overall and on the long tail.

* :mod:`memgen.retrieval.memory` -- exact neighbour search over the stored embeddings and k-NN votes;
* :mod:`memgen.retrieval.transformer` -- the Transformer over a query and its neighbours;
* :mod:`memgen.retrieval.gates` -- the oracle bound and the fitted gates (:data:`GATES`, by :func:`register_gate`);
* :mod:`memgen.retrieval.breakdown` -- accuracy overall, per class, many/medium/few-shot, worst class / group;
* :mod:`memgen.retrieval.stages` -- the workflow stages the rule scripts call (train, embed, search, gate,
  evaluate);
* :mod:`memgen.retrieval.tables` / :mod:`memgen.retrieval.figures` -- the report's tables and figures;
* :mod:`memgen.retrieval.claims` -- the document's claims (Table 1's effects, the long tail, the rare subgroups),
  each a paired difference on the test examples with its 95% interval and verdict.
"""

from memgen.retrieval.gates import GATES, GateInputs, oracle_gate, register_gate
from memgen.retrieval.memory import Neighbors, find_neighbors, knn_classify, leave_one_out_neighbors

__all__ = ["GATES", "GateInputs", "Neighbors", "find_neighbors", "knn_classify", "leave_one_out_neighbors",
           "oracle_gate", "register_gate"]
