"""Both BLEU variants against known values: sacreBLEU (13a, detokenized) on a hand-checked
example and against sacrebleu's own API, and the paper's tokenized compound-split BLEU on a
hand-checked example, against the Perl one-liner of get_ende_bleu.sh, and against
multi-bleu.perl's formula written out here."""

from __future__ import annotations

import collections
import math
import pathlib
import shutil
import subprocess

import pytest
import sacrebleu

from transformer_jax import bleu
from transformer_jax import evaluate

WMT14 = pathlib.Path(__file__).resolve().parents[2] / "shared" / "data" / "wmt14"


def test_sacrebleu_hand_checked_value():
  # 13a splits off the final period: hyp 7 tokens, ref 8 ("red" missing from the hyp).
  #   hyp: The cat sat on the mat .        ref: The cat sat on the red mat .
  # 1-grams 7/7; 2-grams 5/6 ("the mat" missing); 3-grams 3/5 ("on the mat", "the mat .");
  # 4-grams 2/4. BP = exp(1 - 8/7). No zero count, so the 'exp' smoothing does nothing.
  hyps, refs = ["The cat sat on the mat."], ["The cat sat on the red mat."]
  want = 100 * math.exp(1 - 8 / 7) * (1 * 5 / 6 * 3 / 5 * 2 / 4) ** 0.25  # 61.30
  got = evaluate.score_translations(hyps, refs)
  assert got["sacrebleu"] == pytest.approx(want, rel=1e-12)
  assert got["sacrebleu"] == pytest.approx(sacrebleu.corpus_bleu(hyps, [refs]).score, rel=1e-12)
  assert got["sacrebleu_signature"] == f"nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:" \
                                       f"{sacrebleu.__version__}"
  assert "bleu_tok_compound_split" not in got  # only on request


def test_compound_split_bleu_hand_checked_value():
  hyps = ["Das ist ein Test-Fall.", '"Ja", sagte sie.']
  refs = ["Das ist ein Test-Fall, sagte er.", "„Ja“, sagte sie."]
  # After Moses tokenization (-l de, escaped) and compound splitting:
  assert bleu.tokenize(hyps) == ["Das ist ein Test ##AT##-##AT## Fall .",
                                 "&quot; Ja &quot; , sagte sie ."]
  assert bleu.tokenize(refs, reference=True) == [
      "Das ist ein Test ##AT##-##AT## Fall , sagte er .", "&quot; Ja &quot; , sagte sie ."]
  # Sentence 1: hyp 7 tokens, ref 10. Its n-grams all match except those ending in "Fall .":
  #   1-grams 7/7, 2-grams 5/6, 3-grams 4/5, 4-grams 3/4.
  # Sentence 2 (reference quotes made ASCII): identical, 7 tokens: 7/7, 6/6, 5/5, 4/4.
  # Corpus: p1 = 14/14, p2 = 11/12, p3 = 9/10, p4 = 7/8; c = 14, r = 17, BP = exp(1 - 17/14).
  want = 100 * math.exp(1 - 17 / 14) * (1 * 11 / 12 * 9 / 10 * 7 / 8) ** 0.25  # 74.40
  got = bleu.bleu_tok_compound_split(hyps, refs)
  assert got["bleu"] == pytest.approx(want, rel=1e-12)
  assert got["precisions"] == pytest.approx([100.0, 1100 / 12, 90.0, 87.5])
  assert (got["sys_len"], got["ref_len"]) == (14, 17)
  assert got["signature"].startswith("nrefs:1|case:mixed|eff:no|tok:none|smooth:none|")
  assert got["signature"].endswith("|moses-tok:de|compound-split:##AT##|ref-quotes:ascii")
  both = evaluate.score_translations(hyps, refs, paper_bleu=True)
  assert both["bleu_tok_compound_split"] == got["bleu"]
  assert both["sacrebleu"] == pytest.approx(sacrebleu.corpus_bleu(hyps, [refs]).score)
  assert both["sacrebleu"] != both["bleu_tok_compound_split"]


