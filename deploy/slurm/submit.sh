#!/usr/bin/env bash
# Submits convpca's sharded calibration to Slurm: a job array of SHARDS calibrate tasks, then a
# merge (and, with OUT set, compress) job that runs only if every task succeeded and is
# cancelled if one fails. Prints the two job ids: "ARRAY_JOB MERGE_JOB".
#
# Usage: submit.sh MODEL DATA WORKDIR [SHARDS]
#   MODEL, DATA  the ONNX model and the calibration data, where every node can read them
#   WORKDIR      a shared folder; gets stats/shard-I.cps, all.cps and logs/
#   SHARDS       number of array tasks (default: $SHARDS, else 4)
# Environment:
#   CONVPCA        the convpca binary (default: convpca on PATH)
#   OUT            path of the compressed model (default: merge only)
#   CONVPCA_ARGS   more calibrate flags, e.g. "--provider cuda --max-samples 20000"
#   COMPRESS_ARGS  more compress flags, e.g. "--energy 0.99"
#   SBATCH_ARGS    more sbatch flags for both jobs, e.g. "--partition=gpu --time=01:00:00"
set -euo pipefail
if [ $# -lt 3 ] || [ $# -gt 4 ]; then
	sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2
	exit 2
fi
abs() { case $1 in /*) printf '%s\n' "$1" ;; *) printf '%s\n' "$PWD/$1" ;; esac }
here=$(cd "$(dirname "$0")" && pwd)
MODEL=$(abs "$1")
DATA=$(abs "$2")
WORKDIR=$(abs "$3")
SHARDS=${4:-${SHARDS:-4}}
CONVPCA=${CONVPCA:-$(command -v convpca || true)}
if [ -z "$CONVPCA" ]; then
	echo "submit.sh: convpca is not on PATH; set CONVPCA to the binary" >&2
	exit 2
fi
CONVPCA=$(abs "$CONVPCA")
case $SHARDS in '' | *[!0-9]* | 0) echo "submit.sh: SHARDS=$SHARDS is not a positive integer" >&2; exit 2 ;; esac
[ -z "${OUT:-}" ] || OUT=$(abs "$OUT")
export CONVPCA MODEL DATA WORKDIR SHARDS OUT CONVPCA_ARGS COMPRESS_ARGS
mkdir -p "$WORKDIR/stats" "$WORKDIR/logs"

# shellcheck disable=SC2086 # SBATCH_ARGS is a list of flags
array=$(sbatch --parsable --array="0-$((SHARDS - 1))" --output="$WORKDIR/logs/calibrate-%A_%a.out" \
	${SBATCH_ARGS:-} "$here/calibrate-array.sbatch")
array=${array%%;*} # --parsable prints JOBID[;CLUSTER]
# shellcheck disable=SC2086
merge=$(sbatch --parsable --dependency="afterok:$array" --kill-on-invalid-dep=yes \
	--output="$WORKDIR/logs/merge-%j.out" ${SBATCH_ARGS:-} "$here/merge-compress.sbatch")
echo "$array ${merge%%;*}"
