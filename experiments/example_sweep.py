r"""An example sweep of our own: 2 heads x 2 dropout rates x 2 seeds of a tiny Transformer on the
embedded Multi30k, about a minute per run on an idle 2-core CPU.

Print the 8 runs' commands, run them here one at a time, or as Ray tasks on a local Ray
instance (or on a cluster with --ray_address=auto), then compare:
  transformer-jax sweep --config=experiments/example_sweep.py --root=runs/example --seeds=2 \
      --dry-run
  transformer-jax sweep --config=experiments/example_sweep.py --root=runs/example --seeds=2
  transformer-jax sweep --config=experiments/example_sweep.py --root=runs/example --seeds=2 \
      --launcher=ray --parallel=2
  transformer-jax compare runs/example --output=runs/example/report
One run alone (what the sweep starts for h=4,p_drop=0.3 seed 1):
  transformer-jax run --config=experiments/example_sweep.py \
      --workdir=runs/example/h=4,p_drop=0.3/seed1 --config.model.h=4 \
      --config.model.p_drop=0.3 --config.train.seed=1 --config.data.seed=1

The model is configs/multi30k.py cut to d_model 64, d_ff 256, N 2 (d_k = d_v = 16 whatever h),
a 2000-piece vocabulary, 400 steps of 2048 target tokens in two batch shapes; dev = Multi30k
val (1014 pairs), beam 2. Far from converged: the point is the machinery, not the numbers.
"""

import pathlib

from transformer_jax import config as config_lib
from transformer_jax.experiments.spec import product, sweep

_MULTI30K = pathlib.Path(__file__).resolve().parents[1] / "configs" / "multi30k.py"


def get_config(arg=None):
  del arg  # no variants
  c = config_lib.load_file(_MULTI30K)
  c.model.d_model = 64  # D
  c.model.d_ff = 256  # F
  c.model.h = 4  # heads (swept)
  c.model.d_k = 16  # per-head query/key width
  c.model.d_v = 16  # per-head value width
  c.model.n_layers = 2  # N
  c.model.p_drop = 0.1  # P_drop (swept)
  c.data.vocab_size = 2000  # shared BPE pieces
  c.data.vocab_sample = 10000  # sentences sampled to train the vocabulary
  c.data.tokens_per_batch = 2048  # target tokens per batch
  c.data.bucket_boundaries = (32, 64)  # two batch shapes, two compiles
  c.data.max_len = 64  # longer pairs (0.1% of Multi30k) are dropped
  c.train.steps = 400
  c.train.warmup_steps = 100
  c.train.lr_scale = 0.7  # what its committed records ran with
  c.train.log_every = 50
  c.train.eval_every = 200
  c.train.checkpoint_every = 100
  c.train.keep_checkpoints = 2
  c.train.average_last = 1  # scored with the last checkpoint, like Table 3
  c.train.final_eval = False  # `run` scores the dev set itself
  c.decode.beam_size = 2
  c.decode.batch_size = 128
  return c


def get_sweep(arg=None):
  del arg
  return product(sweep("model.h", [2, 4]), sweep("model.p_drop", [0.1, 0.3]))
