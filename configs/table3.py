r"""Every row of Table 3 (variations on the base model), at the paper's scale or a CPU scale.

List the rows, with the paper's numbers:
  transformer-jax rows
Train one row and score it on the dev set (the argument after ':' is
ROW[,scale=paper|mini][,seed=K]):
  transformer-jax run --config=configs/table3.py:B-dk16,scale=mini --workdir=runs/t3/B-dk16
Run the whole table at the CPU scale on Multi30k (get_sweep: the argument after ':' is
[scale=paper|mini]), or some rows of it (--only takes names and globs), then compare:
  transformer-jax sweep --config=configs/table3.py:scale=mini --root=runs/table3_mini
  transformer-jax sweep --config=configs/table3.py:scale=mini --only=A,C-N8 --seeds=3 \
      --root=runs/t3
  transformer-jax compare runs/table3_mini --output=runs/table3_mini/report

The rows, their overrides of the paper's base and the paper's numbers live in
transformer_jax/experiments/table3.py. As in Table 3, rows use no checkpoint averaging and are
scored on the dev set (newstest2013 at the paper's scale; Multi30k val at the mini scale).

Scales:
  paper  the paper's sizes: 100k steps (300k for big), 37000-piece shared vocabulary, batches of
         25000 target tokens. Needs WMT 2014 (set config.data.*) and an accelerator.
  mini   every row shrunk by the same factors so the whole table runs on a 2-core CPU on the
         embedded Multi30k: widths (d_model, d_ff, d_k, d_v) / 4, N / 2, h unchanged,
         steps / 100 (big keeps its 3x). The relations that define each row survive:
         h * d_k = d_model in A, only d_k changes in B, d_k = d_model / h in C's d_model rows.
"""

from transformer_jax.experiments import table3


def get_config(arg: str = "base"):
  return table3.get_config(arg)


def get_sweep(arg: str = ""):
  return table3.get_sweep(arg)
