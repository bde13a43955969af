#!/usr/bin/env bash
# Download into .whl/ (git-ignored) the wheels the GPU machine lacks for tuneprune's engine, training, packing
# and benchmarks: pydantic and what it needs, at the versions of requirements.lock, for CPython 3.12 on
# manylinux x86-64. scripts/gpu_check.sh installs them there; the device tool carries them (carry: [".whl"]).
#
#   bash scripts/gpu_wheels.sh
#
# Everything else those paths import at run time (torch, numpy, yaml, scipy, sklearn) is already there;
# ray, optuna, mlflow, pymoo and zennit are not, and none of those paths imports them.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python3)}
PACKAGES=(pydantic pydantic-core annotated-types typing-inspection typing-extensions)

pins=()
for name in "${PACKAGES[@]}"; do
    version=$(sed -n "s/^${name}==\([^ ]*\)$/\1/p" requirements.lock)
    if [ -z "$version" ]; then
        echo "gpu_wheels.sh: $name has no pinned version in requirements.lock" >&2
        exit 2
    fi
    pins+=("$name==$version")
done
rm -rf .whl
"$PYTHON" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl "${pins[@]}"
ls .whl
