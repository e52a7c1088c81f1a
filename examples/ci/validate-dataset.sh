#!/usr/bin/env bash
# Validate a reBEN dataset in CI: install rsprep, get the dataset, run `rsprep validate`, keep the
# JSON report, fail the job on errors. The exit code of `rsprep validate` is the contract:
#   0  no check found an error (with --strict: no warning either)
#   1  at least one error (or a warning under --strict), or the dataset could not be opened
#   2  a usage error (unknown option, bad --sample)
#
# Environment:
#   DATASET          the dataset folder to check (default: dataset)
#   RSPREP_SPEC      what pip installs (default: . , this checkout; a path, wheel or git URL works too)
#   RSPREP           an rsprep executable to use instead of installing one
#   VALIDATE_ARGS    extra arguments, e.g. "--strict --sample 0.05" or "--full"
#   FETCH_DATASET    optional command that puts the dataset at $DATASET first
#                    (e.g. "rsprep build demo ..." or an rsync / download of an official reBEN folder)
set -euo pipefail

DATASET=${DATASET:-dataset}
RSPREP_SPEC=${RSPREP_SPEC:-.}
VALIDATE_ARGS=${VALIDATE_ARGS:-}

if [ -z "${RSPREP:-}" ]; then
  python3 -m venv .venv-validate
  .venv-validate/bin/python -m pip install --quiet --upgrade pip
  .venv-validate/bin/python -m pip install --quiet "$RSPREP_SPEC"
  RSPREP=$PWD/.venv-validate/bin/rsprep
fi
export RSPREP

if [ -n "${FETCH_DATASET:-}" ]; then
  bash -c "$FETCH_DATASET"
fi

status=0
# shellcheck disable=SC2086  # VALIDATE_ARGS is a list of options
"$RSPREP" validate "$DATASET" --json $VALIDATE_ARGS > report.json || status=$?
if [ ! -s report.json ]; then
  echo "validate-dataset: rsprep validate wrote no report (exit $status)" >&2
  exit "$status"
fi
python3 - <<'PY'
import json
r = json.load(open("report.json"))
print(f"{r['dataset']}: {r['errors']} error(s), {r['warnings']} warning(s)")
for c in r["checks"]:
    print(f"  {c['name']:14s} {c['status']:9s} checked {c['checked']}")
for p in [p for p in r["problems"] if p["severity"] == "error"][:20]:
    print(f"  error [{p['check']}] {p['where'] or ''}: {p['message']}")
PY
exit "$status"
