"""Tests for transformer_jax.tokenizer: a tiny shared BPE vocabulary trained on real Multi30k lines.

The reference for the special ids is SentencePiece itself, loading the written model file.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import sentencepiece as spm

from transformer_jax.tokenizer import BOS_ID, EOS_ID, PAD_ID, UNK_ID, Tokenizer

MULTI30K = Path(__file__).resolve().parents[1] / "transformer_jax" / "assets" / "multi30k"
N_LINES = 2000  # per language: enough for a 600-piece vocabulary, trains in well under a second
VOCAB = 600


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> list[Path]:
  """The first N_LINES lines of train.en and train.de, as two files."""
  d = tmp_path_factory.mktemp("corpus")
  files = []
  for lang in ("en", "de"):
    lines = (MULTI30K / f"train.{lang}").read_text(encoding="utf-8").splitlines()[:N_LINES]
    files.append(d / f"train.{lang}")
    files[-1].write_text("\n".join(lines) + "\n", encoding="utf-8")
  return files


@pytest.fixture(scope="module")
def tok(corpus, tmp_path_factory) -> Tokenizer:
  return Tokenizer.train(corpus, tmp_path_factory.mktemp("w") / "spm.model", VOCAB)


def _clean_lines(files, n=40) -> list[str]:
  """Training sentences whose whitespace SentencePiece's normalisation leaves unchanged."""
  out = []
  for f in files:
    lines = f.read_text(encoding="utf-8").splitlines()
    out += [s for s in lines if s == " ".join(s.split())][:n]
  return out


def test_vocab_size_and_files(tok, corpus):
  assert tok.vocab_size == VOCAB
  model = Path(tok.model_path)
  assert model.is_file() and model.with_suffix(".vocab").is_file()
  assert len(model.with_suffix(".vocab").read_text(encoding="utf-8").splitlines()) == VOCAB
  assert not [p for p in model.parent.iterdir() if ".tmp" in p.name]  # temporaries renamed


def test_special_ids_match_sentencepiece(tok):
  ref = spm.SentencePieceProcessor(model_file=tok.model_path)
  assert (ref.pad_id(), ref.unk_id(), ref.bos_id(), ref.eos_id()) == (0, 1, 2, 3)
  assert (PAD_ID, UNK_ID, BOS_ID, EOS_ID) == (0, 1, 2, 3)
  assert [ref.id_to_piece(i) for i in range(4)] == ["<pad>", "<unk>", "<s>", "</s>"]


def test_encode_adds_no_specials_and_unknown_is_unk(tok, corpus):
  for s in _clean_lines(corpus):
    ids = tok.encode(s)
    assert ids and not {PAD_ID, BOS_ID, EOS_ID} & set(ids)
  assert UNK_ID in tok.encode("a \u2603 man")  # the snowman is not in the training text


def test_round_trip_on_real_sentences(tok, corpus):
  sentences = _clean_lines(corpus)
  assert len(sentences) == 80
  for s in sentences:
    assert tok.decode(tok.encode(s)) == s
  assert tok.decode_batch(tok.encode_batch(sentences)) == sentences


def test_encode_batch_equals_encode(tok, corpus):
  sentences = _clean_lines(corpus)
  assert tok.encode_batch(sentences) == [tok.encode(s) for s in sentences]


def test_decode_stops_at_eos_and_skips_pad_bos(tok):
  a, b = tok.encode("A man is sitting."), tok.encode("Zwei Hunde.")
  ids = [BOS_ID] + a[:2] + [PAD_ID] + a[2:] + [EOS_ID] + b + [PAD_ID] * 3
  assert tok.decode(ids) == "A man is sitting."
  assert tok.decode(np.asarray(ids, np.int32)) == "A man is sitting."
  assert tok.decode([EOS_ID] + a) == ""
  assert tok.decode_batch(np.asarray([a + [EOS_ID] + b, b + [EOS_ID] + a])) == [
      "A man is sitting.", "Zwei Hunde."]
  with pytest.raises(ValueError, match=str(VOCAB)):
    tok.decode([VOCAB])


