"""Tests for transformer_jax.data: bad input, encoding, length bucketing, decode batching.

Batches are checked by recovering every row back to the pair it came from (each synthetic source
starts with a token that is the pair's index), not by re-running the bucketing logic.
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
import pytest

from transformer_jax.data import (BPEDropoutBatches, BucketedBatches, DataError, Encoded,
                                  ParallelText, batch_sentences, encode_parallel, read_parallel)
from transformer_jax.tokenizer import BOS_ID, EOS_ID, PAD_ID, Tokenizer

MULTI30K = Path(__file__).resolve().parents[1] / "transformer_jax" / "assets" / "multi30k"
BOUNDARIES = (8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 32, 36, 40, 48, 56, 64, 80, 96, 128, 256)
FIRST_ID = 10  # synthetic source i starts with token FIRST_ID + i


def _write(path: Path, data: bytes) -> Path:
  path.write_bytes(data)
  return path


class CharTokenizer:
  """One id per character: lengths are obvious, no SentencePiece needed."""

  def encode_batch(self, texts):
    return [[4 + ord(c) % 100 for c in t] for t in texts]


# -- read_parallel ------------------------------------------------------------------------------

def test_reads_pairs_and_strips_line_ends(tmp_path):
  src = _write(tmp_path / "a.en", b"A dog .\r\n  Two men  \nA cat\n")
  tgt = _write(tmp_path / "a.de", "Ein Hund .\nZwei M\u00e4nner \nEine Katze".encode())
  text = read_parallel(src, tgt)
  assert text.src == ["A dog .", "Two men", "A cat"]
  assert text.tgt == ["Ein Hund .", "Zwei M\u00e4nner", "Eine Katze"]
  assert (text.src_path, text.tgt_path, text.n_blank_dropped) == (str(src), str(tgt), 0)


def test_missing_file(tmp_path):
  tgt = _write(tmp_path / "a.de", b"x\n")
  with pytest.raises(DataError, match=r"missing\.en: file not found"):
    read_parallel(tmp_path / "missing.en", tgt)


def test_directory_instead_of_file(tmp_path):
  src = _write(tmp_path / "a.en", b"x\n")
  (tmp_path / "adir").mkdir()
  with pytest.raises(DataError, match=r"adir: is a directory"):
    read_parallel(src, tmp_path / "adir")


def test_empty_file(tmp_path):
  src, tgt = _write(tmp_path / "a.en", b""), _write(tmp_path / "a.de", b"")
  with pytest.raises(DataError, match=r"a\.en: file is empty"):
    read_parallel(src, tgt)


def test_only_blank_lines(tmp_path):
  src, tgt = _write(tmp_path / "a.en", b" \n\n"), _write(tmp_path / "a.de", b"x\ny\n")
  with pytest.raises(DataError, match=r"a\.en.*a\.de.*no non-blank"):
    read_parallel(src, tgt)


def test_invalid_utf8_names_file_and_line(tmp_path):
  src = _write(tmp_path / "a.en", b"one\ntwo\nth\xffree\nfour\n")
  tgt = _write(tmp_path / "a.de", b"eins\nzwei\ndrei\nvier\n")
  with pytest.raises(DataError, match=r"a\.en:3: line 3 is not valid UTF-8"):
    read_parallel(src, tgt)


def test_line_counts_differ(tmp_path):
  src = _write(tmp_path / "a.en", b"one\ntwo\nthree\n")
  tgt = _write(tmp_path / "a.de", b"eins\nzwei\n")
  with pytest.raises(DataError) as e:
    read_parallel(src, tgt)
  assert all(s in str(e.value) for s in (str(src), str(tgt), "3 lines", "has 2"))


def test_blank_pairs_are_dropped_and_counted(tmp_path):
  src = _write(tmp_path / "a.en", b"one\n\nthree\nfour\n \t\nsix\n")
  tgt = _write(tmp_path / "a.de", b"eins\nzwei\n\nvier\nfunf\nsechs\n")
  text = read_parallel(src, tgt)
  assert (text.src, text.tgt) == (["one", "four", "six"], ["eins", "vier", "sechs"])
  assert text.n_blank_dropped == 3


def test_multi30k_train_reads_cleanly():
  text = read_parallel(MULTI30K / "train.en", MULTI30K / "train.de")
  assert len(text.src) == len(text.tgt) == 29000 and text.n_blank_dropped == 0
  assert not [s for s in text.src + text.tgt if s != s.strip()]  # 40 train.de lines had spaces


# -- encode_parallel ----------------------------------------------------------------------------

def test_too_long_pairs_are_dropped_not_truncated():
  text = ParallelText(src=["abc", "abcdef", "ab", "a", "abcde"],
                      tgt=["xy", "x", "xyzuvw", "xyzu", "x"],
                      src_path="s", tgt_path="t", n_blank_dropped=0)
  enc = encode_parallel(text, CharTokenizer(), max_len=5)  # 4 characters + EOS still fit
  assert enc.n_too_long == 3
  assert [len(s) for s in enc.src] == [4, 2] and [len(t) for t in enc.tgt] == [3, 5]
  assert all(a.dtype == np.int32 and a[-1] == EOS_ID for a in enc.src + enc.tgt)
  assert encode_parallel(text, CharTokenizer(), max_len=0).n_too_long == 0


# -- BucketedBatches ----------------------------------------------------------------------------

def _synthetic(n: int, seed: int = 0, max_len: int = 60) -> Encoded:
  """Pairs with skewed lengths in [2, max_len]; src i starts with FIRST_ID + i."""
  rng = np.random.default_rng(seed)
  ls = np.clip(rng.gamma(4.0, 4.0, n).astype(int) + 2, 2, max_len)
  lt = np.clip(ls + rng.integers(-3, 4, n), 1, max_len)
  src = [np.r_[FIRST_ID + i, rng.integers(4, 9, ls[i] - 2), EOS_ID].astype(np.int32)
         for i in range(n)]
  tgt = [np.r_[rng.integers(4, 9, lt[i] - 1), EOS_ID].astype(np.int32) for i in range(n)]
  return Encoded(src=src, tgt=tgt, n_too_long=0)


def _recover(data: Encoded, batches) -> list[int]:
  """Pair index of every real row, checking each row's contents; asserts all-PAD rows are PAD."""
  seen = []
  for b in batches:
    for r in range(b["src"].shape[0]):
      if b["src"][r, 0] == PAD_ID:
        assert not b["src"][r].any() and not b["tgt_in"][r].any()
        assert not b["tgt_out"][r].any()
        continue
      i = int(b["src"][r, 0]) - FIRST_ID
      s, t = data.src[i], data.tgt[i]
      np.testing.assert_array_equal(b["src"][r], np.pad(s, (0, b["src"].shape[1] - len(s))))
      np.testing.assert_array_equal(b["tgt_out"][r],
                                    np.pad(t, (0, b["tgt_out"].shape[1] - len(t))))
      seen.append(i)
  return seen


