#!/usr/bin/env bash
# A stand-in for sbatch/qsub: start the Snakemake job script as a separate, detached process,
# record the rule and its declared inputs in a ledger, and print a job id.
set -euo pipefail
jobscript="$1"
ledger="${MEMGEN_CLUSTER_LEDGER:-.snakemake/local-cluster/jobs.tsv}"
mkdir -p "$(dirname "$ledger")"
properties=$(grep -m1 '^# properties = ' "$jobscript" | sed 's/^# properties = //')
python3 - "$properties" >> "$ledger" <<'PY'
import json, sys
job = json.loads(sys.argv[1])
print(job.get("rule", job.get("type")), json.dumps(job.get("input", [])), sep="\t")
PY
setsid bash "$jobscript" > "$(dirname "$ledger")/$(basename "$jobscript").out" 2>&1 < /dev/null &
echo "$!"
