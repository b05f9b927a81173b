r"""The paper's big model on WMT 2014 English-German through TensorFlow Datasets (Table 2).

Prepare `wmt14_translate/de-en` once in array_record format (README, "Reproduce Table 2 on
Cloud TPU"), then on the accelerator host:

  transformer-jax train --config=configs/wmt14_big.py --workdir=runs/wmt14_big \
      --config.data.tfds_data_dir=gs://YOUR_BUCKET/tensorflow_datasets

The big model of Table 3 (last row): N=6, d_model=1024, d_ff=4096, h=16, d_k=d_v=64,
P_drop=0.3 (EN-DE; the paper's EN-FR big model used 0.1), eps_ls=0.1, warmup 4000,
300k steps (Section 5.2), beam 4 with alpha 0.6, average of the last 20 checkpoints
(Section 6.1). Expected (the paper, not measured here): newstest2013 perplexity 4.33 and BLEU
26.4 (Table 3), newstest2014 BLEU 28.4 (Table 2), tokenized with compound splitting
(`bleu_tok_compound_split` in final.json; sacreBLEU is reported next to it and is lower).
About 213M parameters with the 37000-piece vocabulary (214.2M here: see tests/test_wmt14.py).

Data, vocabulary and the 25000-token global batch are those of configs/wmt14_base.py (read
its docstring; gradient accumulation: config.train.grad_accum_steps).

Checkpoints: one every 10 minutes in the paper, the last 20 averaged; at its 1.0 s per step
that is every 600 steps, so the average covers the last ~12000 steps. 20 kept checkpoints
of parameters and Adam moments take about 20 x 2.6 GB on disk.
"""

import pathlib

from transformer_jax import config as config_lib


def _base_config():
  return config_lib.load_file(pathlib.Path(__file__).with_name("wmt14_base.py"))


def get_config():
  c = _base_config().unlock()
  c.model.d_model = 1024
  c.model.d_ff = 4096
  c.model.h = 16
  c.model.d_k = 64
  c.model.d_v = 64
  c.model.p_drop = 0.3

  c.train.steps = 300_000
  c.train.eval_every = 3000
  c.train.checkpoint_every = 600  # ~10 minutes at the paper's 1.0 s/step
  c.train.keep_checkpoints = 20
  c.train.average_last = 20
  c.train.paper_model = "big"
  return c.lock()
