"""SIGINT or SIGTERM to the Snakemake process stops the run's jobs too.

Left to itself, Snakemake 9 lets its local jobs run on when it is told to stop: SIGINT stops scheduling and waits
for the running jobs (whose outputs then stay marked incomplete), SIGTERM waits for them to finish. The workflow
calls :func:`stop_jobs_on_signal` when the run starts (``onstart`` in ``workflow/rules/common.smk``), in the
Snakemake process only; the jobs themselves do not import this module.

* Local jobs (the job processes are Snakemake's descendants): Snakemake stops scheduling as on its own SIGTERM
  (its scheduler's ``exit_gracefully``), and every descendant process gets SIGTERM and, if still alive ``grace_s``
  later, SIGKILL. A training job saves its state at the next batch and then ends
  (:func:`memgen.train.train_classifier`); other jobs end at once. Snakemake then handles each stopped job as a
  failed one: it removes its outputs, and the next run plans it again; a training job resumes from its state.
* Cluster jobs (not descendants): SIGINT and SIGTERM both take Snakemake's SIGINT path, which cancels the
  submitted jobs with the executor's cancel command (``cluster-generic-cancel-cmd``; SLURM's ``scancel``).

A signal that was ignored when the run started (SIGINT of a job started in the background by a non-interactive
shell) stays ignored.
"""

from __future__ import annotations

import signal
import sys
import threading
import time

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def stop_jobs_on_signal(stop_scheduling, *, local: bool = True, grace_s: float = 4.0) -> None:
    """Install the SIGINT and SIGTERM handlers of a Snakemake process whose scheduler ``stop_scheduling()`` stops
    starting jobs; ``local``: its jobs are its descendant processes (else it submits them to a cluster)."""
    def stop(signum, frame):
        if not local:
            raise KeyboardInterrupt
        # The work runs in a thread: the interrupted main thread may hold the scheduler's lock or be writing to
        # stderr, and a handler that waits for either would never return.
        threading.Thread(target=stop_jobs, args=(signal.Signals(signum).name,), daemon=True,
                         name="memgen-stop-jobs").start()

    def stop_jobs(name):
        stop_scheduling()
        jobs = stop_descendants(grace_s)
        print(f"memgen: {name}: starting no more jobs and stopping {len(jobs)} running job process(es); "
              "training jobs save their state under results/checkpoints/ and the next run resumes from it",
              file=sys.stderr, flush=True)

    for signum in STOP_SIGNALS:
        if signal.getsignal(signum) is not signal.SIG_IGN:
            signal.signal(signum, stop)


def stop_descendants(grace_s: float) -> list:
    """SIGTERM to every descendant of this process, then SIGKILL to those still alive ``grace_s`` seconds later
    (from a background thread), and to any job that was being started when the signal came; returns the processes
    signalled. Nothing here waits on a process: reaping a child
    would take its exit status from the Snakemake thread that waits on it, which then reads it as a success."""
    import psutil

    def alive(proc):
        try:
            return proc.status() != psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return False

    processes = psutil.Process().children(recursive=True)
    for proc in processes:
        try:
            proc.send_signal(signal.SIGTERM)
        except psutil.NoSuchProcess:
            pass

    def kill_survivors():
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline and any(alive(proc) for proc in processes):
            time.sleep(0.1)
        late = [proc for proc in psutil.Process().children(recursive=True) if proc not in processes]
        for proc in processes + late:
            if alive(proc):
                try:
                    proc.kill()
                except psutil.NoSuchProcess:
                    pass

    threading.Thread(target=kill_survivors, daemon=True, name="memgen-kill-jobs").start()
    return processes
