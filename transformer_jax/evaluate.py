"""Translation of whole files, BLEU (sacrebleu) and per-wordpiece perplexity.

BLEU is sacrebleu's corpus BLEU on detokenized output with its default signature (13a
tokenization, cased); the signature is always reported next to the score. Beside it, always,
the Multi30k literature's lowercased Moses-tokenized BLEU (`bleu_lc_moses`), and on request the
paper's tokenized, compound-split BLEU (`bleu_tok_compound_split`); see `transformer_jax.bleu`.
Each keeps its own key and signature.
"""

from __future__ import annotations

import functools
import math
import pathlib
import time
from typing import Any, Iterable, Sequence

import jax
import numpy as np
import sacrebleu

from transformer_jax import config as config_lib
from transformer_jax import data as data_lib
from transformer_jax import decode
from transformer_jax.losses import label_smoothed_cross_entropy
from transformer_jax.model import Transformer
from transformer_jax.tokenizer import EOS_ID, Tokenizer


SCORE_LABELS = {  # key in score_translations' result -> how outputs name it
    "sacrebleu": "cased detokenized sacreBLEU",
    "bleu_lc_moses": "lowercased Moses-tokenized BLEU (Multi30k literature)",
    "bleu_tok_compound_split": "tokenized BLEU, compound-split (the paper's Table 2)",
}


def translate_lines(model: Transformer, params: Any, tokenizer: Tokenizer, lines: Sequence[str], *,
                    beam_size: int = 4, alpha: float = 0.6, max_extra_len: int = 50,
                    word_reward: float = 0.0, batch_size: int = 64,
                    boundaries: Sequence[int] = (16, 32, 64, 128, 256, 512),
                    max_src_len: int = 0, use_cache: bool = True,
                    lowercase: bool = False) -> list[str]:
  """Translates `lines` (one sentence each) by beam search; returns detokenized lines in order.

  With `lowercase` (a model trained with config.data.lowercase) each line is lowercased first.

  Sentences are sorted by length and decoded in batches of `batch_size` padded to the smallest
  boundary that fits, so only a few shapes are compiled. An empty line gives an empty line.
  A line longer than `max_src_len` tokens, EOS included (if > 0; the CLI passes
  config.source_limit, the longest source the model was trained on), is cut to that length,
  and the cut is counted in the returned list's `truncated` attribute.
  """
  ids = tokenizer.encode_batch([x.lower() for x in lines] if lowercase else list(lines))
  cut = 0
  src = []
  for seq in ids:
    if max_src_len and len(seq) + 1 > max_src_len:
      seq, cut = seq[:max_src_len - 1], cut + 1
    src.append(np.asarray(seq + [EOS_ID], np.int32))
  todo = [i for i, seq in enumerate(ids) if seq]  # an empty line is not decoded: it gives ""
  longest = max((len(src[i]) for i in todo), default=1)
  fits = [b for b in boundaries if b >= longest]
  bounds = [b for b in boundaries if b < longest] + [min(fits) if fits else longest]
  out = [""] * len(src)
  for batch, index in data_lib.batch_sentences([src[i] for i in todo], batch_size, bounds):
    tokens, _ = decode.generate(params, batch, model=model, beam_size=beam_size, alpha=alpha,
                                max_extra_len=max_extra_len, use_cache=use_cache,
                                word_reward=word_reward)
    for row, text in zip(index, tokenizer.decode_batch(np.asarray(tokens).tolist())):
      if row >= 0:
        out[todo[row]] = text
  result = _Translations(out)
  result.truncated = cut
  return result


def decode_options(config) -> dict[str, Any]:
  """translate_lines' keyword arguments from `config.decode` (a config.json written before a key
  existed gets its default) and the longest source the model was trained on."""
  dc = config.decode
  return {"beam_size": dc.beam_size, "alpha": dc.alpha, "word_reward": dc.get("word_reward", 0.0),
          "max_extra_len": dc.max_extra_len, "batch_size": dc.batch_size,
          "max_src_len": config_lib.source_limit(config),
          "lowercase": config.data.get("lowercase", False)}


class _Translations(list):
  """A list of translations with a `truncated` count of over-long inputs."""
  truncated: int = 0


def bleu(hypotheses: Sequence[str], references: Sequence[str]) -> tuple[float, str]:
  """Corpus BLEU of detokenized hypotheses against one reference each (sacrebleu).

  Returns:
    (BLEU in [0, 100], sacrebleu signature string).

  Raises:
    ValueError: the two lists differ in length.
  """
  stats = bleu_stats(hypotheses, references)
  return stats["bleu"], stats["signature"]


def bleu_stats(hypotheses: Sequence[str], references: Sequence[str]) -> dict[str, Any]:
  """sacrebleu corpus BLEU with its parts: bleu, signature, brevity penalty `bp`, `sys_len`,
  `ref_len` (13a tokens) and their `ratio`. Raises ValueError if the lists differ in length."""
  if len(hypotheses) != len(references):
    raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} references")
  metric = sacrebleu.metrics.BLEU()
  score = metric.corpus_score(list(hypotheses), [list(references)])
  return {"bleu": score.score, "signature": str(metric.get_signature()), "bp": score.bp,
          "sys_len": score.sys_len, "ref_len": score.ref_len,
          "ratio": score.sys_len / max(score.ref_len, 1)}