def test_training_is_deterministic(tok, corpus, tmp_path):
  again = Tokenizer.train(corpus, tmp_path / "again.model", VOCAB)
  assert (Path(again.model_path).with_suffix(".vocab").read_text(encoding="utf-8")
          == Path(tok.model_path).with_suffix(".vocab").read_text(encoding="utf-8"))


def _train_sampled(corpus, path, seed) -> str:
  t = Tokenizer.train(corpus, path, 300, max_sentences=500, seed=seed)
  return Path(t.model_path).with_suffix(".vocab").read_text(encoding="utf-8")


def _in_another_process(code: str, *args) -> str:
  """stdout of `python -c code *args` in a new process that imports this checkout."""
  root = str(Path(__file__).resolve().parents[1])
  env = {**os.environ, "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])}
  return subprocess.run([sys.executable, "-c", code, *map(str, args)], check=True, env=env,
                        timeout=120, capture_output=True, text=True).stdout


def test_sampled_training_depends_only_on_the_seed(corpus, tmp_path):
  # Another process too: SentencePiece's own sampling repeats within a process but not across.
  code = ("import sys; from pathlib import Path; from transformer_jax.tokenizer import Tokenizer;"
          "Tokenizer.train(sys.argv[1:3], sys.argv[3], 300, max_sentences=500, seed=7)")
  _in_another_process(code, *corpus, tmp_path / "p.model")
  here = _train_sampled(corpus, tmp_path / "s7.model", 7)
  assert (tmp_path / "p.vocab").read_text(encoding="utf-8") == here
  assert _train_sampled(corpus, tmp_path / "s8.model", 8) != here


def test_load_or_train_reuses_the_model(tok, tmp_path):
  reused = Tokenizer.load_or_train(tok.model_path, [tmp_path / "never-read.txt"], VOCAB)
  assert reused.vocab_size == VOCAB
  assert reused.encode("Ein Mann.") == tok.encode("Ein Mann.")
  with pytest.raises(ValueError, match=rf"{VOCAB}.*{VOCAB + 1}"):
    Tokenizer.load_or_train(tok.model_path, [], VOCAB + 1)


def test_load_or_train_trains_when_missing(corpus, tmp_path):
  path = tmp_path / "sub" / "spm.model"
  assert Tokenizer.load_or_train(path, corpus, 300).vocab_size == 300
  assert path.is_file()


def test_unigram_vocabulary_is_trained_reported_and_not_mixed_up(tok, corpus, tmp_path):
  assert tok.model_type == "bpe"
  path = tmp_path / "spm.model"
  uni = Tokenizer.load_or_train(path, corpus, VOCAB, model_type="unigram")
  assert uni.model_type == "unigram" and uni.vocab_size == VOCAB
  ref = spm.SentencePieceProcessor(model_file=str(path))
  sentence = "Zwei Männer spielen Fußball auf einer Wiese."
  assert uni.encode(sentence) == ref.encode(sentence) != tok.encode(sentence)
  assert uni.decode(uni.encode(sentence)) == sentence
  with pytest.raises(ValueError, match=r"vocab_model 'unigram' but data.vocab_model is 'bpe'"):
    Tokenizer.load_or_train(path, corpus, VOCAB)  # a BPE config meeting the unigram model
  with pytest.raises(ValueError, match="needs a BPE vocabulary"):
    uni.sample_batch([sentence], bpe_dropout=0.1, seed=0)
  with pytest.raises(ValueError, match=r"data.vocab_model must be one of \['bpe', 'unigram'\]"):
    Tokenizer.train(corpus, tmp_path / "w.model", VOCAB, model_type="wordpiece")


@pytest.mark.parametrize("vocab_size", [-1, 0, 4])
def test_too_small_vocab_size_names_the_key(corpus, tmp_path, vocab_size):
  with pytest.raises(ValueError, match="vocab_size"):
    Tokenizer.train(corpus, tmp_path / "spm.model", vocab_size)


def test_unreachable_vocab_size_says_to_lower_it(corpus, tmp_path):
  with pytest.raises(ValueError, match="lower data.vocab_size"):
    Tokenizer.train(corpus, tmp_path / "spm.model", 100_000)
  assert not list(tmp_path.iterdir())  # nothing half-written left behind
  with pytest.raises(ValueError, match="raise data.vocab_size"):  # fewer than the characters
    Tokenizer.train(corpus, tmp_path / "spm.model", 20)


def test_missing_files_are_named(corpus, tmp_path):
  with pytest.raises(FileNotFoundError, match="nope.model"):
    Tokenizer.load(tmp_path / "nope.model")
  with pytest.raises(FileNotFoundError, match="nope.txt"):
    Tokenizer.train([corpus[0], tmp_path / "nope.txt"], tmp_path / "spm.model", 300)


# -- BPE-dropout --------------------------------------------------------------------------------

def _lines(corpus) -> list[str]:
  return [line for f in corpus for line in f.read_text(encoding="utf-8").splitlines()]


def test_bpe_dropout_at_zero_is_sentencepiece_bpe(tok, corpus):
  lines = _lines(corpus)  # 4000 real sentences, both languages
  assert tok.sample_batch(lines, bpe_dropout=0.0, seed=0) == tok.encode_batch(lines)


def test_bpe_dropout_resegments_the_same_text_into_more_pieces(tok, corpus):
  lines = _lines(corpus)
  sampled = tok.sample_batch(lines, bpe_dropout=0.1, seed=1)
  deterministic = tok.encode_batch(lines)
  assert tok.decode_batch(sampled) == tok.decode_batch(deterministic)
  n_sampled, n_det = sum(map(len, sampled)), sum(map(len, deterministic))
  assert 1.05 * n_det < n_sampled < 1.5 * n_det
  assert sum(a != b for a, b in zip(sampled, deterministic)) > len(lines) // 4
  assert tok.sample_batch(lines, bpe_dropout=0.1, seed=2) != sampled


def test_bpe_dropout_leaves_a_merge_out_for_one_step_only():
  # Provilkov et al.'s Algorithm 1: a merge left out at one step is offered again at the next.
  # Merges ab (first) and cd; draws 0.05 (ab left out), 0.5 (cd kept), then 0.5 (ab kept).
  t = Tokenizer.__new__(Tokenizer)
  t._merges = {"ab": (-1.0, 10), "cd": (-2.0, 11)}  # pylint: disable=protected-access
  draws = iter([0.05, 0.5, 0.5])
  assert t._dropout_merges("abcd", 0.1, lambda: next(draws)) == ["ab", "cd"]
  draws = iter([0.05, 0.05])  # both left out at the first step: the word is done
  assert t._dropout_merges("abcd", 0.1, lambda: next(draws)) == ["a", "b", "c", "d"]


def test_bpe_dropout_repeats_in_another_process(tok, corpus):
  lines = _lines(corpus)[:500]
  code = ("import sys, json; from transformer_jax.tokenizer import Tokenizer;"
          "lines = open(sys.argv[2], encoding='utf-8').read().splitlines();"
          "print(json.dumps(Tokenizer.load(sys.argv[1]).sample_batch(lines, bpe_dropout=0.1, "
          "seed=3)))")
  path = corpus[0].parent / "first500.txt"
  path.write_text("\n".join(lines) + "\n", encoding="utf-8")
  out = _in_another_process(code, tok.model_path, path)
  assert json.loads(out) == tok.sample_batch(lines, bpe_dropout=0.1, seed=3)


def test_bpe_dropout_outside_zero_one_is_named(tok):
  with pytest.raises(ValueError, match=r"data\.bpe_dropout"):
    tok.sample_batch(["a"], bpe_dropout=1.0, seed=0)
