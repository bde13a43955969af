#!/usr/bin/env bash
# The GPU figures in one command: the CUDA tests, then scripts/bench_sparse.py, bench_train.py and bench_pack.py
# on resnet20x2, mobilenet_v1, densenet40_24 and resnet18, each part under its own time limit inside a total of
# 430 s (so the whole stays under 8 minutes even if a part hangs), and one Markdown table of ratios with the
# device's name (scripts/gpu_table.py). A part that fails or runs out of time is reported, not fatal.
#
#   bash scripts/gpu_check.sh               # on a CUDA machine
#   bash scripts/gpu_check.sh --cpu-smoke   # the same pipeline on the CPU: small_cnn, tiny sizes, no GPU needed
#
# It writes table.md, parts.tsv, gpu_check.log, tests.xml and the benchmarks' JSON under --out DIR, else $OUT
# (the folder the device tool brings back), else runs/gpu-check. When pydantic is missing (the GPU machine),
# it first installs the wheels of .whl/ (scripts/gpu_wheels.sh) to /tmp/site. PYTHON picks the interpreter
# (default: .venv/bin/python when present, else python3).
set -uo pipefail
cd "$(dirname "$0")/.."

MODE=cuda
DIR=${OUT:-runs/gpu-check}
while [ $# -gt 0 ]; do
    case $1 in
        --cpu-smoke) MODE=cpu ;;
        --out)
            [ -n "${2:-}" ] || { echo "gpu_check.sh: --out needs a folder (--out DIR)" >&2; exit 2; }
            DIR=$2
            shift
            ;;
        *) echo "gpu_check.sh: unknown argument '$1' (allowed: --cpu-smoke, --out DIR)" >&2; exit 2 ;;
    esac
    shift
done
PYTHON=${PYTHON:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python3)}
# a folder that cannot be made or written stops here (DIR was left empty, and the rm below emptied / of *.json)
if ! { mkdir -p "$DIR" && DIR=$(cd "$DIR" && pwd) && : >"$DIR/gpu_check.log"; } 2>/dev/null; then
    echo "gpu_check.sh: --out $DIR: cannot make or write that folder (allowed: a writable folder)" >&2
    exit 2
fi
LOG=$DIR/gpu_check.log
rm -f "$DIR"/parts.tsv "$DIR"/tests.xml "$DIR"/*.json "$DIR"/table.md
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
export RAY_USAGE_STATS_ENABLED=0 MLFLOW_DISABLE_TELEMETRY=true DO_NOT_TRACK=1

if ! "$PYTHON" -c "import pydantic" 2>/dev/null; then
    if ! compgen -G ".whl/*.whl" >/dev/null; then
        echo "gpu_check.sh: pydantic is missing and .whl/ holds no wheels: run scripts/gpu_wheels.sh and carry .whl" >&2
        exit 2
    fi
    "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
    export PYTHONPATH=$PYTHONPATH:/tmp/site
fi
if [ "$MODE" = cuda ] && ! timeout 120 "$PYTHON" -c "import sys, torch; sys.exit(not torch.cuda.is_available())"; then
    echo "gpu_check.sh: torch sees no CUDA device here; on a machine without one, run it with --cpu-smoke" >&2
    exit 2
fi

if [ "$MODE" = cuda ]; then
    TOTAL=430
    MODELS=resnet20x2,mobilenet_v1,densenet40_24,resnet18
    PACKS=(8 16)
    TESTS=(-k cuda)
    SPARSE=(--devices cuda --steps 20 --warmup 3 --batch-size 128 --threshold-repeats 5)
    TRAIN=(--devices cuda --images 2560 --epochs 2 --batch-size 128 --repeats 2)
    PACK=(--device cuda --steps 10 --batch-size 128 --repeats 2)
    BUDGET=(tests 75 sparse 60 train 75 pack-8 130 pack-16 430)
else
    TOTAL=1200
    MODELS=small_cnn
    PACKS=(2)
    TESTS=(-k "cuda or adaptive_update_on_tensors")
    SPARSE=(--devices cpu --steps 1 --warmup 0 --batch-size 8 --threshold-repeats 1)
    TRAIN=(--devices cpu --images 16 --epochs 1 --batch-size 8 --repeats 1)
    PACK=(--device cpu --steps 2 --batch-size 8 --repeats 1)
    BUDGET=(tests 300 sparse 300 train 300 pack-2 300)
fi

# part NAME COMMAND...: run COMMAND under the smaller of NAME's budget and the time left of TOTAL; note
# NAME, exit status, seconds taken and limit in parts.tsv (status "skipped" when under 5 s are left)
part() {
    local name=$1 limit=0 i
    shift
    for ((i = 0; i < ${#BUDGET[@]}; i += 2)); do
        [ "${BUDGET[i]}" = "$name" ] && limit=${BUDGET[i + 1]}
    done
    local left=$((TOTAL - SECONDS))
    ((limit > left)) && limit=$left
    if ((limit < 5)); then
        printf '%s\tskipped\t0\t0\n' "$name" >>"$DIR/parts.tsv"
        echo "== $name: skipped, no time left"
        return
    fi
    echo "== $name (at most ${limit} s): $*" | tee -a "$LOG"
    local start=$SECONDS part_log
    part_log=$(mktemp)
    timeout -k 10 "$limit" "$@" >"$part_log" 2>&1
    local rc=$?
    cat "$part_log" >>"$LOG"
    printf '%s\t%s\t%s\t%s\n' "$name" "$rc" "$((SECONDS - start))" "$limit" >>"$DIR/parts.tsv"
    echo "   exit $rc after $((SECONDS - start)) s"
    ((rc == 0)) || tail -n 15 "$part_log"
    rm -f "$part_log"
}

part tests "$PYTHON" -m pytest -q -p no:cacheprovider --timeout 120 tests/sparsity/test_no_host_sync.py "${TESTS[@]}" \
    --junitxml "$DIR/tests.xml"
part sparse "$PYTHON" scripts/bench_sparse.py --models "$MODELS" "${SPARSE[@]}" --json "$DIR/sparse.json"
part train "$PYTHON" scripts/bench_train.py --models "$MODELS" "${TRAIN[@]}" --json "$DIR/train.json"
for k in "${PACKS[@]}"; do
    part "pack-$k" "$PYTHON" scripts/bench_pack.py --models "$MODELS" --packs "$k" "${PACK[@]}" --no-processes \
        --json "$DIR/pack-$k.json"
done
rm -f "$DIR"/*.partial

packs=${PACKS[*]}
timeout 60 "$PYTHON" scripts/gpu_table.py "$DIR" --device "$MODE" --models "$MODELS" --packs "${packs// /,}" --seconds "$SECONDS"
