#!/usr/bin/env bash
# Recipe search for the main job (issue 16), on Multi30k val only; test2016 is never scored here.
#   bash experiments/multi30k_recipe/search.sh [ROOT] [NAME...]   (default ROOT runs/multi30k_recipe)
# Runs the candidates below one at a time (a shared 2-core machine: never two trainings at once)
# with the project's own runner, each a shortened proxy of the paper's recipe (post-LN, Eq. 3,
# eps_ls 0.1, checkpoint averaging, beam search) that ends by translating val only
# (final_eval_splits=('val',)). Rerunning skips finished runs and resumes an interrupted one
# (Eq. 3 does not depend on train.steps, so a run stopped early is the prefix of a longer one).
# Then collect.py writes ROOT/results.md (both val BLEUs recomputed from ROOT/NAME/val.hyp).
set -euo pipefail
root=${1:-runs/multi30k_recipe}
shift || true
declare -A CANDIDATES=(
  # Wu et al. 2021's Transformer-Tiny: 4+4 layers, d_model 128, d_ff 256, h 4, P_drop 0.3,
  # ~10k shared BPE; 4096-token batches, warmup 1000, peak lr 1.5 x 128^-0.5 x 1000^-0.5.
  [p1_tiny]="--config.model.d_model=128 --config.model.d_ff=256 --config.model.h=4
    --config.model.d_k=32 --config.model.d_v=32 --config.model.n_layers=4
    --config.model.p_drop=0.3 --config.data.vocab_size=10000 --config.data.tokens_per_batch=4096
    --config.train.steps=1500 --config.train.warmup_steps=1000 --config.train.lr_scale=1.5"
  # The same model on p1's lesson: 2048-token batches (about 236 updates an epoch, as the main
  # job), warmup 400 (1.7 epochs), 4000 steps (about 17 epochs), the last 10 checkpoints
  # averaged (every 200 steps) and beam 5, as Wu et al.
  [p2_tiny]="--config.model.d_model=128 --config.model.d_ff=256 --config.model.h=4
    --config.model.d_k=32 --config.model.d_v=32 --config.model.n_layers=4
    --config.model.p_drop=0.3 --config.data.vocab_size=10000 --config.data.tokens_per_batch=2048
    --config.train.steps=4000 --config.train.warmup_steps=400 --config.train.lr_scale=1.5
    --config.train.checkpoint_every=200 --config.train.keep_checkpoints=10
    --config.train.average_last=10 --config.train.eval_every=500 --config.decode.beam_size=5"
)
names=("$@")
[ ${#names[@]} -gt 0 ] || names=("${!CANDIDATES[@]}")
for name in "${names[@]}"; do
  dir="$root/$name"
  if [ -f "$dir/final.json" ]; then echo "$name: done"; continue; fi
  start=$(date +%s)
  # shellcheck disable=SC2086  # the overrides are words
  # Shared settings first; a candidate's own overrides come after them and win.
  transformer-jax train --config=configs/multi30k.py --workdir="$dir" \
    --config.train.checkpoint_every=100 --config.train.keep_checkpoints=5 \
    --config.train.average_last=5 --config.train.eval_every=250 \
    "--config.train.final_eval_splits=('val',)" ${CANDIDATES[$name]}
  echo "$name: wall_seconds=$(( $(date +%s) - start ))" | tee -a "$root/wall.log"
done
python "$(dirname "$0")/collect.py" "$root"
