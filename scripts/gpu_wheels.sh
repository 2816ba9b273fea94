#!/usr/bin/env bash
# The carry for `benchmarks/gpu_check.py` on a lent GPU machine (docs/past-one-machine.md).
#
# That machine reaches no package registry. Its own python3 (3.12, torch 2.11+cu130,
# transformers, sentence-transformers, lightning, pyarrow, scipy, scikit-learn...) runs the check
# with no setup step; what the checks import and it lacks travels as py3.12 manylinux wheels
# in the git-ignored .whl/. MiniLM's package (a 91 MB safetensors) cannot travel: the describe
# check uses a small random text encoder there and says so. The working tree plus .whl/ must
# stay under the 64 MiB a call may carry; this script checks that and prints the command.
#
#     scripts/gpu_wheels.sh            # downloads from PyPI (pip download), a few seconds
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-.venv/bin/python}
LIMIT_MIB=64
# Pinned to the versions this repository's own tests run with. diffusers: generate and the UNet
# timing; faiss-cpu: index, bank and describe; better-profanity: decoding's word list;
# sd-parsers: describe's metadata reader; importlib-metadata: diffusers needs it. The rest of
# their needs (huggingface-hub, safetensors, regex, Pillow, zipp...) is on that machine already.
WHEELS=(
    diffusers==0.42.1
    faiss-cpu==1.15.1
    better-profanity==0.7.0
    sd-parsers==0.6
    importlib-metadata==10.2.0
)
PLATFORMS=(manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64
           manylinux2014_x86_64 manylinux1_x86_64)

rm -rf .whl
mkdir -p .whl
"$PYTHON" -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp "${PLATFORMS[@]/#/--platform=}" -d .whl "${WHEELS[@]}"

# What a call carries: tracked and untracked-but-not-ignored files, plus .whl/.
tree_bytes=$(git ls-files -z --cached --others --exclude-standard \
    | xargs -0 stat -c %s 2>/dev/null | awk '{s += $1} END {print s + 0}')
wheel_bytes=$(du -cb .whl/*.whl | tail -n 1 | cut -f1)
total=$((tree_bytes + wheel_bytes))
mib() { awk -v b="$1" 'BEGIN {printf "%.1f", b / 1048576}'; }
echo "working tree $(mib "$tree_bytes") MiB + wheels $(mib "$wheel_bytes") MiB" \
    "= $(mib "$total") MiB of ${LIMIT_MIB} MiB"
ls -1 .whl
if ((total >= LIMIT_MIB * 1048576)); then
    echo "too large to carry: over ${LIMIT_MIB} MiB" >&2
    exit 1
fi
# The one command (carry: .whl). A 330 s limit leaves a machine start and a rerun in 15 minutes.
cat <<'CMD'
run there (carry [".whl"], timeout_s 330):
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && PYTHONPATH=src:/tmp/site PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 timeout 300 python3 benchmarks/gpu_check.py --json $OUT/g.json
CMD
