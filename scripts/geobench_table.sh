#!/usr/bin/env bash
# The GEO-Bench table of the paper's layout for our checkpoint and the random-init / ImageNet baselines,
# under every protocol (mmearth FT/LP, frozen, knn), three seeds, bootstrap 95 % intervals.
#
#   scripts/geobench_table.sh CHECKPOINT [OUT]          (GEO_BENCH_DIR must point at the downloaded data)
#
# Data: GEO-Bench v1.0, about 65 GB, with GEO-Bench's own download tool, in a separate environment (the
# `geobench` package pins pandas < 2; never install it into this project's environment):
#   python -m venv /tmp/gb-venv && /tmp/gb-venv/bin/pip install geobench==1.0.0
#   GEO_BENCH_DIR=/data/geobench /tmp/gb-venv/bin/geobench-download
# ImageNet baseline (optional; needs network once): set IMAGENET_SRC to a local copy of
# facebook/convnextv2-atto-1k-224 (e.g. `hf download facebook/convnextv2-atto-1k-224 --local-dir DIR`);
# it is converted with `geomeld convert hf`. Without it the table has our checkpoint, random init and the
# majority class.
# Runs are resumable: rerun the same command after an interruption. Expected time of the full recipe: see
# benchmarks/results/geobench.json (`full_recipe_cost`) and the README's GEO-Bench section.
set -euo pipefail
CHECKPOINT=${1:?usage: scripts/geobench_table.sh CHECKPOINT [OUT]}
OUT=${2:-outputs/geobench}
: "${GEO_BENCH_DIR:?set GEO_BENCH_DIR to the GEO-Bench data root (classification_v1.0/, segmentation_v1.0/)}"
GEOMELD=${GEOMELD:-geomeld}
SEEDS=${SEEDS:-0 1 2}
PRESET=${PRESET:-full}

ROWS=(--checkpoint "GeoMeld-FM=$CHECKPOINT" --checkpoint random)
if [[ -n "${IMAGENET_SRC:-}" ]]; then
  if [[ ! -f "$OUT/imagenet-atto/config.json" ]]; then
    "$GEOMELD" convert hf "$IMAGENET_SRC" --out "$OUT/imagenet-atto"
  fi
  ROWS+=(--checkpoint "ImageNet=$OUT/imagenet-atto")
fi

# CONTROLS=1 adds a shuffled-train-label control row under every checkpoint (doubles the runs)
EXTRA=()
if [ "${CONTROLS:-0}" = "1" ]; then EXTRA+=(--controls); fi

for PROTOCOL in mmearth frozen knn; do
  # shellcheck disable=SC2086  # SEEDS is a list of numbers
  "$GEOMELD" benchmark geobench --protocol "$PROTOCOL" --tasks all "${ROWS[@]}" --seeds $SEEDS \
    --preset "$PRESET" --data-root "$GEO_BENCH_DIR" --out "$OUT/$PROTOCOL" "${EXTRA[@]}"
done
echo "tables: $OUT/{mmearth,frozen,knn}/table.md; plots: $OUT/*/plot.png; results: $OUT/*/results.json"
