#!/bin/bash
# Two versions of the code evaluate the same finished runs, one thread each, model by model, the
# order alternating per model, so that a loaded machine slows both alike (docs/performance.md,
# "Old and new code on the same checkpoints, side by side").
#   tests/benchmarks/ab_evaluate.sh OLD_TREE NEW_TREE RUNS_DIR OUT_DIR [PRESET]
# OLD_TREE/NEW_TREE: checkouts (e.g. `git worktree add --detach /tmp/old f9fc14c`); RUNS_DIR:
# runs/<preset>/<dataset>; OUT_DIR gets old/ and new/ results folders and times.txt.
set -euo pipefail
old=$1 new=$2 runs=$3 out=$4 preset=${5:-quick}
py=${PYTHON:-$(pwd)/.venv/bin/python}
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
mkdir -p "$out/old" "$out/new"
i=0
for run in "$runs"/*/seed*; do
  order="old new"; [ $((i % 2)) = 1 ] && order="new old"
  for v in $order; do
    tree=$old; [ $v = new ] && tree=$new
    s=$(date +%s.%N)
    (cd "$tree" && PYTHONPATH=$tree "$py" -m bench evaluate --preset "$preset" --quiet --results "$out/$v" "$run" \
      > "$out/$v.$(basename "$(dirname "$run")").log" 2>&1)
    echo "$(basename "$(dirname "$run")") $v $(echo "$(date +%s.%N) - $s" | bc)" >> "$out/times.txt"
  done
  i=$((i + 1))
done
