"""SIGINT or SIGTERM to a running workflow: every job stops within 5 s, no partial output counts as done, and the
next run resumes training from the state the stopped job saved. Real signals to a real Snakemake process running
the smoke DAG's `train_backbone` (MNIST, given many epochs so that it runs until stopped), sent to Snakemake's
PID alone and to its whole process group."""

import os
import re
import signal
import subprocess
import sys
import time

import psutil
import pytest
import torch

from memgen.train import DeferredStop
from test_workflow import SMOKE, copy_project, planned_jobs, snakemake

TARGET = "results/retrieval/mnist/full/backbone.json"
OUTPUTS = ["backbone.pt", "backbone.json", "proxies.csv", "proxies.npz"]
LOG = "results/logs/train_backbone/mnist/full.log"
RESUME = "results/checkpoints/train_backbone/mnist/full.pt"
# The smoke recipe for MNIST without its 4-step cap: 7 steps per epoch, for longer than the test runs.
LONG = "retrieval:\n  backbone:\n    mnist: {arch: mnist_cnn, epochs: 3000, batch_size: 64, lr: 0.05, flip: false, " \
       "max_steps: null}\n"


def test_deferred_stop_delivers_a_signal_at_the_safe_point_and_restores_the_handlers():
    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    reached_safe_point = False
    with pytest.raises(KeyboardInterrupt):
        with DeferredStop() as stop:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)                     # the handler runs; without the deferral this raised already
            assert stop.signum == signal.SIGINT
            reached_safe_point = True
            stop.deliver()
    assert reached_safe_point
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == before
    with DeferredStop(enabled=False) as stop:   # not enabled: signals keep their handlers
        assert signal.getsignal(signal.SIGINT) is before[1] and stop.signum is None


def alive(proc):
    try:
        return proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def run_until(root, data_root, ready, options=("--cores", "2")):
    """Start Snakemake on TARGET in its own process group; return it once `ready(log text)` holds."""
    (root / LOG).unlink(missing_ok=True)
    with open(root / "snakemake.out", "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "snakemake", *options, TARGET, *SMOKE, "long.yaml",
                                 "--config", f"data_root={data_root}"], cwd=root, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"})
    deadline = time.time() + 120
    while not ((root / LOG).exists() and ready((root / LOG).read_text())):
        assert proc.poll() is None, (root / "snakemake.out").read_text()[-3000:]
        assert time.time() < deadline, "training did not start within 120 s"
        time.sleep(0.2)
    return proc


def stop(root, data_root, proc, signum, group):
    """Send `signum` to Snakemake (or its process group); check that its jobs are gone within 5 s, that it fails,
    that the job's outputs are gone and planned again, and that the training state was saved; return its step."""
    jobs = psutil.Process(proc.pid).children(recursive=True)
    assert any("train_backbone" in " ".join(job.cmdline()) for job in jobs), [job.cmdline() for job in jobs]
    sent = time.time()
    if group:
        os.killpg(proc.pid, signum)
    else:
        os.kill(proc.pid, signum)
    while any(alive(job) for job in jobs):
        assert time.time() - sent < 5, f"job processes alive 5 s after {signum.name}: {jobs}"
        time.sleep(0.05)
    print(f"{signum.name} to Snakemake's {'process group' if group else 'PID'}: every job process gone after "
          f"{time.time() - sent:.2f} s")
    assert proc.wait(timeout=60) != 0
    out = (root / "snakemake.out").read_text()
    log = (root / LOG).read_text()
    assert f"memgen: {signum.name}: starting no more jobs" in out, out[-3000:]
    assert "Error in rule train_backbone" in out, out[-3000:]
    assert not any((root / "results/retrieval/mnist/full" / name).exists() for name in OUTPUTS)
    code, dry = snakemake("-n", TARGET, *SMOKE, "long.yaml", "--config", f"data_root={data_root}", cwd=root)
    assert code == 0 and planned_jobs(dry) == {"train_backbone": 1}, dry[-3000:]
    step = torch.load(root / RESUME, weights_only=False)["step"]
    assert re.search(rf"(SIGINT|SIGTERM) at step {step} of \d+: training state saved", log), log[-2000:]
    print(f"  training state saved at step {step}")
    return step


def trained_after(marker):
    """Ready once the log holds `marker` and the job has trained for 2 s since."""
    seen = {}

    def ready(log):
        if marker not in log:
            return False
        seen.setdefault("at", time.time())
        return time.time() - seen["at"] > 2

    return ready


@pytest.fixture(scope="module")
def project(data_root, tmp_path_factory):
    """A copy of the project with a long MNIST backbone recipe (long.yaml) and its data and split made."""
    root = copy_project(tmp_path_factory.mktemp("interrupt"))
    (root / "long.yaml").write_text(LONG)
    code, out = snakemake("--cores", "2", "results/splits/mnist/full.npz", *SMOKE, "long.yaml", "--config",
                          f"data_root={data_root}", cwd=root)
    assert code == 0, out[-3000:]
    return root


@pytest.mark.slow
def test_a_signal_stops_every_job_within_5_s_and_the_next_run_resumes_training(data_root, project):
    step = stop(project, data_root, run_until(project, data_root, trained_after("train:")), signal.SIGINT, group=False)
    assert step > 0
    for signum, group in [(signal.SIGTERM, True), (signal.SIGINT, True)]:
        # The rerun continues from the saved state, trains on, and stops again, further on.
        proc = run_until(project, data_root, trained_after(f"resuming from {RESUME} at step {step} of"))
        new_step = stop(project, data_root, proc, signum, group)
        assert new_step > step
        step = new_step


@pytest.mark.slow
def test_a_signal_cancels_the_jobs_of_a_cluster_run(data_root, project):
    """Through the local-cluster profile each job runs detached (submit.sh), not as Snakemake's child: SIGTERM to
    Snakemake cancels it with the profile's cancel command, and the training job saves its state."""
    proc = run_until(project, data_root, trained_after("train:"),
                     options=("--workflow-profile", "workflow/profiles/local-cluster"))
    jobs = [job for job in psutil.process_iter(["cmdline"]) if str(project) in " ".join(job.info["cmdline"] or [])]
    assert any("train_backbone" in " ".join(job.info["cmdline"]) for job in jobs), jobs
    sent = time.time()
    os.kill(proc.pid, signal.SIGTERM)
    while any(alive(job) for job in jobs):
        assert time.time() - sent < 5, f"cluster job processes alive 5 s after SIGTERM: {jobs}"
        time.sleep(0.05)
    print(f"SIGTERM to a cluster run's Snakemake: every job process gone after {time.time() - sent:.2f} s")
    assert proc.wait(timeout=60) != 0
    assert not any((project / "results/retrieval/mnist/full" / name).exists() for name in OUTPUTS)
    step = torch.load(project / RESUME, weights_only=False)["step"]
    assert f"SIGTERM at step {step} of" in (project / LOG).read_text()
