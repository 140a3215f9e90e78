#!/usr/bin/env bash
# transformers' own BigBirdPegasus model tests, run against transformers' classes and then against ours; prints how
# many of the tests that pass for transformers pass for ours, and lists the others.
#
#   tools/transformers_suite/run.sh PATH/TO/transformers [OUT_FOLDER]
#
# PATH/TO/transformers: a source checkout of the installed transformers version (its tests/ and utils/ folders,
# e.g. `git clone --depth 1 --branch v5.24.0 https://github.com/huggingface/transformers`). Nothing of it is copied
# into this project. OUT_FOLDER (default benchmarks/out/transformers-suite) receives both pytest logs. Its test
# helpers need `pip install pytest-xdist pytest-timeout parameterized` beside this project's test extra.
set -euo pipefail
checkout=$(realpath "$1")
out=$(realpath -m "${2:-benchmarks/out/transformers-suite}")
here=$(dirname "$(realpath "$0")")
mkdir -p "$out"
for classes in reference ours; do
  echo "running transformers' tests against the $classes classes -> $out/$classes.txt" >&2
  (cd "$checkout" && POINT_AT=$classes PYTHONPATH="$here:$checkout" HF_HUB_OFFLINE=1 \
    python -m pytest -p ours_plugin tests/models/bigbird_pegasus -q -p no:cacheprovider -rA -W ignore \
    > "$out/$classes.txt" 2>&1) || true
done
python "$here/compare.py" "$out/reference.txt" "$out/ours.txt"