SETTINGS = [dict(tokens_per_batch=256), dict(tokens_per_batch=200, batch_multiple=4),
            dict(tokens_per_batch=1000, max_rows=8), dict(tokens_per_batch=64, min_batches=1)]


@pytest.mark.parametrize("kw", SETTINGS)
@pytest.mark.parametrize("shuffle", [True, False])
def test_every_pair_once_per_epoch(kw, shuffle):
  data = _synthetic(600)
  bb = BucketedBatches(data, boundaries=BOUNDARIES, seed=3, shuffle=shuffle, **kw)
  for epoch in (0, 1):
    batches = list(bb.epoch(epoch))
    assert len(batches) == bb.num_batches
    assert sorted(_recover(data, batches)) == list(range(600))


@pytest.mark.parametrize("kw", SETTINGS)
def test_shapes_and_token_budget(kw):
  bb = BucketedBatches(_synthetic(600), boundaries=BOUNDARIES, seed=0, **kw)
  seen = set()
  for b in bb.epoch(0):
    (rows, S), (rows_t, T) = b["src"].shape, b["tgt_out"].shape
    assert rows == rows_t and b["tgt_in"].shape == (rows, T)
    assert all(a.dtype == np.int32 for a in b.values())
    assert S in BOUNDARIES and T in BOUNDARIES
    assert rows % kw.get("batch_multiple", 1) == 0 and rows <= (kw.get("max_rows") or rows)
    if rows > kw.get("batch_multiple", 1):
      assert rows * T <= kw["tokens_per_batch"]
    seen.add((rows, S, T))
  assert sorted(seen) == bb.shapes
  assert len(bb.shapes) <= len(bb.buckets)


def test_merging_reduces_shapes():
  data = _synthetic(600)
  n_shapes = [len(BucketedBatches(data, tokens_per_batch=256, boundaries=BOUNDARIES, seed=0,
                                  min_batches=m).shapes) for m in (1, 4)]
  assert n_shapes[1] < n_shapes[0]


