#!/usr/bin/env bash
# The README's main job, timed, from a fresh clone in a fresh virtualenv:
#   bash benchmarks/multi30k_main.sh [OUTDIR]
# Clones HEAD of this repository into OUTDIR (default: a temp dir), installs it, runs
#   transformer-jax train --config=configs/multi30k.py --workdir=runs/multi30k
# and prints the wall time of the whole command together with runs/multi30k/final.json
# (test2016 sacreBLEU and its signature, dev perplexity, mean training tokens/s).
# Run it on an otherwise idle machine: the training uses every core.
set -euo pipefail
repo=$(git -C "$(dirname "$0")/.." rev-parse --show-toplevel)
out=${1:-$(mktemp -d)}
git clone -q "$repo" "$out/transformer_jax"
cd "$out/transformer_jax"
python3 -m venv .venv && . .venv/bin/activate
pip install -q -e .
echo "commit $(git rev-parse --short HEAD); $(nproc) cores; $(python -c 'import jax; print("jax", jax.__version__)')"
start=$(date +%s)
transformer-jax train --config=configs/multi30k.py --workdir=runs/multi30k 2>&1 | tee train.log | grep -v "step/s"
echo "wall_seconds=$(( $(date +%s) - start ))"
cat runs/multi30k/final.json
