#!/usr/bin/env bash
# The main job end to end on the embedded default (offline digits data, local Ray,
# MLflow and Optuna on local SQLite files): dense vs sparse training, a search, and
# where to look at the results. Everything is written under ./demo_output.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/setup_venv.sh"
OUT="${DEMO_OUTPUT:-$ROOT/demo_output}"
rm -rf "$OUT"
mkdir -p "$OUT"
cd "$OUT"
TP="$VENV/bin/tuneprune"
json_field() { "$VENV/bin/python" -c "import json,sys; print(f\"{json.load(sys.stdin)['$1']:.4f}\")"; }
start=$(date +%s)

echo "== 1. dense vs sparse training on digits (formulas §1, §2): three runs, progress below"
dense=$("$TP" train "$ROOT/configs/digits_dense.yaml" --json --out dense | json_field test_acc)
s95=$("$TP" train "$ROOT/configs/digits_sparse.yaml" --set sparsity.target=0.95 --json --out sparse95 | json_field test_acc)
s99=$("$TP" train "$ROOT/configs/digits_sparse.yaml" --set sparsity.target=0.99 --json --out sparse99 | json_field test_acc)
printf '   %-22s %s\n' "dense test accuracy" "$dense" "95% sparse accuracy" "$s95" "99% sparse accuracy" "$s99"

echo "== 2. search: alpha and theta mode at 95% and 99% (search_spaces/digits_demo.yaml)"
"$TP" search "$ROOT/search_spaces/digits_demo.yaml"

echo "== 3. packed trials: the same search, 10 epochs, 4 trials trained together per Ray actor (resources.pack)"
"$TP" search "$ROOT/search_spaces/digits_demo.yaml" --set resources.pack=4 --set base.epochs=10 --name digits_demo_packed

echo "== 4. stochastic pruning of the dense model, one (sigma, r, n) point (formulas §5)"
"$TP" prune-stochastic "$ROOT/configs/stochastic_digits.yaml" --checkpoint dense/model.pt \
    --set rate=0.8 --set sigma=0.003 --set finetune.epochs=1

echo "== 5. evolution of sigma and rate: accuracy vs sparsity front (pymoo NSGA-II on Ray)"
"$TP" evolve "$ROOT/search_spaces/evolve_digits.yaml" --checkpoint dense/model.pt --set algorithm.generations=4

echo "== 6. reports: Pareto fronts, hypervolumes, importances, learning curves (about 20 s)"
search_html=$("$TP" report digits_demo)
evolve_html=$("$TP" report evolve-digits)
echo "   search report:    $search_html"
echo "   evolution report: $evolve_html"

echo
echo "demo finished in $(( $(date +%s) - start )) s; outputs in $OUT"
echo "open the results:"
echo "   $VENV/bin/mlflow ui --backend-store-uri sqlite:///$OUT/mlruns.db --host 127.0.0.1 --port 5000"
echo "   then the search's runs page printed by step 2 (runs: http://127.0.0.1:5000/#/experiments/...)"
echo "   $VENV/bin/optuna-dashboard sqlite:///$OUT/optuna.db --host 127.0.0.1"