def test_hypothesis_keeps_low_quotes_as_in_get_ende_bleu():
  # replace-unicode-punctuation maps “ and ” but not „; only the reference gets „ -> ".
  assert bleu.tokenize(["„Ja“"]) == ["„ Ja &quot;"]
  assert bleu.tokenize(["„Ja“"], reference=True) == ["&quot; Ja &quot;"]


SPLIT_CASES = ["rich-text format", "a-b-c", "a-b-c-d", "-x x- --", "Baden-Württemberg",
               "x ##AT##-##AT## y", "1-2 a - b", "ä-ö ü-"]


@pytest.mark.parametrize("line", SPLIT_CASES)
def test_split_compounds_hand_checked(line):
  want = {"rich-text format": "rich ##AT##-##AT## text format",
          "a-b-c": "a ##AT##-##AT## b-c",  # matches do not overlap
          "a-b-c-d": "a ##AT##-##AT## b-c ##AT##-##AT## d",
          "-x x- --": "-x x- --",
          "Baden-Württemberg": "Baden ##AT##-##AT## Württemberg",
          "x ##AT##-##AT## y": "x ##AT## ##AT##-##AT## ##AT## y",
          "1-2 a - b": "1 ##AT##-##AT## 2 a - b",
          "ä-ö ü-": "ä ##AT##-##AT## ö ü-"}[line]
  assert bleu.split_compounds(line) == want


@pytest.mark.skipif(shutil.which("perl") is None, reason="perl not installed")
def test_split_compounds_equals_the_perl_one_liner():
  text = "".join(line + "\n" for line in SPLIT_CASES)
  perl = subprocess.run(["perl", "-ple", r"s{(\S)-(\S)}{$1 ##AT##-##AT## $2}g"],
                        input=text.encode("utf-8"), capture_output=True, check=True)
  assert perl.stdout.decode("utf-8").splitlines() == [bleu.split_compounds(x) for x in SPLIT_CASES]


def _multi_bleu(hyps: list[str], refs: list[str]) -> float:
  """multi-bleu.perl's corpus BLEU, one reference, written out: clipped n-gram matches and
  n-gram totals summed over sentences (n = 1..4), BP = exp(1 - r/c) if c < r, and
  exp(mean(log p_n)) with log(0) taken as -9999999999 (so any p_n = 0 gives 0)."""
  correct, total, c, r = [0] * 4, [0] * 4, 0, 0
  for hyp, ref in zip(hyps, refs):
    h, t = hyp.split(), ref.split()
    c, r = c + len(h), r + len(t)
    for n in range(1, 5):
      hc = collections.Counter(tuple(h[i:i + n]) for i in range(len(h) - n + 1))
      rc = collections.Counter(tuple(t[i:i + n]) for i in range(len(t) - n + 1))
      correct[n - 1] += sum(min(k, rc[g]) for g, k in hc.items())
      total[n - 1] += max(0, len(h) - n + 1)
  logs = [math.log(k / m) if k and m else -9999999999 for k, m in zip(correct, total)]
  bp = math.exp(1 - r / c) if c < r else 1.0
  return 100 * bp * math.exp(sum(logs) / 4)