def score_translations(hypotheses: Sequence[str], references: Sequence[str], *,
                       paper_bleu: bool = False, lang: str = "de") -> dict[str, Any]:
  """sacreBLEU, the lowercased Moses-tokenized BLEU and, if `paper_bleu`, the paper's tokenized
  compound-split BLEU, side by side.

  Returns:
    {'sacrebleu', 'sacrebleu_signature', 'brevity_penalty', 'hyp_ref_length_ratio'} (13a
    tokens), {'bleu_lc_moses', 'bleu_lc_moses_signature'} (Multi30k literature's metric), plus
    {'bleu_tok_compound_split', 'bleu_tok_compound_split_signature'} when `paper_bleu` (see
    `transformer_jax.bleu`; `lang` is the target language). The BLEUs are different metrics
    and keep their own keys.

  Raises:
    ValueError: the two lists differ in length.
  """
  stats = bleu_stats(hypotheses, references)
  out = {"sacrebleu": stats["bleu"], "sacrebleu_signature": stats["signature"],
         "brevity_penalty": stats["bp"], "hyp_ref_length_ratio": stats["ratio"]}
  from transformer_jax import bleu as bleu_lib  # sacremoses: imported only when used
  lc = bleu_lib.bleu_lc_moses(hypotheses, references, lang)
  out.update(bleu_lc_moses=lc["bleu"], bleu_lc_moses_signature=lc["signature"])
  if paper_bleu:
    tok = bleu_lib.bleu_tok_compound_split(hypotheses, references, lang)
    out.update(bleu_tok_compound_split=tok["bleu"],
               bleu_tok_compound_split_signature=tok["signature"])
  return out


def final_bleu(config, model: Transformer, params: Any, tokenizer: Tokenizer, workdir, log=print
               ) -> dict[str, Any]:
  """Translates and scores each split of `config.train.final_eval_splits` ('val', 'test').

  Each split comes from `data.read_split` (files or TFDS) and is translated with the
  config's beam search into WORKDIR/{split}.hyp (nothing is written if `workdir` is None),
  then scored by `score_translations`
  (the paper's BLEU too if `config.train.paper_bleu`).

  Returns:
    {'bleu': {split: scores plus 'src', 'ref' (path or TFDS label), 'decode_seconds'}} and,
    if 'test' was scored, the flat keys of earlier final.json files: test_bleu (sacreBLEU),
    bleu_signature, test_bleu_lc_moses (and its _signature), test_src, test_ref, decode_seconds, brevity_penalty, hyp_ref_length_ratio.
  """
  t = config.train
  result = {"bleu": {}}
  for split in t.get("final_eval_splits", ("test",)):
    text = data_lib.read_split(config, split, log)
    start = time.perf_counter()
    hyps = translate_lines(model, params, tokenizer, text.src, **decode_options(config))
    scores = score_translations(hyps, text.tgt, paper_bleu=t.get("paper_bleu", False),
                                lang=config.data.tgt_lang)
    out_path = pathlib.Path(workdir) / f"{split}.hyp" if workdir is not None else None
    if out_path is not None:  # None: another process of a multi-host job writes them
      out_path.write_text("".join(h + "\n" for h in hyps), encoding="utf-8")
    result["bleu"][split] = {**scores, "src": text.src_path, "ref": text.tgt_path,
                             "decode_seconds": time.perf_counter() - start}
    log(f"{split} ({text.src_path}): " + "; ".join(
        f"{label} {scores[k]:.2f} ({scores[k + '_signature']})"
        for k, label in SCORE_LABELS.items() if k in scores) + f"; translations in {out_path}")
  if "test" in result["bleu"]:
    b = result["bleu"]["test"]
    result.update(test_bleu=b["sacrebleu"], bleu_signature=b["sacrebleu_signature"],
                  test_bleu_lc_moses=b["bleu_lc_moses"],
                  test_bleu_lc_moses_signature=b["bleu_lc_moses_signature"],
                  test_src=b["src"], test_ref=b["ref"], decode_seconds=b["decode_seconds"],
                  brevity_penalty=b["brevity_penalty"],
                  hyp_ref_length_ratio=b["hyp_ref_length_ratio"])
  return result


@functools.partial(jax.jit, static_argnames=("model",))
def _nll_step(params: Any, batch: dict[str, jax.Array], *, model: Transformer):
  logits = model.apply({"params": params}, batch["src"], batch["tgt_in"])
  _, nll, n = label_smoothed_cross_entropy(logits, batch["tgt_out"], 0.0)
  return nll, n


def perplexity(model: Transformer, params: Any, batches: Iterable[dict[str, np.ndarray]]
               ) -> dict[str, float]:
  """Per-wordpiece perplexity exp(total NLL / target tokens), EOS counted as a token.

  Returns:
    {'nll': nats per target token, 'ppl': perplexity, 'tokens': number of target tokens}.
  """
  total, count = 0.0, 0.0
  for batch in batches:
    nll, n = _nll_step(params, batch, model=model)
    total, count = total + float(nll), count + float(n)
  nll = total / max(count, 1.0)
  return {"nll": nll, "ppl": math.exp(min(nll, 700.0)), "tokens": int(count)}
