"""Tokenized BLEUs: the paper's (compound-split) and the Multi30k literature's (lowercased).

Both are reported next to cased detokenized sacreBLEU (the primary figure), never instead of
it, each under its own key and signature.

## The paper's: tokenized, with compound splitting (tensor2tensor's get_ende_bleu.sh)

Table 2's 27.3 / 28.4 were not sacreBLEU. They were multi-bleu.perl on Moses-tokenized text
with hyphenated compounds split, as tensor2tensor's `utils/get_ende_bleu.sh` does:

1. replace-unicode-punctuation.perl (“ ” -> ", ’ -> ', fullwidth forms -> ASCII, ...);
2. tokenizer.perl -l de (escapes & " ' < > [ ] | as &amp; &quot; ...);
3. `s{(\\S)-(\\S)}{$1 ##AT##-##AT## $2}g`: 'rich-text' -> 'rich ##AT##-##AT## text' ("for
   historical reasons", as Stanford's and GNMT's WMT numbers did);
4. multi-bleu.perl: corpus BLEU on whitespace-separated tokens, 4-grams, no smoothing.

Steps 1-2 use `sacremoses` (a Python port of the Moses scripts, not byte-checked against the
Perl here); step 3 is the same regex with Perl's byte semantics (re.ASCII); step 4 is
sacreBLEU with tokenize='none', smooth_method='none', whose formula is multi-bleu.perl's
(clipped n-gram counts summed over the corpus, brevity penalty exp(1 - r/c) when c < r,
geometric mean of the four precisions, 0 if one of them is 0); tests/test_bleu.py checks it.

The reference gets one more step, before step 1: the double quotes „ ‟ “ ” « » become ",
which the tokenizer writes as &quot;. The paper's newstest2014 reference had been edited this
way (tensor2tensor issue #317: without it the paper's numbers are not reproduced, and
replace-unicode-punctuation leaves „ alone). The hypothesis does not get it, as in
get_ende_bleu.sh, so a system that writes „ is scored as the paper's was.

The result is not comparable with sacreBLEU (higher on newstest2014: 29.3 against 28.6 for
fairseq's big model, 29.02 against 27.52 in tensor2tensor issue #317) and is always reported
next to it under its own key, never instead of it.

## The Multi30k literature's: lowercased, Moses-tokenized (`bleu_lc_moses`)

Multi30k papers (e.g. Wu et al. 2021, Transformer-Tiny 41.0 on test2016) score lowercased,
Moses-tokenized text with `multi-bleu.perl -lc`, as the Multi30k repository's
`scripts/task1-tokenize.sh` prepares it: lowercase.perl | normalize-punctuation.perl -l de |
tokenizer.perl -l de (no -a; escaped), applied here to hypothesis and reference alike
(`sacremoses`, in that order: lowercasing first matters, as 'Bart' is on Moses' German
non-breaking prefix list and 'bart' is not, so 'Bart.' would stay one token). Our test2016.de then has 12,103 tokens, the reference length those
papers report. BLEU over the tokens is sacreBLEU with tokenize='none', lowercase=True,
smooth_method='none': multi-bleu.perl's formula (tests/test_bleu.py checks it by hand).
"""

from __future__ import annotations

import re
from typing import Any, Sequence

import sacrebleu

_COMPOUND = re.compile(r"(\S)-(\S)", re.ASCII)  # Perl's \S on bytes: ASCII whitespace only
_REF_QUOTES = str.maketrans({q: '"' for q in "„‟“”«»"})
METHOD = "moses-tok:{lang}|compound-split:##AT##|ref-quotes:ascii"  # added to the signature
LC_MOSES_METHOD = "moses-lc-norm-tok:{lang}"  # added to bleu_lc_moses's signature


def split_compounds(line: str) -> str:
  """'Test-Fall' -> 'Test ##AT##-##AT## Fall' (step 3). Matches do not overlap, so 'a-b-c'
  gives 'a ##AT##-##AT## b-c', exactly as the Perl one-liner does."""
  return _COMPOUND.sub(r"\1 ##AT##-##AT## \2", line)