def test_order_depends_on_seed_and_epoch():
  data = _synthetic(400)

  def order(seed, epoch, shuffle=True):
    bb = BucketedBatches(data, tokens_per_batch=256, boundaries=BOUNDARIES, seed=seed,
                         shuffle=shuffle)
    return _recover(data, bb.epoch(epoch))

  assert order(0, 0) == order(0, 0)
  assert order(0, 0) != order(0, 1)
  assert order(0, 0) != order(1, 0)
  assert order(0, 0, shuffle=False) == order(0, 5, shuffle=False) == order(1, 0, shuffle=False)


def test_batches_of_different_shapes_are_interleaved():
  bb = BucketedBatches(_synthetic(400), tokens_per_batch=256, boundaries=BOUNDARIES, seed=0)
  shapes = [[b["src"].shape + b["tgt_out"].shape for b in bb.epoch(e)] for e in (0, 1)]
  assert shapes[0] != shapes[1]  # not one fixed key order
  assert shapes[0] != sorted(shapes[0]) and shapes[0] != sorted(shapes[0], reverse=True)


@pytest.mark.parametrize("start", [0, 1, 7, 20, 33])
def test_resume_sees_the_same_stream(start):
  bb = BucketedBatches(_synthetic(300), tokens_per_batch=256, boundaries=BOUNDARIES, seed=1)
  n = 2 * bb.num_batches + 5  # crosses two epoch boundaries
  assert 10 < bb.num_batches < 30
  full = list(itertools.islice(bb.iterate(), n))
  resumed = list(itertools.islice(bb.iterate(start_step=start), n - start))
  assert len(resumed) == n - start
  for a, b in zip(full[start:], resumed):
    assert all(np.array_equal(a[k], b[k]) for k in ("src", "tgt_in", "tgt_out"))


def test_tgt_in_is_tgt_out_shifted_right_with_bos():
  data = _synthetic(300)
  bb = BucketedBatches(data, tokens_per_batch=256, boundaries=BOUNDARIES, seed=0,
                       shuffle=False)
  n_pad_rows = 0
  for b in bb.epoch(0):
    for tin, tout in zip(b["tgt_in"], b["tgt_out"]):
      L = int(np.sum(tout != PAD_ID))
      if L == 0:
        n_pad_rows += 1
        assert not tin.any()
        continue
      assert tout[L - 1] == EOS_ID
      np.testing.assert_array_equal(tin[:L], np.r_[BOS_ID, tout[:L - 1]])
      assert not tin[L:].any()
  assert n_pad_rows > 0  # the test covers all-PAD rows


def test_padding_stats_match_the_batches():
  data = _synthetic(600)
  bb = BucketedBatches(data, tokens_per_batch=256, boundaries=BOUNDARIES, seed=0)
  batches = list(bb.epoch(2))
  stats = bb.padding_stats()
  for side, key in (("src", "src"), ("tgt", "tgt_out")):
    total = sum(b[key].size for b in batches)
    pad = sum(int(np.sum(b[key] == PAD_ID)) for b in batches)
    assert stats[f"{side}_pad_fraction"] == pytest.approx(pad / total)
  assert (stats["num_batches"], stats["num_examples"]) == (len(batches), 600)
  assert stats["num_shapes"] == len({(b["src"].shape + b["tgt_out"].shape[1:])
                                     for b in batches})


@pytest.mark.parametrize("kw, T, rows", [(dict(tokens_per_batch=100), 8, 12),
                                         (dict(tokens_per_batch=100, batch_multiple=5), 8, 10),
                                         (dict(tokens_per_batch=100, max_rows=9), 8, 9),
                                         (dict(tokens_per_batch=100, batch_multiple=4), 64, 4),
                                         (dict(tokens_per_batch=10), 64, 1)])
def test_rows_per_batch(kw, T, rows):
  assert BucketedBatches(_synthetic(20), boundaries=BOUNDARIES, seed=0, **kw).rows(T) == rows


def test_too_long_for_boundaries_names_the_key():
  with pytest.raises(ValueError, match=r"data\.bucket_boundaries.*\b\d+"):
    BucketedBatches(_synthetic(50, max_len=60), tokens_per_batch=256, boundaries=(8, 16),
                    seed=0)
  with pytest.raises(ValueError, match=r"data\.bucket_boundaries"):
    BucketedBatches(_synthetic(5), tokens_per_batch=256, boundaries=(16, 8), seed=0)


@pytest.fixture(scope="module")
def multi30k_train(tmp_path_factory) -> Encoded:
  """Multi30k train encoded with an 8000-piece shared BPE vocabulary (about 1 s)."""
  files = [MULTI30K / "train.en", MULTI30K / "train.de"]
  tok = Tokenizer.train(files, tmp_path_factory.mktemp("spm") / "spm.model", 8000)
  return encode_parallel(read_parallel(*files), tok, max_len=256)


