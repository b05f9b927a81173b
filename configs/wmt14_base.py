r"""The paper's base model on WMT 2014 English-German through TensorFlow Datasets (Table 2).

Prepare `wmt14_translate/de-en` once in array_record format (README, "Reproduce Table 2 on
Cloud TPU"), then on the accelerator host:

  transformer-jax train --config=configs/wmt14_base.py --workdir=runs/wmt14_base \
      --config.data.tfds_data_dir=gs://YOUR_BUCKET/tensorflow_datasets

Everything is the paper's base model (Section 5, Table 3 first row): N=6, d_model=512,
d_ff=2048, h=8, d_k=d_v=64, P_drop=0.1, eps_ls=0.1, Adam(0.9, 0.98, 1e-9) with Eq. 3 and
4000 warmup steps, 100k steps, beam 4 with alpha 0.6, average of the last 5 checkpoints.
Expected (the paper, not measured here): newstest2013 perplexity 4.92 and BLEU 25.8 without
averaging (Table 3), newstest2014 BLEU 27.3 (Table 2), both tokenized with compound splitting
(`bleu_tok_compound_split` in final.json; sacreBLEU is reported next to it and is lower).
About 65M parameters with the 37000-piece vocabulary (`transformer-jax params --config=...`).

Data (Section 5.1): about 4.5M sentence pairs, one shared BPE vocabulary of 37000 pieces
trained on a 2,000,000-sentence sample of both sides (`data.vocab_sample`): over a fifth of
the 9M training sentences, enough for the frequencies behind 37000 merges, while
SentencePiece's memory and time grow with the sample (not measured here on WMT). The sample
is fixed by `data.seed`.

Batches: about 25000 target tokens per step (padded positions, B * T <= 25000), which on
EN-DE is also about 25000 source tokens: the paper's "approximately 25000 source tokens and
25000 target tokens". This is the GLOBAL batch of one optimizer step, whatever the number of
devices, so Eq. 3's warmup and the 100k steps stay the paper's. If one device cannot hold its
share, split the step into micro-batches with gradient accumulation,
`--config.train.grad_accum_steps=K`: each step's rows are split into K micro-batches whose
gradients are summed before one division by the step's target tokens, so the update is the
one of the whole 25000-token batch (tests/test_step_numerics.py).

Checkpoints: the paper wrote one every 10 minutes and averaged the last 5 (Section 6.1); at
its 0.4 s per step that is every 1500 steps, so the average covers the last ~7500 steps.
"""

from transformer_jax.config import default_config


def get_config():
  c = default_config()  # the paper's base model
  c.data.source = "tfds"
  c.data.tfds_name = "wmt14_translate/de-en"
  c.data.tfds_data_dir = ""  # set on the command line, e.g. gs://BUCKET/tensorflow_datasets
  c.data.src_lang = "en"
  c.data.tgt_lang = "de"
  c.data.vocab_size = 37000
  c.data.vocab_sample = 2_000_000
  c.data.max_len = 256
  c.data.tokens_per_batch = 25000  # global, per optimizer step
  c.train.grad_accum_steps = 1  # raise to K if a device cannot hold its share of the batch

  c.train.steps = 100_000
  c.train.warmup_steps = 4000
  c.train.eps_ls = 0.1
  c.train.log_every = 100
  c.train.eval_every = 1500
  c.train.checkpoint_every = 1500  # ~10 minutes at the paper's 0.4 s/step
  c.train.keep_checkpoints = 5
  c.train.average_last = 5
  c.train.final_eval_splits = ("val", "test")  # newstest2013 (Table 3), newstest2014 (Table 2)
  c.train.paper_bleu = True
  c.train.paper_model = "base"
  return c.lock()
