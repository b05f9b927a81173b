r"""The paper's base model (Table 3, first row; Section 5): 65M parameters with a 37000 vocabulary.

Print its size:
  transformer-jax params --config=configs/base.py
Train it (needs an accelerator and WMT data for the paper's numbers; runs on Multi30k as is):
  transformer-jax train --config=configs/base.py --workdir=runs/base

Every value is `transformer_jax.config.default_config()`, i.e. the paper's: N=6, d_model=512,
d_ff=2048, h=8, d_k=d_v=64, P_drop=0.1, eps_ls=0.1, Adam(0.9, 0.98, 1e-9), warmup 4000,
100k steps of about 25000 target tokens, beam 4, alpha 0.6, average of the last 5 checkpoints.
"""

from transformer_jax.config import default_config


def get_config():
  return default_config().lock()
