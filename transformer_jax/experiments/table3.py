"""Table 3 of the paper as data: every row's overrides of the base model and its published numbers.

`configs/table3.py` turns a row into a config (`get_config`) and the table into a sweep
(`get_sweep`: a chain of named points with the paper's numbers as metadata); `compare` uses the
same table to order rows, show missing ones and put the paper's numbers beside ours.
Rows (Vaswani et al. 2017, Table 3):
base; A (h with d_k = d_v = d_model / h); B (d_k alone); C (N, d_model, d_ff); D (P_drop,
eps_ls); E (learned positions); big. Paper numbers: dev perplexity per wordpiece and dev BLEU on
newstest2013, parameters in millions (None where the paper gives none).

Scales: 'paper' (the paper's sizes) and 'mini' (every row shrunk by the same factors so the
whole table runs on a 2-core CPU on Multi30k; see `apply_mini`).
"""

from __future__ import annotations

import ml_collections

from transformer_jax.config import ConfigError, default_config
from transformer_jax.experiments import spec

# name -> (overrides of the paper's base, (paper dev PPL, dev BLEU, params in M or None)).
# Table 3 of Vaswani et al. (2017); also ../shared/paper/table3.csv (checked by a test).
ROWS: dict[str, tuple[dict, tuple[float, float, float | None]]] = {
    "base": ({}, (4.92, 25.8, 65)),
    "A-h1": ({"model.h": 1, "model.d_k": 512, "model.d_v": 512}, (5.29, 24.9, None)),
    "A-h4": ({"model.h": 4, "model.d_k": 128, "model.d_v": 128}, (5.00, 25.5, None)),
    "A-h16": ({"model.h": 16, "model.d_k": 32, "model.d_v": 32}, (4.91, 25.8, None)),
    "A-h32": ({"model.h": 32, "model.d_k": 16, "model.d_v": 16}, (5.01, 25.4, None)),
    "B-dk16": ({"model.d_k": 16}, (5.16, 25.1, 58)),
    "B-dk32": ({"model.d_k": 32}, (5.01, 25.4, 60)),
    "C-N2": ({"model.n_layers": 2}, (6.11, 23.7, 36)),
    "C-N4": ({"model.n_layers": 4}, (5.19, 25.3, 50)),
    "C-N8": ({"model.n_layers": 8}, (4.88, 25.5, 80)),
    "C-dmodel256": ({"model.d_model": 256, "model.d_k": 32, "model.d_v": 32}, (5.75, 24.5, 28)),
    "C-dmodel1024": ({"model.d_model": 1024, "model.d_k": 128, "model.d_v": 128},
                     (4.66, 26.0, 168)),
    "C-dff1024": ({"model.d_ff": 1024}, (5.12, 25.4, 53)),
    "C-dff4096": ({"model.d_ff": 4096}, (4.75, 26.2, 90)),
    "D-drop0.0": ({"model.p_drop": 0.0}, (5.77, 24.6, None)),
    "D-drop0.2": ({"model.p_drop": 0.2}, (4.95, 25.5, None)),
    "D-ls0.0": ({"train.eps_ls": 0.0}, (4.67, 25.3, None)),
    "D-ls0.2": ({"train.eps_ls": 0.2}, (5.47, 25.7, None)),
    "E-learned": ({"model.positions": "learned"}, (4.92, 25.7, None)),
    "big": ({"model.d_model": 1024, "model.d_ff": 4096, "model.h": 16, "model.p_drop": 0.3,
             "train.steps": 300000}, (4.33, 26.4, 213)),
}

# The CPU scale: factors applied to every row after its overrides.
MINI_WIDTH = 4  # d_model, d_ff, d_k, d_v are divided by this
MINI_DEPTH = 2  # N is divided by this (N=2 -> 1, 6 -> 3, 8 -> 4)
MINI_STEPS = 100  # train.steps is divided by this (base 100k -> 1000, big 300k -> 3000)
SCALES = ("paper", "mini")


def group(row: str) -> str:
  """Table 3's group letter of a row name ('B-dk16' -> 'B'; 'base' and 'big' are their own)."""
  return row.split("-")[0]


def _parse(arg: str) -> tuple[str, str, int]:
  parts = [p for p in (arg or "base").split(",") if p]
  row, options = parts[0], dict(p.split("=", 1) if "=" in p else (p, "") for p in parts[1:])
  if row not in ROWS:
    raise ConfigError(f"table3: unknown row {row!r}; rows are {', '.join(ROWS)}")
  unknown = set(options) - {"scale", "seed"}
  if unknown:
    raise ConfigError(f"table3 config argument {arg!r}: unknown option(s) {sorted(unknown)}; "
                      "expected ROW[,scale=paper|mini][,seed=K]")
  scale = options.get("scale", "paper")
  if scale not in SCALES:
    raise ConfigError(f"table3 config argument {arg!r}: scale must be one of {SCALES}, got {scale!r}")
  try:
    seed = int(options.get("seed", "0"))
  except ValueError:
    raise ConfigError(f"table3 config argument {arg!r}: seed must be an integer") from None
  return row, scale, seed


