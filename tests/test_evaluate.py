"""Tests for transformer_jax.evaluate: BLEU against sacrebleu's own corpus_bleu, and perplexity
against exp(total NLL / tokens) computed in numpy from the model's logits."""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import numpy as np
import pytest
import sacrebleu

from transformer_jax import evaluate
from transformer_jax.config import TransformerConfig
from transformer_jax.model import PAD_ID, Transformer

HYPS = ["The cat sat on the mat.", "A man is riding a bike down the road", "Two dogs play."]
REFS = ["The cat sat on the mat.", "A man rides a bicycle down the street.",
        "Two dogs are playing."]


@pytest.mark.parametrize("hyps,refs", [
    (HYPS, REFS),
    (HYPS[:1], REFS[:1]),  # a perfect hypothesis: 100
    (["completely different words here"], ["The cat sat on the mat."]),
])
def test_bleu_equals_sacrebleu(hyps, refs):
  score, signature = evaluate.bleu(hyps, refs)
  assert score == pytest.approx(sacrebleu.corpus_bleu(hyps, [refs]).score, abs=1e-9)
  assert {"nrefs:1", "tok:13a", "case:mixed", "smooth:exp"} <= set(signature.split("|"))
  assert signature.startswith("nrefs:1|") and f"version:{sacrebleu.__version__}" in signature


def test_bleu_of_imperfect_corpus_is_between_0_and_100():
  score, _ = evaluate.bleu(HYPS, REFS)
  assert 0.0 < score < 100.0
  assert evaluate.bleu(HYPS[:1], REFS[:1])[0] == pytest.approx(100.0)


def test_bleu_rejects_mismatched_lengths():
  with pytest.raises(ValueError, match="3 hypotheses but 2 references"):
    evaluate.bleu(HYPS, REFS[:2])


def _batch(seed):
  """A hand-made batch: src [2, 6], tgt_in / tgt_out [2, 5] with PAD tails, ending in EOS (3)."""
  rng = np.random.default_rng(seed)
  src = rng.integers(4, 40, size=(2, 6)).astype(np.int32)
  src[0, 4:] = [3, PAD_ID]
  src[1, 5] = 3
  tgt_out = rng.integers(4, 40, size=(2, 5)).astype(np.int32)
  tgt_out[0, 2:] = [3, PAD_ID, PAD_ID]
  tgt_out[1, 4] = 3
  tgt_in = np.concatenate([np.full((2, 1), 2, np.int32), tgt_out[:, :-1]], axis=1)  # BOS + shift
  tgt_in[tgt_out == PAD_ID] = PAD_ID
  return {"src": src, "tgt_in": tgt_in, "tgt_out": tgt_out}


def test_perplexity_equals_numpy():
  cfg = TransformerConfig(vocab_size=40, d_model=32, d_ff=64, h=4, d_k=8, d_v=12, n_layers=2)
  model = Transformer(cfg)
  batches = [_batch(0), _batch(1)]
  params = nn.meta.unbox(model.init(jax.random.PRNGKey(5), batches[0]["src"],
                                    batches[0]["tgt_in"])["params"])
  total, count = 0.0, 0
  for batch in batches:
    logits = np.asarray(model.apply({"params": params}, batch["src"], batch["tgt_in"]), np.float64)
    m = logits.max(-1, keepdims=True)
    log_p = logits - m - np.log(np.exp(logits - m).sum(-1, keepdims=True))
    for b, t in zip(*np.nonzero(batch["tgt_out"] != PAD_ID)):
      total -= log_p[b, t, batch["tgt_out"][b, t]]
      count += 1
  assert count == 3 + 5 + 3 + 5
  got = evaluate.perplexity(model, params, batches)
  assert got["tokens"] == count
  assert got["nll"] == pytest.approx(total / count, rel=1e-5)
  assert got["ppl"] == pytest.approx(math.exp(total / count), rel=1e-5)
  # A random model is near uniform over the 40 classes.
  assert 20 < got["ppl"] < 80


def test_lowercase_translates_the_lowercased_source(trained_run):
  from transformer_jax import checkpoint as ckpt_lib
  from transformer_jax import main as main_lib
  workdir, _, _ = trained_run
  config, model, tokenizer = main_lib._load_workdir(workdir)
  params = ckpt_lib.load_params(workdir / "final_params",
                                main_lib._abstract_state(config, model).params)
  line = "A Man In A Blue Shirt Is Standing On A Ladder ."
  lowered = evaluate.translate_lines(model, params, tokenizer, [line], lowercase=True)
  assert lowered == evaluate.translate_lines(model, params, tokenizer, [line.lower()])
  assert tokenizer.encode(line) != tokenizer.encode(line.lower())  # so the flag did something