def test_tokenized_bleu_equals_multi_bleu_formula_on_newstest():
  if not WMT14.is_dir():
    pytest.skip(f"{WMT14} absent (no ../shared)")
  refs = (WMT14 / "newstest2013.de").read_text(encoding="utf-8").splitlines()[:300]
  # A degraded "system": every 3rd sentence loses its second half, every 5th word dropped.
  hyps = []
  for i, ref in enumerate(refs):
    words = ref.split()
    words = words[:max(1, len(words) // 2)] if i % 3 == 0 else words
    hyps.append(" ".join(w for j, w in enumerate(words) if j % 5 != 4))
  got = bleu.bleu_tok_compound_split(hyps, refs)
  want = _multi_bleu(bleu.tokenize(hyps), bleu.tokenize(refs, reference=True))
  assert 20.0 < want < 90.0 and got["bp"] < 1.0
  assert got["bleu"] == pytest.approx(want, rel=1e-12)


def test_zero_four_gram_matches_give_zero_as_in_multi_bleu():
  hyps, refs = ["ein Haus", "zwei Hunde ."], ["ein Haus steht dort", "zwei Hunde laufen ."]
  assert _multi_bleu(bleu.tokenize(hyps), bleu.tokenize(refs, reference=True)) == 0.0
  assert bleu.bleu_tok_compound_split(hyps, refs)["bleu"] == 0.0


def test_mismatched_lengths_raise():
  with pytest.raises(ValueError, match="2 hypotheses but 1 references"):
    bleu.bleu_tok_compound_split(["a", "b"], ["a"])


def test_lc_moses_bleu_hand_checked_value():
  hyps = ["Ein Hund läuft im Park.", "ZWEI Männer spielen Fußball!"]
  refs = ["Ein brauner Hund läuft im Park.", "Zwei Männer spielen Fußball."]
  # Lowercased, then Moses-tokenized (-l de): case no longer counts, the final mark is a token.
  assert bleu.tokenize_lc_moses(hyps) == ["ein hund läuft im park .",
                                          "zwei männer spielen fußball !"]
  assert bleu.tokenize_lc_moses(refs) == ["ein brauner hund läuft im park .",
                                          "zwei männer spielen fußball ."]
  # Sentence 1: hyp 6 tokens, ref 7 ("brauner" missing): n-grams containing "ein hund" miss.
  #   1-grams 6/6, 2-grams 4/5, 3-grams 3/4, 4-grams 2/3.
  # Sentence 2: 5 and 5 tokens, all but those ending in "!" match: 4/5, 3/4, 2/3, 1/2.
  # Corpus: p1 = 10/11, p2 = 7/9, p3 = 5/7, p4 = 3/5; c = 11, r = 12, BP = exp(1 - 12/11).
  want = 100 * math.exp(1 - 12 / 11) * (10 / 11 * 7 / 9 * 5 / 7 * 3 / 5) ** 0.25  # 67.06
  got = bleu.bleu_lc_moses(hyps, refs)
  assert got["bleu"] == pytest.approx(want, rel=1e-12)
  assert got["precisions"] == pytest.approx([1000 / 11, 700 / 9, 500 / 7, 60.0])
  assert (got["sys_len"], got["ref_len"]) == (11, 12)
  assert got["signature"].startswith("nrefs:1|case:lc|eff:no|tok:none|smooth:none|")
  assert got["signature"].endswith("|moses-lc-norm-tok:de")
  both = evaluate.score_translations(hyps, refs)
  assert both["bleu_lc_moses"] == got["bleu"]
  assert both["sacrebleu"] < got["bleu"]  # cased: "ZWEI" and "Zwei" differ there


def test_lc_moses_lowercases_before_tokenizing():
  # The Multi30k scripts lowercase first. "Bart" is on Moses' German non-breaking prefix list,
  # "bart" is not: tokenizing first would keep "Bart." whole (one token fewer in test2016.de).
  from sacremoses import MosesTokenizer
  assert MosesTokenizer(lang="de").tokenize("Er rasiert seinen Bart.")[-1] == "Bart."
  assert bleu.tokenize_lc_moses(["Er rasiert seinen Bart."]) == ["er rasiert seinen bart ."]


def test_lc_moses_bleu_on_test2016_matches_the_literature_reference_length():
  # Multi30k papers' test2016 reference has 12,103 tokens; the main job's committed
  # translations scored by it equal multi-bleu.perl's formula over the same tokens.
  root = pathlib.Path(__file__).resolve().parents[1]
  refs = (root / "transformer_jax/assets/multi30k/test2016.de").read_text("utf-8").splitlines()
  hyps = (root / "benchmarks/multi30k_main/test.hyp").read_text("utf-8").splitlines()
  got = bleu.bleu_lc_moses(hyps, refs)
  assert got["ref_len"] == 12103
  want = _multi_bleu(bleu.tokenize_lc_moses(hyps), bleu.tokenize_lc_moses(refs))
  assert 30.0 < want < 50.0
  assert got["bleu"] == pytest.approx(want, rel=1e-12)
