"""The ``net`` learner: a convolutional network trained from scratch per subset (:class:`NetLearner`)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from memgen.influence.learners import Outputs, _check_subsets, _check_task, register_learner, scores_from_logits
from memgen.runtime import atomic_path, progress, resolve_device, resolve_precision, save_npz

__all__ = ["NetLearner"]


@register_learner("net")
class NetLearner:
    """A network of :mod:`memgen.nets` (e.g. ResNet-20) trained from scratch on each subset with
    :func:`memgen.train.train_classifier`, on uint8 images ``[N, H, W, C]``: the document's full-network
    case, GPU scale.  One model at a time; the model seed fixes initialisation, batch order and
    augmentation, so a model is a pure function of (subset, seed).  ``settings`` is a training recipe: ``arch``
    and every key of :data:`memgen.train.RECIPE_KEYS` (the study's config entry, whose schema fills the
    defaults). ``record`` is called as in :class:`memgen.influence.learners.mlp.MLPLearner` (``[1, b]`` arrays,
    ``models=[seed]``) at every training step. ``precision``: bf16 autocast in training and prediction where it
    resolves to bf16."""

    # trains with bf16 products where the precision setting resolves to bf16 (from_settings takes ``precision``)
    mixed_precision = True

    @classmethod
    def from_settings(cls, x_train, y_train, x_test, y_test, settings: dict, *, n_classes: int, device: str,
                      show_progress: bool, precision: str = "auto"):
        return cls(x_train, y_train, x_test, y_test, settings, n_classes=n_classes, device=device,
                   precision=precision, show_progress=show_progress)

    def __init__(self, x_train, y_train, x_test, y_test, settings: dict, n_classes: int | None = None,
                 device: str = "auto", precision: str = "auto", show_progress: bool = False, record=None):
        from memgen.data import check_images
        from memgen.train import recipe_kwargs

        self.y_train, self.y_test = _check_task(x_train, y_train, x_test, y_test)
        self.x_train, self.x_test = check_images(x_train), check_images(x_test)
        self.n_train, self.n_test = len(self.y_train), len(self.y_test)
        self.n_classes = int(n_classes or (max(self.y_train.max(initial=0), self.y_test.max(initial=0)) + 1))
        if "arch" not in settings:
            raise ValueError("NetLearner settings need 'arch' (a network of memgen.nets)")
        self.settings = dict(settings)
        self.recipe = recipe_kwargs(self.settings)
        self.device = resolve_device(device)
        self.precision = resolve_precision(precision, self.device)
        self.show_progress = show_progress
        self.record = record
        s = self.settings
        self.name = (f"net_{s['arch']}_e{s['epochs']}_lr{s['lr']:g}_b{s['batch_size']}_{s['schedule']}"
                     + ("_bf16" if self.precision == "bf16" else ""))
        self.checkpoint_dir, self.checkpoint_every_s = None, 300.0

    def checkpoint_to(self, folder, every_s: float = 300.0) -> None:
        """Keep the resume file of the network in training (:func:`memgen.train.train_classifier`, written every
        ``every_s`` seconds) and the outputs of each finished network in ``folder``: a rerun after an interruption
        skips the finished networks and continues the interrupted one. Files are named by a fingerprint of the
        network's data, subset, seed and settings, so a folder left by other settings is never reused."""
        self.checkpoint_dir, self.checkpoint_every_s = Path(folder), float(every_s)

    def _model_key(self, subset, seed: int) -> str:
        h = hashlib.sha256(repr((sorted(self.settings.items()), self.n_classes, int(seed), self.precision)).encode())
        for part in (self.x_train, self.y_train, self.x_test, self.y_test, np.asarray(subset, dtype=np.int64)):
            h.update(repr(part.shape).encode())
            h.update(np.ascontiguousarray(part).tobytes())
        return h.hexdigest()[:24]

    def _build(self):
        from memgen.nets import build_net

        h, _, c = self.x_train.shape[1:]
        extra = {"image_size": h} if self.settings["arch"] in ("mnist_cnn", "lenet") else {}
        return build_net(self.settings["arch"], num_classes=self.n_classes, in_channels=c, **extra)

    def fit_predict(self, subsets, seeds) -> Outputs:
        import torch

        from memgen.runtime import seed_everything
        from memgen.train import predict_logits, train_classifier

        subsets, seeds = _check_subsets(subsets, seeds, self.n_train)
        n = self.n_train
        out = Outputs.empty(len(subsets), n, self.n_test)
        x_all = np.concatenate([self.x_train, self.x_test])
        y_all = torch.from_numpy(np.concatenate([self.y_train, self.y_test]))
        for q in progress(range(len(subsets)), desc="networks", disable=not self.show_progress):
            key = self._model_key(subsets[q], seeds[q]) if self.checkpoint_dir else None
            finished = self.checkpoint_dir / f"outputs_{key}.npz" if key else None
            recorded = self.checkpoint_dir / f"record_{key}.pt" if key and self.record is not None else None
            if finished and finished.exists():
                with np.load(finished) as z:
                    out.put([q], Outputs(*(z[f] for f in Outputs.__dataclass_fields__)))
                if recorded:      # the recorder's sums after this network (networks run in order)
                    self.record.load_state_dict(torch.load(recorded, weights_only=False))
                continue
            seed_everything(seeds[q])
            model = self._build()
            record = None if self.record is None else _SubsetRecord(self.record, subsets[q], seeds[q], self.device)
            train_classifier(model, self.x_train[subsets[q]], self.y_train[subsets[q]], **self.recipe,
                             device=self.device, seed=seeds[q], precision=self.precision, show_progress=False, record=record,
                             resume_path=self.checkpoint_dir / f"training_{key}.pt" if key else None,
                             checkpoint_every_s=self.checkpoint_every_s)
            logits = torch.from_numpy(predict_logits(model, x_all, device=self.device,
                                                             precision=self.precision))[None]
            c, p, m = scores_from_logits(logits, y_all)
            result = Outputs(c[:, :n], c[:, n:], p[:, :n], p[:, n:], m[:, :n], m[:, n:])
            if recorded:
                with atomic_path(recorded) as tmp:
                    torch.save(self.record.state_dict(), tmp)
            if finished:
                save_npz(finished, compress=False, **{f: getattr(result, f) for f in Outputs.__dataclass_fields__})
            out.put([q], result)
        return out


class _SubsetRecord:
    """A network's record hook: maps batch positions in its subset to training positions for the shard's recorder,
    whose sums it saves and restores with the network's training state."""

    def __init__(self, recorder, subset, seed: int, device: str):
        import torch

        self.recorder, self.seed = recorder, int(seed)
        self.subset = torch.as_tensor(subset, device=device)

    def __call__(self, epoch, idx, prob, correct) -> None:
        self.recorder(epoch, self.subset[idx][None], prob[None], correct[None], models=[self.seed])

    def state_dict(self) -> dict:
        return self.recorder.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.recorder.load_state_dict(state)