def test_padding_on_multi30k_train(multi30k_train):
  bb = BucketedBatches(multi30k_train, tokens_per_batch=2048, boundaries=BOUNDARIES, seed=0)
  stats = bb.padding_stats()
  print("Multi30k train, 8000 BPE, 2048 tokens/batch:", stats)
  # Observed: tgt 0.051, src 0.099, 35 shapes, 236 batches.
  assert stats["tgt_pad_fraction"] < 0.08 and stats["src_pad_fraction"] < 0.14
  assert stats["num_shapes"] <= 40 and stats["num_examples"] == 29000


# -- BPEDropoutBatches -------------------------------------------------------------------------

N_BPED = 600  # Multi30k train pairs for the BPE-dropout tests


@pytest.fixture(scope="module")
def bped(tmp_path_factory):
  """(text, tokenizer, deterministic BucketedBatches) on the first N_BPED Multi30k pairs, with a
  600-piece vocabulary trained on them (well under a second)."""
  d = tmp_path_factory.mktemp("bped")
  files = []
  for lang in ("en", "de"):
    lines = (MULTI30K / f"train.{lang}").read_text(encoding="utf-8").splitlines()[:N_BPED]
    files.append(_write(d / f"train.{lang}", ("\n".join(lines) + "\n").encode()))
  tok = Tokenizer.train(files, d / "spm.model", 600)
  text = read_parallel(*files)
  det = BucketedBatches(encode_parallel(text, tok, 128), tokens_per_batch=256,
                        boundaries=BOUNDARIES, seed=0)
  return text, tok, det


def _bped(bped, **kw) -> BPEDropoutBatches:
  text, tok, det = bped
  args = dict(keys=det.keys, bpe_dropout=0.1, sides="both", max_len=128, tokens_per_batch=256,
              boundaries=BOUNDARIES, seed=0)
  return BPEDropoutBatches(text, tok, **{**args, **kw})


def _pairs(batch) -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
  """The (source ids, target ids) of each non-PAD row, EOS stripped."""
  out = []
  for s, t in zip(batch["src"], batch["tgt_out"]):
    if t.any():
      out.append((tuple(s[s != PAD_ID][:-1]), tuple(t[t != PAD_ID][:-1])))
  return out


def test_bpe_dropout_resegments_the_same_text_each_epoch(bped):
  text, tok, det = bped
  bb = _bped(bped)
  n = bb.batches_in_epoch(0) + bb.batches_in_epoch(1)
  two_epochs = [p for b in itertools.islice(bb.iterate(), n) for p in _pairs(b)]
  first, second = two_epochs[:N_BPED], two_epochs[N_BPED:]
  assert len(first) == len(second) == N_BPED
  deterministic = {(tuple(tok.encode(s)), tuple(tok.encode(t)))
                   for s, t in zip(text.src, text.tgt)}
  for pairs in (first, second):
    # Every pair decodes to a sentence pair of the corpus, each exactly once per epoch...
    decoded = sorted((tok.decode(list(s)), tok.decode(list(t))) for s, t in pairs)
    assert decoded == sorted((tok.decode(tok.encode(s)), tok.decode(tok.encode(t)))
                             for s, t in zip(text.src, text.tgt))
    # ...in more pieces than deterministic BPE, which most pairs no longer match.
    n_pieces = sum(len(s) + len(t) for s, t in pairs)
    assert n_pieces > 1.05 * sum(len(s) + len(t) for s, t in deterministic)
    assert sum(p in deterministic for p in pairs) < N_BPED // 2
  assert sorted(first) != sorted(second)  # a new segmentation each epoch


