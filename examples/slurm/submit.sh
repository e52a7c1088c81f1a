#!/usr/bin/env bash
# Submit a sharded rsprep build to SLURM: an array job of N shards (build-shard.sbatch), then the
# finalize job (finalize.sbatch), which starts once every array task ended successfully.
#
#   examples/slurm/submit.sh rsprep-build.env [sbatch options for both jobs, e.g. --partition=cpu]
#
# The settings (RECIPE, S2, S1, CLC, COUNTRIES, OUT, N, RSPREP, BUILD_ARGS, WORKERS) come from the
# file named first, else from the environment; both jobs get them through the environment
# (sbatch --export=ALL). Prints the two job ids.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
if [ $# -gt 0 ] && [ "${1#-}" = "$1" ]; then
  set -a
  # shellcheck disable=SC1090
  source "$1"
  set +a
  shift
fi
: "${RECIPE:?set RECIPE (a recipe name or file)}" "${S2:?set S2 (Sentinel-2 paths)}"
: "${CLC:?set CLC (the CLC file)}" "${OUT:?set OUT (the output folder, on the shared filesystem)}"
N=${N:-16}
export RECIPE S2 S1 CLC COUNTRIES OUT N RSPREP BUILD_ARGS WORKERS
mkdir -p "$OUT"

array=$(sbatch --parsable --export=ALL --array="0-$((N - 1))" "$@" "$here/build-shard.sbatch")
array=${array%%;*}  # --parsable prints JOBID or JOBID;CLUSTER
final=$(sbatch --parsable --export=ALL --dependency="afterok:$array" "$@" "$here/finalize.sbatch")
final=${final%%;*}
echo "array job $array: $N shards of $RECIPE into $OUT; finalize job $final runs once all succeeded"