def tokenize(lines: Sequence[str], lang: str = "de", *, reference: bool = False) -> list[str]:
  """Steps 1-3 above for each line; `reference=True` first makes double quotes ASCII.

  Args:
    lines: detokenized sentences.
    lang: Moses tokenizer language (the target language; 'de' for EN->DE).
    reference: apply the reference-only quote edit.

  Returns:
    One string of space-separated tokens per line.
  """
  from sacremoses import MosesPunctNormalizer, MosesTokenizer
  normalizer, tokenizer = MosesPunctNormalizer(lang=lang), MosesTokenizer(lang=lang)
  out = []
  for line in lines:
    if reference:
      line = line.translate(_REF_QUOTES)
    line = normalizer.replace_unicode_punct(line)
    out.append(split_compounds(tokenizer.tokenize(line, return_str=True, escape=True)))
  return out


def _corpus_bleu(metric: sacrebleu.metrics.BLEU, hyps: list[str], refs: list[str], method: str
                 ) -> dict[str, Any]:
  score = metric.corpus_score(hyps, [refs])
  return {"bleu": score.score, "signature": f"{metric.get_signature()}|{method}",
          "precisions": list(score.precisions), "bp": score.bp, "sys_len": score.sys_len,
          "ref_len": score.ref_len}


def _check_lengths(hypotheses: Sequence[str], references: Sequence[str]) -> None:
  if len(hypotheses) != len(references):
    raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} references")


def tokenize_lc_moses(lines: Sequence[str], lang: str = "de") -> list[str]:
  """Lowercase, then Moses normalize-punctuation and tokenizer (-l lang, escaped), per line:
  the Multi30k repository's tokenization. Returns one string of space-separated tokens each."""
  from sacremoses import MosesPunctNormalizer, MosesTokenizer
  normalizer, tokenizer = MosesPunctNormalizer(lang=lang), MosesTokenizer(lang=lang)
  return [tokenizer.tokenize(normalizer.normalize(line.lower()), return_str=True, escape=True)
          for line in lines]


def bleu_lc_moses(hypotheses: Sequence[str], references: Sequence[str], lang: str = "de"
                  ) -> dict[str, Any]:
  """Lowercased Moses-tokenized corpus BLEU of detokenized text, one reference each: the
  Multi30k literature's multi-bleu.perl -lc (see the module docstring).

  Returns:
    {'bleu': in [0, 100], 'signature': sacreBLEU's plus LC_MOSES_METHOD, 'precisions' (four,
    in percent), 'bp': brevity penalty, 'sys_len' / 'ref_len': Moses tokens}.

  Raises:
    ValueError: the two lists differ in length.
  """
  _check_lengths(hypotheses, references)
  metric = sacrebleu.metrics.BLEU(tokenize="none", lowercase=True, smooth_method="none",
                                  force=True)
  return _corpus_bleu(metric, tokenize_lc_moses(hypotheses, lang),
                      tokenize_lc_moses(references, lang), LC_MOSES_METHOD.format(lang=lang))


def bleu_tok_compound_split(hypotheses: Sequence[str], references: Sequence[str],
                            lang: str = "de") -> dict[str, Any]:
  """The paper's tokenized, compound-split corpus BLEU of detokenized text (one reference).

  Returns:
    {'bleu': in [0, 100], 'signature': sacreBLEU's signature plus METHOD, 'precisions':
    the four n-gram precisions in percent, 'bp': brevity penalty, 'sys_len' / 'ref_len':
    tokens after steps 1-3}.

  Raises:
    ValueError: the two lists differ in length.
  """
  _check_lengths(hypotheses, references)
  metric = sacrebleu.metrics.BLEU(tokenize="none", smooth_method="none", force=True)
  return _corpus_bleu(metric, tokenize(hypotheses, lang),
                      tokenize(references, lang, reference=True), METHOD.format(lang=lang))