@pytest.mark.parametrize("sides", ["both", "src"])
def test_bpe_dropout_keeps_the_batch_shapes_and_resumes_exactly(bped, sides):
  _, _, det = bped
  bb = _bped(bped, sides=sides)
  n = bb.batches_in_epoch(0) + bb.batches_in_epoch(1) + 5  # into epoch 2
  if sides == "both":  # the deterministic run's keys, but for pairs longer than all of them
    assert bb.num_batches > det.num_batches
    for S, T in set(bb.keys) - set(det.keys):
      assert not any(S <= S_key and T <= T_key for S_key, T_key in det.keys)
  full = list(itertools.islice(bb.iterate(), n))
  shapes = {(b["src"].shape[0],) + b["src"].shape[1:] + b["tgt_out"].shape[1:] for b in full}
  # No XLA compile beyond epoch 0's keys (for 'both', the deterministic run's), but for pairs
  # longer than any of them.
  for _, S, T in shapes - set(bb.shapes):
    assert not any(S <= S_key and T <= T_key for S_key, T_key in bb.keys)
  assert len(shapes & set(bb.shapes)) > len(shapes - set(bb.shapes))
  again = _bped(bped, sides=sides)  # a new object: segmentation depends on (seed, epoch, side)
  for start in (0, bb.batches_in_epoch(0) - 1, bb.batches_in_epoch(0) + 3):
    resumed = list(itertools.islice(again.iterate(start_step=start), n - start))
    for a, b in zip(full[start:], resumed):
      assert all(np.array_equal(a[k], b[k]) for k in ("src", "tgt_in", "tgt_out"))
  assert bb.epoch_at(bb.batches_in_epoch(0)) == 1.0
  halfway = bb.batches_in_epoch(0) + bb.batches_in_epoch(1) // 2
  assert bb.epoch_at(halfway) == pytest.approx(1.5, abs=0.01)
  other_seed = _bped(bped, sides=sides, seed=1)
  assert [_pairs(b) for b in itertools.islice(other_seed.iterate(), 3)] != [
      _pairs(b) for b in full[:3]]


def test_bpe_dropout_on_one_side_leaves_the_other_deterministic(bped):
  text, tok, _ = bped
  bb = _bped(bped, sides="src")
  pairs = [p for b in itertools.islice(bb.iterate(), bb.num_batches) for p in _pairs(b)]
  targets = {tuple(tok.encode(t)) for t in text.tgt}
  sources = {tuple(tok.encode(s)) for s in text.src}
  assert all(t in targets for _, t in pairs)
  assert sum(s in sources for s, _ in pairs) < N_BPED // 2
  stats = bb.padding_stats()
  assert stats["bpe_dropout_sides"] == "src"
  assert stats["src_mean_len"] > np.mean([len(tok.encode(s)) + 1 for s in text.src])
  tgt_mean_len = np.mean([len(tok.encode(t)) + 1 for t in text.tgt])
  assert stats["tgt_mean_len"] == pytest.approx(tgt_mean_len)


def test_bpe_dropout_refuses_bad_arguments(bped):
  for kw, named in ((dict(bpe_dropout=0.0), "data.bpe_dropout"),
                    (dict(bpe_dropout=1.0), "data.bpe_dropout"),
                    (dict(sides="source"), "data.bpe_dropout_sides")):
    with pytest.raises(ValueError, match=named):
      _bped(bped, **kw)


# -- batch_sentences ----------------------------------------------------------------------------

@pytest.mark.parametrize("batch_size", [1, 4, 7, 64])
def test_batch_sentences_restores_input_order(batch_size):
  src = _synthetic(50).src + [np.array([EOS_ID], np.int32)] * 3  # empty sentences: just EOS
  batches = batch_sentences(src, batch_size, BOUNDARIES)
  assert len(batches) == math.ceil(len(src) / batch_size)
  restored = [None] * len(src)
  for ids, idx in batches:
    assert ids.dtype == np.int32 and ids.shape[0] == batch_size and idx.shape == (batch_size,)
    assert ids.shape[1] in BOUNDARIES
    for row, i in zip(ids, idx):
      if i < 0:
        assert not row.any()
      else:
        restored[i] = row[row != PAD_ID]
  for a, b in zip(restored, src):
    np.testing.assert_array_equal(a, b)
  widths = [ids.shape[1] for ids, _ in batches]
  assert widths == sorted(widths)  # sorted by length: short batches stay narrow


def test_lowercase_reaches_the_vocabulary_the_training_pairs_and_the_sources(tiny_data, tmp_path):
  from conftest import tiny_config
  from transformer_jax import evaluate
  from transformer_jax import train as train_lib
  config = tiny_config(tiny_data, **{"data.lowercase": True})
  tokenizer, train, val, _ = train_lib.load_data(config, tmp_path, log=lambda *_: None)
  pieces = [tokenizer.decode([i]) for i in range(4, tokenizer.vocab_size)]
  assert not [p for p in pieces if p != p.lower()]  # trained on lowercased text
  assert any(p.isalpha() for p in pieces)
  first = read_parallel(tiny_data["train_src"], tiny_data["train_tgt"])
  assert first.src[0] != first.src[0].lower()  # the file is cased ...
  assert tokenizer.decode(list(train.src[0][:-1])) == first.src[0].lower()  # ... the pairs not
  assert tokenizer.decode(list(val.tgt[0][:-1])) == read_parallel(
      tiny_data["val_src"], tiny_data["val_tgt"]).tgt[0].lower()
  assert evaluate.decode_options(config)["lowercase"] is True
  assert evaluate.decode_options(tiny_config(tiny_data))["lowercase"] is False
