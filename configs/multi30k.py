r"""The main job: a Transformer sized to train well on Multi30k EN->DE on a 2-core CPU in < 1 h.

Run:
  transformer-jax train --config=configs/multi30k.py --workdir=runs/multi30k

The architecture is the paper's (post-LN, sinusoidal positions, shared embeddings, Adam with
Eq. 3, label smoothing, beam 4, checkpoint averaging); only sizes change: Multi30k has
29k sentence pairs, not 4.5M, so the model is smaller (d_model 256, N 3, as in flax's
examples/wmt small setting), with a 6000-piece shared BPE vocabulary and batches of about 2048
target tokens. P_drop 0.1 (the paper's base), eps_ls 0.2 (the paper's is 0.1) and length
penalty alpha 1.0 were chosen on Multi30k val only (experiments/multi30k_recipe/: val
sacreBLEU at alpha 1.0, two seeds each: P_drop 0.1 with eps_ls 0.1 39.58 / 40.10, with
eps_ls 0.2 40.01 / 39.87, a mean gain of 0.10 that is inside the seed spread but passed the rule
fixed before the runs; P_drop 0.2 39.22 / 39.25; the previous P_drop 0.3 with alpha 0.6 36.22).
Alpha 1.4 scored 0.30 higher on val with eps_ls 0.2, not more than the 0.3 the rule required,
so alpha stays 1.0 (the paper's base model uses 0.6). The vocabulary went from 8000 to 6000
pieces on the same rule (val sacreBLEU, two seeds: 40.43 / 39.96, mean 40.20 against 39.94); its
step is also 0.866x as long (benchmarks/train_step.py, sizes small vs small6k alternated), which
keeps the whole command under the hour at the slowest speed seen.
"""

from transformer_jax.config import default_config


def get_config():
  c = default_config()
  c.model.d_model = 256
  c.model.d_ff = 1024
  c.model.h = 4
  c.model.d_k = 64
  c.model.d_v = 64
  c.model.n_layers = 3
  c.model.p_drop = 0.1
  c.model.max_len = 256

  c.data.corpus = "multi30k"
  c.data.vocab_size = 6000
  c.data.max_len = 128
  c.data.tokens_per_batch = 2048

  c.decode.alpha = 1.0
  c.train.eps_ls = 0.2

  c.train.steps = 3400
  c.train.warmup_steps = 800
  c.train.lr_scale = 0.7
  c.train.log_every = 50
  c.train.eval_every = 500
  c.train.checkpoint_every = 100
  c.train.keep_checkpoints = 5
  c.train.average_last = 5
  return c.lock()
