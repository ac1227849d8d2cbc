"""Checkpoint and resume inside a training job: a job killed mid-way and rerun ends with the weights of an
uninterrupted run, bit for bit (CPU, same seed, same threads)."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from memgen.nets import MnistCNN
from memgen.runtime import seed_everything
from memgen.train import save_training_state, train_classifier

from conftest import recipe

REPO = Path(__file__).resolve().parents[1]

# One training job: a small CNN on random 16x16 images, with augmentation (crop draws from the generator,
# alternating flips), Lookahead weight averaging, validation every epoch and a onecycle schedule, so every piece of
# state that resuming must restore is in use.
TRAIN_JOB = """
import sys
import numpy as np
import torch
from memgen.nets import MnistCNN
from memgen.runtime import seed_everything
from memgen.train import train_classifier

out, resume, every = sys.argv[1], sys.argv[2] or None, float(sys.argv[3])
torch.set_num_threads(1)
rng = np.random.default_rng(0)
x = rng.integers(0, 256, (96, 16, 16, 1), dtype=np.uint8)
y = rng.integers(0, 4, 96)
seed_everything(3)
model = MnistCNN(num_classes=4, image_size=16)
metrics = train_classifier(model, x[:80], y[:80], epochs=8, batch_size=8, lr=0.05, augment=True, pad=2,
                           alternating_flip=True, lookahead=True, bias_lr_scale=4.0, device="cpu", seed=3,
                           x_val=x[80:], y_val=y[80:], show_progress=False, resume_path=resume,
                           checkpoint_every_s=every)
torch.save({"state": model.state_dict(), "val_curve": metrics["val_curve"], "loss_curve": metrics["loss_curve"],
            "resumed_at_step": metrics["resumed_at_step"], "steps": metrics["steps"]}, out)
