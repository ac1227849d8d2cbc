"""Backbone training and inference on uint8 image arrays.

* :func:`train_classifier` trains any :mod:`memgen.nets` network with SGD + Nesterov momentum, a per-step
  learning-rate schedule (``onecycle``, ``cosine``, ``step``, ``triangle`` or ``constant``), optional label
  smoothing and batched tensor-side augmentation (random crop with zero padding + horizontal flip, random or
  alternating) done on the training device; optionally the biases at a scaled learning rate and Lookahead
  weight averaging (the fast-training recipes of Page 2019 and Jordan 2024). The whole training set lives on the
  device as uint8; the model runs channels_last, under bf16 autocast where ``precision`` resolves to bf16
  (:func:`memgen.runtime.resolve_precision`: CUDA and CPUs with native bf16; weights, loss and optimizer state
  stay fp32). Input normalization (per-channel mean/std of the
  *training* images) is stored in the model. On CPU, training is deterministic given ``seed`` (same thread
  count and precision).
* :func:`predict_logits` runs a trained model over any uint8 image array; :func:`embed` returns embeddings
  and logits of one pass (every :mod:`memgen.nets` network computes ``logits = fc(embedding)``). Both take
  the same ``precision``; outputs are float32.
* :func:`save_checkpoint` / :func:`load_checkpoint` store the model config, weights and a metrics dict.
* Given ``resume_path``, :func:`train_classifier` saves its whole training state there every
  ``checkpoint_every_s`` seconds and resumes from it when called again with the same arguments; on CPU the
  resumed run ends with the same weights, bit for bit, as an uninterrupted one (same seed, same threads).
  SIGINT or SIGTERM during such a run saves that state at the next batch, then takes effect
  (:class:`DeferredStop`): a stopped job resumes where it stopped.
"""

from __future__ import annotations

import hashlib
import math
import os
import random
import signal
import threading
import time

import numpy as np
import torch
import torch.nn.functional as F

from memgen.data import check_images
from memgen.nets import build_net, count_parameters
from memgen.runtime import atomic_path, autocast, progress, resolve_device, resolve_precision, seed_everything

SCHEDULES = ("onecycle", "cosine", "step", "triangle", "constant")
# The keys of a training recipe (config retrieval.backbone.<dataset>, influence learner 'net' settings); their
# defaults are in workflow/schemas/retrieval.schema.yaml ($defs/recipe), which fills them into the config.
RECIPE_KEYS = ("epochs", "batch_size", "lr", "schedule", "momentum", "weight_decay", "bias_lr_scale", "bias_decay",
               "whiten_bias_epochs", "lookahead", "label_smoothing", "augment", "flip", "alternating_flip", "pad",
               "pad_mode", "max_steps")
PAD_MODES = ("zeros", "reflect")


# ------------------------------------------------------------------------------------------- array helpers
def as_nchw(x_uint8: np.ndarray) -> torch.Tensor:
    """uint8 ``[N, H, W, C]`` (or ``[N, H, W]``) array -> contiguous uint8 tensor ``[N, C, H, W]`` (CPU)."""
    x = check_images(x_uint8)
    return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))