def apply_mini(c: ml_collections.ConfigDict) -> None:
  """Shrinks a resolved row in place to the CPU scale: widths (d_model, d_ff, d_k, d_v) / 4,
  N / 2, h unchanged, steps / 100 (big keeps its 3x), Multi30k with an 8000-piece vocabulary,
  batches of 2048 target tokens in 8 length buckets (few shapes, few compiles)."""
  for key in ("d_model", "d_ff", "d_k", "d_v"):
    c.model[key] = max(1, c.model[key] // MINI_WIDTH)
  c.model.n_layers = max(1, c.model.n_layers // MINI_DEPTH)
  c.model.max_len = 256
  c.train.steps = c.train.steps // MINI_STEPS
  c.data.corpus = "multi30k"
  c.data.vocab_size = 8000
  c.data.max_len = 128
  c.data.tokens_per_batch = 2048
  c.data.bucket_boundaries = (12, 16, 20, 24, 32, 48, 64, 128)
  # Eq. 3's warmup of 4000 steps is 4% of training; at 1000 steps that would be 40 steps and a
  # peak rate far too high for this data. One schedule for every row: warmup 200 steps.
  c.train.warmup_steps = 200
  c.train.lr_scale = 0.5
  c.train.log_every = 25
  c.train.eval_every = 100
  c.train.checkpoint_every = 100
  c.train.keep_checkpoints = 2
  c.decode.batch_size = 128


def get_config(arg: str = "base") -> ml_collections.ConfigDict:
  """The config of Table 3 row ROW at a scale: `arg` is 'ROW[,scale=paper|mini][,seed=K]'.

  Raises:
    ConfigError: unknown row, scale or option (the message lists the valid ones).
  """
  row, scale, seed = _parse(arg)
  overrides, (ppl, bleu, params_m) = ROWS[row]
  c = default_config()
  for key, value in overrides.items():
    section, name = key.split(".")
    c[section][name] = value
  c.train.average_last = 1  # Table 3: "no checkpoint averaging"
  c.train.final_eval = False  # rows are scored on the dev set by `transformer-jax run`
  c.train.seed = seed
  c.data.seed = seed
  if scale == "mini":
    apply_mini(c)
  else:  # the paper's data: WMT 2014 EN-DE through TFDS, dev = newstest2013 (configs/wmt14_base.py)
    c.data.source = "tfds"
    c.data.vocab_sample = 2_000_000
    c.train.paper_bleu = True  # Table 3's BLEU is tokenized with compound splitting
    c.train.eval_every = c.train.checkpoint_every = 1500  # ~10 minutes at 0.4 s/step
  c.table3 = ml_collections.ConfigDict({
      "row": row,  # Table 3 row name
      "group": group(row),  # A..E, or base / big
      "scale": scale,  # 'paper' | 'mini'
      "seed": c.train.get_ref("seed"),  # = train.seed (and data.seed unless overridden)
      "paper_ppl_dev": ppl,  # published dev perplexity (newstest2013, per wordpiece)
      "paper_bleu_dev": bleu,  # published dev BLEU (newstest2013)
      "paper_params_m": params_m if params_m is not None else -1.0,  # millions; -1 = not given
  })
  return c.lock()


def get_sweep(arg: str = "") -> list[spec.Point]:
  """Table 3 as a sweep: one named point per row, in the paper's order, at a scale.

  `arg` is '[scale=paper|mini]'. Each point is selected by the config argument 'ROW,scale=S'
  (the row's overrides are applied before the mini scale shrinks them) and carries the
  paper's numbers as metadata: paper_ppl_dev, paper_bleu_dev, paper_params_m (None where the
  paper gives none) and table3_group (A..E, base, big).

  Raises:
    ConfigError: an unknown option or scale.
  """
  options = dict(p.split("=", 1) if "=" in p else (p, "") for p in (arg or "").split(",") if p)
  if set(options) - {"scale"} or options.get("scale", "paper") not in SCALES:
    raise ConfigError(f"table3 sweep argument {arg!r}: expected [scale=paper|mini]")
  scale = options.get("scale", "paper")
  return spec.chain(*(
      spec.point(row, overrides, arg=f"{row},scale={scale}", metadata={
          "paper_ppl_dev": ppl, "paper_bleu_dev": bleu, "paper_params_m": params_m,
          "table3_group": group(row)})
      for row, (overrides, (ppl, bleu, params_m)) in ROWS.items()))