"""


def run_job(tmp_path, out, resume="", every=0.0, **kwargs):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-c", TRAIN_JOB, str(out), str(resume), str(every)], env=env,
                            cwd=tmp_path, **kwargs)


def test_killed_training_job_resumes_to_the_uninterrupted_weights(tmp_path):
    reference = run_job(tmp_path, tmp_path / "reference.pt")
    assert reference.wait(timeout=300) == 0
    ref = torch.load(tmp_path / "reference.pt")

    resume = tmp_path / "checkpoints" / "job.pt"
    killed = run_job(tmp_path, tmp_path / "resumed.pt", resume=resume)
    deadline, seen, writes = time.time() + 120, None, 0
    while writes < 4:                    # each step replaces the file (rename): wait for a few of them
        assert killed.poll() is None, "the job ended before it was killed; make it longer"
        assert time.time() < deadline, "no checkpoints within 120 s"
        try:
            stat = resume.stat()
            now = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
        except FileNotFoundError:
            now = None
        if now is not None and now != seen:
            seen, writes = now, writes + 1
        time.sleep(0.002)
    killed.send_signal(signal.SIGKILL)
    assert killed.wait(timeout=60) == -signal.SIGKILL
    assert not (tmp_path / "resumed.pt").exists(), "the job finished before it was killed; make it longer"
    saved = torch.load(resume, weights_only=False)
    assert 0 < saved["step"] < ref["steps"]

    rerun = run_job(tmp_path, tmp_path / "resumed.pt", resume=resume)
    assert rerun.wait(timeout=300) == 0
    got = torch.load(tmp_path / "resumed.pt")
    assert got["resumed_at_step"] >= saved["step"] > 0
    assert got["state"].keys() == ref["state"].keys()
    for name in ref["state"]:
        assert torch.equal(got["state"][name], ref["state"][name]), name
    assert got["loss_curve"] == ref["loss_curve"] and got["val_curve"] == ref["val_curve"]
    assert not resume.exists(), "the checkpoint is removed when training ends"


def _toy(n=48):
    rng = np.random.default_rng(1)
    return rng.integers(0, 256, (n, 16, 16, 1), dtype=np.uint8), rng.integers(0, 3, n)


def _train(x, y, resume_path=None, lr=0.05):
    seed_everything(5)
    model = MnistCNN(num_classes=3, image_size=16)
    metrics = train_classifier(model, x, y, epochs=2, batch_size=16, lr=lr, device="cpu", seed=5,
                               show_progress=False, resume_path=resume_path, checkpoint_every_s=0.0)
    return model.state_dict(), metrics


def test_checkpoint_of_another_run_is_ignored_and_replaced(tmp_path, single_torch_thread, capsys):
    x, y = _toy()
    reference, _ = _train(x, y)
    # A checkpoint left by a run with another learning rate, half-way through: it must not be resumed.
    seed_everything(5)
    other = MnistCNN(num_classes=3, image_size=16)
    opt = torch.optim.SGD(other.parameters(), lr=0.5)
    resume = tmp_path / "job.pt"
    save_training_state(resume, "another run", other, opt, torch.Generator(), epoch=1, batch=1,
                        perm=torch.arange(len(y)), step=4, images=64, train_time=1.0, loss_sum=torch.zeros(()),
                        correct=torch.zeros((), dtype=torch.long), seen=16,
                        curves={"loss": [9.0], "acc": [0.0], "step": [], "val": []})
    state, metrics = _train(x, y, resume_path=resume)
    assert "ignoring" in capsys.readouterr().out
    assert metrics["resumed_at_step"] is None and metrics["loss_curve"][0] != 9.0
    assert all(torch.equal(state[k], reference[k]) for k in reference)
    assert not resume.exists()


def test_checkpointing_does_not_change_the_result(tmp_path, single_torch_thread):
    x, y = _toy()
    plain, _ = _train(x, y)
    checkpointed, metrics = _train(x, y, resume_path=tmp_path / "job.pt")
    assert metrics["resumed_at_step"] is None
    assert all(torch.equal(plain[k], checkpointed[k]) for k in plain)


def test_net_learner_rerun_skips_finished_networks_and_never_reuses_other_settings(tmp_path, single_torch_thread,
                                                                                  monkeypatch):
    import memgen.train
    from memgen.influence.learners import NetLearner

    rng = np.random.default_rng(3)
    x_train, x_test = (rng.integers(0, 256, (m, 16, 16, 1), dtype=np.uint8) for m in (48, 12))
    y_train, y_test = rng.integers(0, 3, 48), rng.integers(0, 3, 12)
    subsets, seeds = [np.arange(0, 40), np.arange(8, 48)], [11, 12]
    settings = recipe(arch="mnist_cnn", epochs=1, batch_size=16, lr=0.05, augment=False, flip=False)

    def learner(**changes):
        net = NetLearner(x_train, y_train, x_test, y_test, {**settings, **changes}, device="cpu")
        net.checkpoint_to(tmp_path / "shard", every_s=0.0)
        return net

    plain = NetLearner(x_train, y_train, x_test, y_test, settings, device="cpu").fit_predict(subsets, seeds)
    first = learner().fit_predict(subsets, seeds)
    assert len(list((tmp_path / "shard").glob("outputs_*.npz"))) == 2
    assert not list((tmp_path / "shard").glob("training_*.pt")), "finished networks leave no resume file"
    trained = []
    real_train = memgen.train.train_classifier

    def counting(*args, **kwargs):
        trained.append(kwargs["seed"])
        return real_train(*args, **kwargs)

    monkeypatch.setattr(memgen.train, "train_classifier", counting)
    rerun = learner().fit_predict(subsets, seeds)
    assert trained == []                                        # both networks came from their saved outputs
    other = learner(lr=0.02).fit_predict(subsets[:1], seeds[:1])
    assert trained == [11]                                      # other settings: trained, not taken from the folder
    for f in ("correct_train", "prob_train", "margin_test"):
        assert np.array_equal(getattr(first, f), getattr(plain, f))
        assert np.array_equal(getattr(rerun, f), getattr(plain, f))
    assert not np.array_equal(other.prob_train[0], plain.prob_train[0])


def test_resumed_run_restores_the_record_hook_sums(tmp_path, single_torch_thread, monkeypatch):
    """A learning-speed recorder's sums are part of the training state: resuming from a mid-run checkpoint with a
    fresh recorder ends with the sums of an uninterrupted run."""
    import memgen.train
    from memgen.learning_speed import LearningSpeedRecorder

    x, y = _toy()

    def train(recorder, resume_path=None):
        seed_everything(5)
        model = MnistCNN(num_classes=3, image_size=16)
        train_classifier(model, x, y, epochs=3, batch_size=16, lr=0.05, device="cpu", seed=5, show_progress=False,
                         record=recorder, resume_path=resume_path, checkpoint_every_s=0.0)
        return model.state_dict()

    reference = LearningSpeedRecorder(len(y))
    ref_state = train(reference)
    snapshots, real_save = [], memgen.train.save_training_state

    def keep_snapshot(path, *args, **kwargs):
        real_save(path, *args, **kwargs)
        snapshots.append(Path(path).read_bytes())

    monkeypatch.setattr(memgen.train, "save_training_state", keep_snapshot)
    resume = tmp_path / "job.pt"
    train(LearningSpeedRecorder(len(y)), resume)
    resume.write_bytes(snapshots[len(snapshots) // 2])          # as if killed half-way, in the second epoch
    resumed = LearningSpeedRecorder(len(y))
    state = train(resumed, resume)
    assert all(torch.equal(state[k], ref_state[k]) for k in ref_state)
    for name, values in reference.arrays().items():
        assert np.array_equal(resumed.arrays()[name], values), name
