#!/usr/bin/env bash
# A stand-in for scancel/qdel, given job ids printed by submit.sh: each is the id of the session setsid gave the job,
# so SIGTERM to its process group reaches the job script, its Snakemake and the job's own processes.
for job in "$@"; do
  kill -TERM -- "-$job" 2>/dev/null || true
done