def channel_stats(x_uint8: np.ndarray, chunk: int = 8192) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and std of uint8 images on the ``[0, 1]`` scale (float64 accumulation)."""
    x = np.asarray(x_uint8)
    if x.ndim == 3:
        x = x[..., None]
    c = x.shape[-1]
    s = np.zeros(c)
    s2 = np.zeros(c)
    n = 0
    for start in range(0, len(x), chunk):
        part = x[start:start + chunk].reshape(-1, c).astype(np.float64) / 255.0
        s += part.sum(0)
        s2 += (part * part).sum(0)
        n += len(part)
    mean = s / n
    std = np.sqrt(np.maximum(s2 / n - mean * mean, 0.0))
    return mean.astype(np.float32), np.maximum(std, 1e-3).astype(np.float32)


def augment_batch(x: torch.Tensor, generator: torch.Generator, pad: int = 4, flip: bool = True,
                  flip_mask: torch.Tensor | None = None, pad_mode: str = "zeros") -> torch.Tensor:
    """Random crop after ``pad`` pixels of padding, and horizontal flip, for a whole batch.

    ``x`` is a uint8 (or float) tensor ``[B, C, H, W]`` on any device; the random draws come from the CPU
    ``generator`` (so CPU and GPU runs see the same augmentation) and the indexing runs on ``x``'s device.
    ``pad_mode``: ``zeros`` (He et al. 2016) or ``reflect`` (the border mirrored, as airbench translates; the
    result is then float). The flips are random, or ``flip_mask`` (bool ``[B]``) where given.
    """
    b, c, h, w = x.shape
    dev = x.device
    if pad > 0:
        oy = torch.randint(0, 2 * pad + 1, (b,), generator=generator).to(dev)
        ox = torch.randint(0, 2 * pad + 1, (b,), generator=generator).to(dev)
        padded = (F.pad(x.float(), (pad, pad, pad, pad), mode="reflect") if pad_mode == "reflect"
                  else F.pad(x, (pad, pad, pad, pad)))
        rows = (oy[:, None] + torch.arange(h, device=dev))[:, None, :, None]
        cols = (ox[:, None] + torch.arange(w, device=dev))[:, None, None, :]
        x = padded[torch.arange(b, device=dev)[:, None, None, None], torch.arange(c, device=dev)[None, :, None, None],
                   rows, cols]
    if flip:
        mask = (torch.rand(b, generator=generator) < 0.5) if flip_mask is None else flip_mask
        x = torch.where(mask.to(dev)[:, None, None, None], x.flip(3), x)
    return x


def alternating_flips(n: int, epoch: int, generator: torch.Generator | None = None,
                      first: torch.Tensor | None = None) -> torch.Tensor:
    """Which of ``n`` training images are mirrored in ``epoch`` under alternating flips (Jordan 2024): a random
    half in epoch 0 (``first``, drawn from ``generator`` when not given), the other half in epoch 1, and so on, so
    every image is seen both ways in every two epochs instead of by chance."""
    if first is None:
        first = torch.rand(n, generator=generator) < 0.5
    return first ^ bool(epoch % 2)


class Lookahead:
    """Lookahead weight averaging as the fast-training recipe uses it (Zhang et al. 2019; Jordan 2024): every
    ``every`` steps an average of the weights and BatchNorm statistics moves towards the network and the network
    is reset to that average; the average forgets at ``base ** every * progress ** 3``, so early training keeps
    almost nothing and late training averages over its last steps. :meth:`finish` puts the average in the network."""

    def __init__(self, model: torch.nn.Module, every: int = 5, base: float = 0.95):
        self.model, self.every, self.base = model, every, base
        self.average = {k: v.detach().clone() for k, v in model.state_dict().items() if v.is_floating_point()}

    @torch.no_grad()
    def step(self, step: int, total_steps: int) -> None:
        if step % self.every == 0:
            self._blend(self.base ** self.every * (step / total_steps) ** 3)

    @torch.no_grad()
    def finish(self) -> None:
        self._blend(1.0)

    def _blend(self, decay: float) -> None:
        state = self.model.state_dict()
        for name, average in self.average.items():
            average.lerp_(state[name], 1 - decay)
            state[name].copy_(average)

    def state_dict(self) -> dict:
        return {k: v.detach().cpu() for k, v in self.average.items()}

    def load_state_dict(self, state: dict) -> None:
        for name, value in state.items():
            self.average[name].copy_(value)


def lr_factor(schedule: str, progress_frac: float, warmup_frac: float = 0.0) -> float:
    """Multiplier of the peak learning rate at ``progress_frac`` in [0, 1) of all training steps.

    * ``onecycle``: linear warm-up from 1/25 of the peak over ``warmup_frac`` (default 0.15), then cosine to 0.
    * ``cosine``: optional linear warm-up over ``warmup_frac``, then cosine to 0.
    * ``step``: He et al. 2016 -- divide by 10 at 50% and at 75% of training (32k/48k of 64k iterations).
    * ``triangle``: Jordan 2024 -- linear from 0.2 to 1 at 23% of training, then linear to 0.07.
    * ``constant``: 1.
    """
    t = float(progress_frac)
    if schedule == "onecycle":
        warmup_frac = warmup_frac or 0.15
        if t < warmup_frac:
            return 0.04 + 0.96 * t / warmup_frac
        return 0.5 * (1 + math.cos(math.pi * (t - warmup_frac) / (1 - warmup_frac)))
    if schedule == "cosine":
        if warmup_frac and t < warmup_frac:
            return (t + 1e-3) / warmup_frac
        return 0.5 * (1 + math.cos(math.pi * (t - warmup_frac) / max(1 - warmup_frac, 1e-9)))
    if schedule == "step":
        return 1.0 if t < 0.5 else (0.1 if t < 0.75 else 0.01)
    if schedule == "triangle":
        return 0.2 + 0.8 * t / 0.23 if t < 0.23 else 1.0 - 0.93 * (t - 0.23) / 0.77
    if schedule == "constant":
        return 1.0
    raise ValueError(f"unknown schedule '{schedule}'; use one of {SCHEDULES}")


# ------------------------------------------------------------------------------------------------ training
def recipe_kwargs(settings: dict) -> dict:
    """:func:`train_classifier` keyword arguments from a recipe ``settings`` entry, which holds every key of
    :data:`RECIPE_KEYS` (a config entry validated by its schema does)."""
    missing = [key for key in RECIPE_KEYS if key not in settings]
    if missing:
        raise ValueError(f"training recipe lacks {missing}: pass a config entry validated by "
                         "workflow/schemas/retrieval.schema.yaml ($defs/recipe fills the defaults)")
    s = settings
    return {"epochs": int(s["epochs"]), "batch_size": int(s["batch_size"]), "lr": float(s["lr"]),
            "schedule": s["schedule"], "momentum": float(s["momentum"]), "weight_decay": float(s["weight_decay"]),
            "bias_lr_scale": float(s["bias_lr_scale"]), "bias_decay": bool(s["bias_decay"]),
            "whiten_bias_epochs": s["whiten_bias_epochs"], "lookahead": bool(s["lookahead"]),
            "label_smoothing": float(s["label_smoothing"]), "augment": bool(s["augment"]), "flip": bool(s["flip"]),
            "alternating_flip": bool(s["alternating_flip"]), "pad": int(s["pad"]), "pad_mode": s["pad_mode"],
            "max_steps": s["max_steps"]}


def train_classifier(model: torch.nn.Module, x_uint8: np.ndarray, y: np.ndarray, *, epochs: int = 30,
                     batch_size: int = 128, lr: float = 0.1, schedule: str = "onecycle", augment: bool = True,
                     label_smoothing: float = 0.0, device: str = "auto", seed: int = 0,
                     weight_decay: float = 5e-4, momentum: float = 0.9, nesterov: bool = True,
                     bias_lr_scale: float = 1.0, bias_decay: bool = False, whiten_bias_epochs: int | None = None,
                     lookahead: bool = False, alternating_flip: bool = False, warmup_frac: float = 0.0, pad: int = 4,
                     pad_mode: str = "zeros", flip: bool | None = None,
                     x_val: np.ndarray | None = None, y_val: np.ndarray | None = None, eval_every: int = 1,
                     max_steps: int | None = None, precision: str = "auto", channels_last: bool | None = None,
                     show_progress: bool = True, record=None, resume_path: str | os.PathLike | None = None,
                     checkpoint_every_s: float = 300.0) -> dict:
    """Train ``model`` in place on uint8 images ``x_uint8`` ``[N, H, W, C]`` with int labels ``y``.

    Returns a JSON-serialisable metrics dict: per-epoch ``loss_curve`` / ``train_acc_curve`` (on augmented
    batches), sub-sampled ``step_loss``, ``val_accuracy`` / ``val_curve`` when ``x_val`` is given, timings
    (``train_time_s`` excludes validation), ``images_per_s``, ``device``, ``precision`` and the settings.

    SGD with (Nesterov) momentum; ``weight_decay`` applies to conv/linear weights, and with ``bias_decay`` to the
    biases too, at the weights' decay per step (airbench's decoupled decay). ``lr`` is the peak learning rate of
    the per-step ``schedule`` (see :func:`lr_factor`); the biases (BatchNorm's and the layers') learn at
    ``bias_lr_scale`` times it; ``whiten_bias_epochs``: the whitening layer's bias (a net with one) stops learning
    after that many epochs. The last partial batch of each epoch is dropped.
    ``lookahead``: :class:`Lookahead` weight averaging, whose average the trained network ends with. ``flip``
    defaults to ``augment`` (set it False for digits), ``alternating_flip`` mirrors each image in every other
    epoch (:func:`alternating_flips`) instead of at random; ``pad`` is the random-crop padding (``pad_mode``: see
    :func:`augment_batch`). A network with layers fitted to the data
    (:meth:`memgen.nets._Normalized.init_from_images`) fits them to the first 5,000 training images.
    ``precision`` (``auto``/``fp32``/``bf16``, see :func:`memgen.runtime.resolve_precision`) chooses bf16
    autocast for the forward and backward pass; ``channels_last`` defaults to on.
    ``max_steps`` truncates training (the schedule is laid out over the truncated length).
    ``seed`` drives shuffling and augmentation; weight initialization happens when the net is built, so call
    ``memgen.runtime.seed_everything(seed)`` before building it for a fully reproducible run.
    ``record``, when given, is called after every training step as ``record(epoch, idx, prob, correct)``: the
    positions in ``x_uint8`` of the batch, their true-class probability and correctness (on the augmented
    images, before the step), e.g. a :class:`memgen.learning_speed.LearningSpeedRecorder`.
    ``resume_path`` (a file outside the job's declared outputs, which Snakemake deletes when a job fails): the
    training state (weights, optimizer, RNG states, position, curves, and ``record``'s ``state_dict()``) is
    written there atomically at the start of a batch once ``checkpoint_every_s`` seconds have passed since the
    last write; a call whose arguments, data and initial weights match the saved run continues from it, a
    mismatching file is ignored and replaced. The file is removed when training ends. SIGINT or SIGTERM during
    such a run writes the state at the next batch and then takes effect (:class:`DeferredStop`).
    """
    wall0, cpu0 = time.perf_counter(), time.process_time()
    device = resolve_device(device)
    is_cuda = device.startswith("cuda")
    precision = resolve_precision(precision, device)
    channels_last = True if channels_last is None else channels_last
    flip = augment if flip is None else flip
    y = np.asarray(y)
    n = len(y)
    if len(x_uint8) != n:
        raise ValueError(f"{len(x_uint8)} images but {n} labels; pass matching arrays")
    if n == 0:
        raise ValueError("empty training set; check the split indices")
    if y.min() < 0 or y.max() >= model.fc.out_features:
        raise ValueError(f"labels span [{y.min()}, {y.max()}] but the model has {model.fc.out_features} outputs; "
                         "build the net with num_classes = number of task classes")
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown schedule '{schedule}'; use one of {SCHEDULES}")
    if pad_mode not in PAD_MODES:
        raise ValueError(f"unknown pad_mode '{pad_mode}'; use one of {PAD_MODES}")
    if whiten_bias_epochs is not None and getattr(model, "whiten", None) is None:
        raise ValueError(f"whiten_bias_epochs is set but {type(model).__name__} has no whitening layer; "
                         "drop the key or pick a whitened arch (airbench94, resnet20_whitened)")

    seed_everything(seed)
    gen = torch.Generator().manual_seed(seed)
    mean, std = channel_stats(x_uint8)
    model.set_normalization(mean, std)
    model.init_from_images(as_nchw(x_uint8[:5000]).float().div_(255))
    model.to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    if is_cuda:
        torch.backends.cudnn.benchmark = True

    x_all = as_nchw(x_uint8).to(device)
    y_all = torch.as_tensor(y, dtype=torch.long).to(device)
    bs = min(batch_size, n)
    steps_per_epoch = n // bs
    total_steps = epochs * steps_per_epoch
    if max_steps is not None:
        total_steps = min(total_steps, max_steps)
    if total_steps <= 0:
        raise ValueError(f"no training steps (epochs={epochs}, max_steps={max_steps})")
    groups = {"weights": [], "biases": [], "scales": []}
    for name, p in model.named_parameters():
        if p.requires_grad:
            groups["weights" if p.ndim > 1 else "biases" if name.endswith("bias") else "scales"].append(p)
    bias_weight_decay = weight_decay / bias_lr_scale if bias_decay else 0.0   # the weights' decay per step
    opt = torch.optim.SGD([{"params": groups["weights"], "weight_decay": weight_decay, "peak_lr": lr},
                           {"params": groups["biases"], "weight_decay": bias_weight_decay,
                            "peak_lr": lr * bias_lr_scale},
                           {"params": groups["scales"], "weight_decay": 0.0, "peak_lr": lr}],
                          lr=lr, momentum=momentum, nesterov=nesterov and momentum > 0)
    average = Lookahead(model) if lookahead else None
    first_flips = torch.rand(n, generator=gen) < 0.5 if alternating_flip else None

    loss_curve, acc_curve, step_loss, val_curve = [], [], [], []
    log_every = max(1, total_steps // 200)
    step, images, train_time = 0, 0, 0.0
    n_epochs = math.ceil(total_steps / steps_per_epoch)
    run_key = resume_key(model, x_uint8, y, {
        "epochs": epochs, "batch_size": batch_size, "lr": lr, "schedule": schedule, "augment": augment,
        "label_smoothing": label_smoothing, "device": device, "seed": seed, "weight_decay": weight_decay,
        "momentum": momentum, "nesterov": nesterov, "bias_lr_scale": bias_lr_scale, "bias_decay": bias_decay,
        "whiten_bias_epochs": whiten_bias_epochs, "lookahead": lookahead, "alternating_flip": alternating_flip,
        "warmup_frac": warmup_frac, "pad": pad, "pad_mode": pad_mode, "flip": flip,
        "eval_every": eval_every, "max_steps": max_steps, "precision": precision, "channels_last": channels_last,
        "n_val": None if x_val is None else len(x_val)}) if resume_path else None
    if resume_path and record is not None and not hasattr(record, "state_dict"):
        raise ValueError("a record hook of a resumable run needs state_dict() / load_state_dict() (its sums are part "
                         "of the training state)")
    resumed = load_training_state(resume_path, run_key) if resume_path else None
    start_epoch, start_batch, perm = 0, 0, None
    if resumed:
        model.load_state_dict(resumed["model"])
        opt.load_state_dict(resumed["optimizer"])
        restore_rng(resumed["rng"], gen)
        if average is not None:
            average.load_state_dict(resumed["lookahead"])
        if first_flips is not None:
            first_flips = resumed["first_flips"]
        if record is not None:
            record.load_state_dict(resumed["record"])
        start_epoch, start_batch, perm = resumed["epoch"], resumed["batch"], resumed["perm"].to(device)
        step, images, train_time = resumed["step"], resumed["images"], resumed["train_time"]
        loss_curve, acc_curve, step_loss, val_curve = (resumed["curves"][k] for k in ("loss", "acc", "step", "val"))
        print(f"resuming from {resume_path} at step {step} of {total_steps} (epoch {start_epoch + 1})")
    last_save = time.perf_counter()
    bar = progress(total=total_steps, initial=step, desc="train", disable=not show_progress)
    with DeferredStop(enabled=resume_path is not None) as stop:
        for epoch in range(start_epoch, n_epochs):
            model.train()
            if whiten_bias_epochs is not None and epoch >= whiten_bias_epochs:
                model.whiten.bias.requires_grad_(False)   # its optimizer entry then has no gradient and stays put
            t0 = time.perf_counter()
            if perm is None:
                perm = torch.randperm(n, generator=gen).to(device)
            loss_sum = torch.zeros((), device=device)
            correct = torch.zeros((), device=device, dtype=torch.long)
            seen = 0
            if resumed and epoch == start_epoch:
                loss_sum += resumed["loss_sum"]
                correct += resumed["correct"]
                seen = resumed["seen"]
            for b in range(start_batch if epoch == start_epoch else 0, steps_per_epoch):
                if step >= total_steps:
                    break
                if resume_path and (stop.signum or time.perf_counter() - last_save >= checkpoint_every_s):
                    save_training_state(resume_path, run_key, model, opt, gen, epoch=epoch, batch=b, perm=perm,
                                        step=step, images=images, train_time=train_time + time.perf_counter() - t0,
                                        loss_sum=loss_sum, correct=correct, seen=seen,
                                        curves={"loss": loss_curve, "acc": acc_curve, "step": step_loss,
                                                "val": val_curve},
                                        record=None if record is None else record.state_dict(),
                                        lookahead=None if average is None else average.state_dict(),
                                        first_flips=first_flips)
                    last_save = time.perf_counter()
                    if stop.signum:
                        bar.close()
                        print(f"{signal.Signals(stop.signum).name} at step {step} of {total_steps}: training state "
                              f"saved to {resume_path}; a rerun resumes from it", flush=True)
                        stop.deliver()
                factor = lr_factor(schedule, step / total_steps, warmup_frac)
                for group in opt.param_groups:
                    group["lr"] = group["peak_lr"] * factor
                idx = perm[b * bs:(b + 1) * bs]
                xb = x_all[idx]
                if augment or flip:
                    flip_mask = (None if first_flips is None
                                 else alternating_flips(n, epoch, first=first_flips)[idx.cpu()])
                    xb = augment_batch(xb, gen, pad=pad if augment else 0, flip=flip, flip_mask=flip_mask,
                                       pad_mode=pad_mode)
                xb = xb.float().div_(255)
                if channels_last:
                    xb = xb.contiguous(memory_format=torch.channels_last)
                yb = y_all[idx]
                with autocast(precision, device):
                    logits = model(xb)
                    loss = F.cross_entropy(logits.float(), yb, label_smoothing=label_smoothing)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                if average is not None:
                    average.step(step + 1, total_steps)
                loss_d = loss.detach()
                if record is not None:
                    prob = torch.softmax(logits.detach().float(), 1).gather(1, yb[:, None])[:, 0]
                    record(epoch, idx, prob, logits.detach().argmax(1) == yb)
                loss_sum += loss_d * len(idx)
                correct += (logits.detach().argmax(1) == yb).sum()
                seen += len(idx)
                if step % log_every == 0:
                    step_loss.append([step, float(loss_d)])
                step += 1
                images += len(idx)
                bar.update(1)
            perm = None
            if average is not None and step >= total_steps:
                average.finish()   # the network ends as the average (validated below)
            if is_cuda:
                torch.cuda.synchronize()
            train_time += time.perf_counter() - t0
            loss_curve.append(float(loss_sum) / max(seen, 1))
            acc_curve.append(float(correct) / max(seen, 1))
            bar.set_postfix(epoch=epoch + 1, loss=f"{loss_curve[-1]:.3f}", acc=f"{acc_curve[-1]:.3f}")
            last = epoch == n_epochs - 1
            if x_val is not None and (last or (eval_every and (epoch + 1) % eval_every == 0)):
                logits_val = predict_logits(model, x_val, device, precision=precision)
                val_acc = float((logits_val.argmax(1) == np.asarray(y_val)).mean())
                val_loss = float(F.cross_entropy(torch.from_numpy(logits_val), torch.as_tensor(y_val, dtype=torch.long)))
                val_curve.append({"epoch": epoch + 1, "accuracy": val_acc, "loss": val_loss})
    bar.close()
    model.eval()
    if whiten_bias_epochs is not None:
        model.whiten.bias.requires_grad_(True)
    if resume_path and os.path.exists(resume_path):
        os.remove(resume_path)
    return {
        "train_loss": loss_curve[-1], "train_accuracy": acc_curve[-1],
        "val_accuracy": val_curve[-1]["accuracy"] if val_curve else None,
        "loss_curve": loss_curve, "train_acc_curve": acc_curve, "step_loss": step_loss, "val_curve": val_curve,
        "epochs": epochs, "epochs_run": n_epochs, "steps": step, "batch_size": bs, "lr": lr, "schedule": schedule,
        "warmup_frac": warmup_frac, "weight_decay": weight_decay, "momentum": momentum,
        "bias_lr_scale": bias_lr_scale, "bias_decay": bool(bias_decay), "whiten_bias_epochs": whiten_bias_epochs,
        "lookahead": bool(lookahead), "alternating_flip": bool(alternating_flip),
        "label_smoothing": label_smoothing, "augment": bool(augment), "flip": bool(flip), "pad": pad,
        "pad_mode": pad_mode, "seed": seed,
        "device": device, "precision": precision,
        "channels_last": bool(channels_last), "torch_threads": torch.get_num_threads(),
        "train_time_s": train_time, "wall_time_s": time.perf_counter() - wall0,
        "cpu_time_s": time.process_time() - cpu0,
        "images_per_s": images / max(train_time, 1e-9), "n_train": n, "n_params": count_parameters(model),
        "resumed_at_step": resumed["step"] if resumed else None,
        "input_mean": [float(v) for v in mean], "input_std": [float(v) for v in std],
        "model": dict(model.config),
    }


# ------------------------------------------------------------------------------------------ resume files
class DeferredStop:
    """Within the block, SIGINT and SIGTERM wait for a safe point: the handler only records the signal in
    ``signum``; the loop, at its next safe point, saves its state and calls :meth:`deliver`, which puts the previous
    handlers back and raises the signal again, so that it then does what it would have done at once (SIGTERM ends
    the process, SIGINT raises ``KeyboardInterrupt``). A signal still pending when the block ends is delivered then.
    Does nothing when not ``enabled``, outside the main thread (where handlers cannot be set), and for a signal
    that is ignored."""

    def __init__(self, enabled: bool = True):
        self.enabled = enabled and threading.current_thread() is threading.main_thread()
        self.signum = None
        self.previous = {}

    def __enter__(self):
        if self.enabled:
            for signum in (signal.SIGINT, signal.SIGTERM):
                if signal.getsignal(signum) not in (signal.SIG_IGN, None):
                    self.previous[signum] = signal.signal(signum, self._record)
        return self

    def _record(self, signum, frame):
        # SIGTERM wins over SIGINT: ending the process at once beats unwinding a KeyboardInterrupt through it.
        if self.signum is None or signum == signal.SIGTERM:
            self.signum = signum

    def restore(self) -> None:
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)
        self.previous = {}

    def deliver(self) -> None:
        """Restore the previous handlers and raise the pending signal; if a handler returns, raise
        ``KeyboardInterrupt``: the loop that called this does not go on."""
        self.restore()
        signal.raise_signal(self.signum)
        raise KeyboardInterrupt(f"stopped by {signal.Signals(self.signum).name}")

    def __exit__(self, exc_type, exc, tb):
        if self.signum and exc_type is None:
            self.deliver()
        self.restore()


def resume_key(model: torch.nn.Module, x_uint8: np.ndarray, y: np.ndarray, settings: dict) -> str:
    """Fingerprint of one training run: its settings, the model's config and initial weights, and the data."""
    h = hashlib.sha256(repr(sorted(settings.items())).encode())
    h.update(repr(sorted(dict(model.config).items())).encode())
    for name, tensor in model.state_dict().items():
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    h.update(repr(np.shape(x_uint8)).encode())
    h.update(np.ascontiguousarray(x_uint8).tobytes())
    h.update(np.ascontiguousarray(y, dtype=np.int64).tobytes())
    return h.hexdigest()


def rng_state(gen: torch.Generator) -> dict:
    state = {"gen": gen.get_state(), "torch": torch.get_rng_state(), "numpy": np.random.get_state(),
             "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict, gen: torch.Generator) -> None:
    gen.set_state(state["gen"])
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_training_state(path, key: str, model, opt, gen, **position) -> None:
    """Atomically write everything :func:`train_classifier` needs to continue at ``position`` (tensors on CPU)."""
    def to_cpu(value):
        return value.detach().cpu() if isinstance(value, torch.Tensor) else value

    state = {"key": key, "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
             "optimizer": opt.state_dict(), "rng": rng_state(gen), **{k: to_cpu(v) for k, v in position.items()}}
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_training_state(path, key: str) -> dict | None:
    """The saved state of the run ``key`` at ``path``, or None when there is none (or it is another run's)."""
    if not os.path.exists(path):
        return None
    # Not weights_only: the file holds numpy / python RNG states; it is this job's own file, not downloaded.
    state = torch.load(path, map_location="cpu", weights_only=False)
    if state.get("key") != key:
        print(f"ignoring {path}: it was saved by a run with other settings, data or initial weights")
        return None
    return state


# ----------------------------------------------------------------------------------------------- inference
@torch.inference_mode()
def _run(model: torch.nn.Module, x_uint8: np.ndarray, device: str, batch_size: int | None, precision: str,
         fn) -> list:
    """``fn(batch)`` (a tensor or a tuple of tensors) over ``x_uint8`` in batches; float32 numpy arrays, one per
    output of ``fn``. Channels-last inputs (the convolutions then run channels-last whatever the weights' layout);
    ``batch_size`` None: 1024 images on CUDA, 128 on the CPU
    (batches that stay in cache: 2-3x the images/s of 1024-image NCHW batches on a 2-core CPU,
    ``tests/benchmarks/bench_inference.py``)."""
    device = resolve_device(device)
    precision = resolve_precision(precision, device)
    batch_size = batch_size or (1024 if device.startswith("cuda") else 128)
    model.to(device).eval()
    x = as_nchw(x_uint8)
    outs = []
    for start in range(0, max(len(x), 1), batch_size):   # an empty array still gives outputs of the right width
        xb = x[start:start + batch_size].to(device, non_blocking=True).float().div_(255)
        xb = xb.contiguous(memory_format=torch.channels_last)
        with autocast(precision, device):
            out = fn(xb)
        outs.append([t.float().cpu() for t in (out if isinstance(out, tuple) else (out,))])
    return [torch.cat(parts).numpy() for parts in zip(*outs)]


def learning_speed(model: torch.nn.Module, x_uint8: np.ndarray, y: np.ndarray, **train_kwargs):
    """The learning-speed proxy outside the workflow: train ``model`` in place on ``x_uint8`` / ``y`` with
    :func:`train_classifier` (``train_kwargs``: epochs, lr, device, seed, ...) while a
    :class:`memgen.learning_speed.LearningSpeedRecorder` records every pass; return the
    :class:`memgen.learning_speed.LearningSpeed` of every training example and the training metrics."""
    from memgen.learning_speed import LearningSpeed, LearningSpeedRecorder

    recorder = LearningSpeedRecorder(len(y))
    metrics = train_classifier(model, x_uint8, y, record=recorder, **train_kwargs)
    return LearningSpeed.from_recorder(recorder), metrics


def predict_logits(model: torch.nn.Module, x_uint8: np.ndarray, device: str = "auto", batch_size: int | None = None,
                   precision: str = "auto") -> np.ndarray:
    """Logits ``[N, n_classes]`` (float32, eval mode) for uint8 images ``[N, H, W, C]``."""
    return _run(model, x_uint8, device, batch_size, precision, model)[0]


def embed(model: torch.nn.Module, x_uint8: np.ndarray, device: str = "auto", batch_size: int | None = None,
          precision: str = "auto", flip_average: bool = False,
          translate_average: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """The model's embedding ``[N, D]`` (ResNet-20: 64-d after global average pooling) and its logits
    ``[N, n_classes]`` (``fc`` of that embedding: the same values as :func:`predict_logits`) for uint8 images,
    from one pass through the network. Test-time augmentation averages the embedding over views of each image
    (the logits, ``fc`` of it, are then the average of the views' logits): ``flip_average``, the image and its
    mirror; ``translate_average`` adds the image shifted one pixel up-left and one down-right (reflected edges),
    weighted 1/4 each against 1/2 for the unshifted one (Jordan 2024), each with its mirror under ``flip_average``."""
    def views(xb):
        emb = model.embed(xb)
        return (emb + model.embed(xb.flip(3))) / 2 if flip_average else emb

    def average(xb):
        emb = views(xb)
        if translate_average:
            padded = F.pad(xb, (1, 1, 1, 1), mode="reflect")
            h, w = xb.shape[2:]
            shifted = (views(padded[:, :, :h, :w].contiguous(memory_format=torch.channels_last))
                       + views(padded[:, :, 2:, 2:].contiguous(memory_format=torch.channels_last)))
            emb = emb / 2 + shifted / 4
        return emb, model.fc(emb)

    emb, logits = _run(model, x_uint8, device, batch_size, precision, average)
    return emb, logits


# --------------------------------------------------------------------------------------------- checkpoints
def save_checkpoint(path: str | os.PathLike, model: torch.nn.Module, metrics: dict | None = None) -> None:
    """Atomically write ``{"config", "state_dict", "metrics"}`` (weights moved to CPU)."""
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    with atomic_path(path) as tmp:
        torch.save({"config": dict(model.config), "state_dict": state, "metrics": metrics or {}}, tmp)


def load_checkpoint(path: str | os.PathLike, device: str = "cpu") -> tuple[torch.nn.Module, dict]:
    """Rebuild the network from a checkpoint written by :func:`save_checkpoint`; returns ``(model, metrics)``."""
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    model = build_net(ckpt["config"])
    model.load_state_dict(ckpt["state_dict"])
    return model.to(resolve_device(device)).eval(), ckpt["metrics"]
