"""Shared source-target subword vocabulary (paper Section 5.1), backed by SentencePiece.

The paper encodes WMT14 EN-DE with byte-pair encoding into "a shared source-target vocabulary of
about 37000 tokens" (Section 5.1). Here SentencePiece does the work: `Tokenizer.train` learns one
BPE model on the union of both languages' training files, and the same model encodes both sides,
which is what lets the embedding matrices be shared (Section 3.4).

Special ids are fixed so the rest of the code can use them as constants:
PAD_ID=0 (padding; masked out of attention and the loss), UNK_ID=1, BOS_ID=2 (first decoder
input, the "shifted right" of Section 3.1), EOS_ID=3 (appended to every source and target).

Files: `model_path` (e.g. `workdir/spm.model`) and, next to it, the human-readable `spm.vocab`.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Sequence

import numpy as np
import sentencepiece as spm
from sentencepiece import sentencepiece_model_pb2

MODEL_TYPES = ("bpe", "unigram")  # config.data.vocab_model: the paper's BPE, or Kudo (2018)

PAD_ID, UNK_ID, BOS_ID, EOS_ID = 0, 1, 2, 3
NUM_SPECIAL = 4  # ids 0..3 above; the learned pieces start at id 4
WHITESPACE = "\u2581"  # SentencePiece's mark for a space, the start of a word's first piece


def _sample_lines(files: Sequence[Path], k: int, seed: int) -> list[str]:
  """k lines drawn without replacement from all `files` together, fixed by `seed`.

  Done here rather than by SentencePiece's `input_sentence_size`, whose sample differs from
  process to process even after `set_random_generator_seed` (sentencepiece 0.2.x).
  Two passes over the files: count lines, then keep the chosen ones (one bool per line).
  """
  counts = []
  for f in files:
    with open(f, "rb") as fh:
      counts.append(sum(1 for _ in fh))
  total = sum(counts)
  chosen = np.zeros(total, dtype=bool)
  chosen[np.random.default_rng(seed).choice(total, size=min(k, total), replace=False)] = True
  lines, offset = [], 0
  for f, n in zip(files, counts):
    with open(f, encoding="utf-8", newline="\n") as fh:  # split on LF only, as above
      lines += [line.rstrip("\r\n") for line, keep in zip(fh, chosen[offset:offset + n])
                if keep]
    offset += n
  return lines


def _sample_sentences(sentences: Sequence[str], k: int, seed: int) -> list[str]:
  """k of `sentences` drawn without replacement (in their order), fixed by `seed`; the same
  draw as `_sample_lines` makes from files holding these lines."""
  chosen = np.zeros(len(sentences), dtype=bool)
  chosen[np.random.default_rng(seed).choice(len(sentences), size=min(k, len(sentences)),
                                            replace=False)] = True
  return [s for s, keep in zip(sentences, chosen) if keep]


def _words(normalized: str) -> list[str]:
  """SentencePiece-normalized text -> its words, each but a leading fragment starting with the
  whitespace mark; no BPE merge crosses a word's start."""
  parts = normalized.split(WHITESPACE)
  return ([parts[0]] if parts[0] else []) + [WHITESPACE + w for w in parts[1:]]


def _strip_specials(ids: Sequence[int]) -> list[int]:
  """Cut at the first EOS and drop PAD/BOS, so model output decodes to just the sentence."""
  out = []
  for i in np.asarray(ids, dtype=np.int64).reshape(-1).tolist():
    if i == EOS_ID:
      break
    if i not in (PAD_ID, BOS_ID):
      out.append(i)
  return out


class Tokenizer:
  """Shared source-target subword vocabulary (paper Section 5.1: shared BPE).

  Build one with `train`, `load` or `load_or_train`; the constructor takes an already loaded
  `sentencepiece.SentencePieceProcessor`.
  """

  def __init__(self, processor: spm.SentencePieceProcessor, model_path: str | Path = ""):
    self._sp = processor
    self.model_path = str(model_path)
    self._merges: dict[str, tuple[float, int]] | None = None  # built by sample_batch

  # -- construction ---------------------------------------------------------------------------

  @classmethod
  def train(cls, files: Sequence[str | Path], model_path: str | Path, vocab_size: int, *,
            model_type: str = "bpe", max_sentences: int = 0, seed: int = 0,
            sentences: Sequence[str] | None = None) -> "Tokenizer":
    """Trains a SentencePiece model on the union of `files` and writes it to `model_path`.

    Args:
      files: plain-text files, one sentence per line (pass both languages' training sides).
        Ignored when `sentences` is given.
      model_path: where the model goes; must end in `.model`. The `.vocab` file is written
        next to it. Parent folders are created. Both files are written under a temporary name
        and then renamed, so an interrupted run never leaves a half-written model behind.
      vocab_size: total vocabulary size C, the 4 special ids included (paper: ~37000 on WMT14).
      model_type: SentencePiece model type (config.data.vocab_model), one of MODEL_TYPES:
        "bpe" (Section 5.1, Sennrich et al. 2016) or "unigram" (the unigram language model of
        Kudo 2018; not in the paper).
      max_sentences: if > 0, train on a random sample of this many lines of all `files`
        together (drawn here, not by SentencePiece, so the sample is fixed by `seed`).
      seed: seeds that sample; unused when max_sentences <= 0.
      sentences: train on these in-memory sentences instead of `files` (e.g. both sides of
        a TFDS training split); `max_sentences` and `seed` sample them the same way.

    The result is deterministic for the same files and arguments.

    Raises:
      ValueError: `vocab_size` <= 4, `model_type` not in MODEL_TYPES, `model_path` not ending
        in `.model`, or SentencePiece cannot build `vocab_size` pieces from this data (the
        message says whether to raise or lower `data.vocab_size`).
      FileNotFoundError: one of `files` does not exist (named in the message).
    """
    if vocab_size <= NUM_SPECIAL:
      raise ValueError(f"data.vocab_size (vocab_size) must be > {NUM_SPECIAL} "
                       f"(the special ids PAD, UNK, BOS, EOS), got {vocab_size}")
    if model_type not in MODEL_TYPES:
      raise ValueError(f"data.vocab_model must be one of {list(MODEL_TYPES)}, got {model_type!r}")
    model_path = Path(model_path)
    if model_path.suffix != ".model":
      raise ValueError(f"model_path must end in '.model', got {str(model_path)!r}")
    files = [] if sentences is not None else [Path(f) for f in files]
    if sentences is None and not files:
      raise ValueError("Tokenizer.train needs at least one input file")
    if sentences is not None and not sentences:
      raise ValueError("Tokenizer.train got an empty list of sentences")
    for f in files:
      if not f.is_file():
        raise FileNotFoundError(f"tokenizer training file not found: {str(f)!r}")
    model_path.parent.mkdir(parents=True, exist_ok=True)
    tmp_prefix = model_path.with_name(f".{model_path.stem}.tmp{os.getpid()}")
    if sentences is not None:
      sample = _sample_sentences(sentences, max_sentences, seed) if max_sentences > 0 else sentences
      source = dict(sentence_iterator=iter(sample))
      files = [f"<{len(sample)} sentences>"]  # for error messages
    elif max_sentences > 0:
      source = dict(sentence_iterator=iter(_sample_lines(files, max_sentences, seed)))
    else:
      source = dict(input=[str(f) for f in files])
    try:
      spm.SentencePieceTrainer.train(
          **source, model_prefix=str(tmp_prefix),
          vocab_size=vocab_size, model_type=model_type, character_coverage=1.0,
          pad_id=PAD_ID, unk_id=UNK_ID, bos_id=BOS_ID, eos_id=EOS_ID,
          minloglevel=2)  # errors only: no per-step console output
    except RuntimeError as e:
      for suffix in (".model", ".vocab"):
        Path(str(tmp_prefix) + suffix).unlink(missing_ok=True)
      if "Vocabulary size" in str(e):
        fix = "raise" if "smaller than required_chars" in str(e) else "lower"
        raise ValueError(
            f"SentencePiece cannot build a vocabulary of {vocab_size} pieces from "
            f"{[str(f) for f in files]}; {fix} data.vocab_size. ({e})") from e
      raise RuntimeError(f"SentencePiece training failed on "
                         f"{[str(f) for f in files]}: {e}") from e
    os.replace(str(tmp_prefix) + ".vocab", model_path.with_suffix(".vocab"))
    os.replace(str(tmp_prefix) + ".model", model_path)
    return cls.load(model_path)

  @classmethod
  def load(cls, model_path: str | Path) -> "Tokenizer":
    """Loads a trained model. Raises FileNotFoundError naming `model_path` if it is missing."""
    model_path = Path(model_path)
    if not model_path.is_file():
      raise FileNotFoundError(f"SentencePiece model not found: {str(model_path)!r}")
    return cls(spm.SentencePieceProcessor(model_file=str(model_path)), model_path)

  @classmethod
  def load_or_train(cls, model_path: str | Path, files: Sequence[str | Path],
                    vocab_size: int, *, model_type: str = "bpe", **kw) -> "Tokenizer":
    """Reuses the model at `model_path` if it exists, else trains one (see `train` for `kw`).

    Only the vocabulary size and model type of a reused model are checked, not the files it
    was trained on.

    Raises:
      ValueError: the existing model's vocabulary size or model type differs from `vocab_size`
        or `model_type` (both values named), plus everything `train` raises.
    """
    if Path(model_path).is_file():
      tok = cls.load(model_path)
      for key, have, want in (("vocab_size", tok.vocab_size, vocab_size),
                              ("vocab_model", tok.model_type, model_type)):
        if have != want:
          raise ValueError(
              f"existing tokenizer {str(model_path)!r} has {key} {have!r} but data.{key} is "
              f"{want!r}; delete the file or change the config")
      return tok
    return cls.train(files, model_path, vocab_size, model_type=model_type, **kw)

  # -- use ------------------------------------------------------------------------------------

  @property
  def model_type(self) -> str:
    """The SentencePiece model type, lowercased: "bpe", "unigram" (or "word", "char")."""
    proto = sentencepiece_model_pb2.ModelProto.FromString(self._sp.serialized_model_proto())
    return sentencepiece_model_pb2.TrainerSpec.ModelType.Name(proto.trainer_spec.model_type).lower()

  @property
  def vocab_size(self) -> int:
    """C, the number of ids (special ids included); embeddings need C rows."""
    return self._sp.vocab_size()

  def encode(self, text: str) -> list[int]:
    """Text -> subword ids (no BOS/EOS added; `data.encode_parallel` appends EOS)."""
    return self._sp.encode(text)

  def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
    """`encode` for many texts at once, using SentencePiece's multi-threaded batch path."""
    return self._sp.encode(list(texts))

  def sample_batch(self, texts: Sequence[str], *, bpe_dropout: float, seed: int
                   ) -> list[list[int]]:
    """`encode_batch` with BPE-dropout, Algorithm 1 of Provilkov et al. 2020 ("BPE-Dropout:
    Simple and Effective Subword Regularization"): each word starts as characters; at every
    step each applicable merge is left out with probability `bpe_dropout`, the best remaining
    one (highest SentencePiece score = earliest merge, leftmost on ties) is applied, and the
    word is done when none remains. The pieces are the vocabulary's own; decoding them gives
    the same text as `encode_batch`'s, and at `bpe_dropout` 0 the ids are `encode_batch`'s
    (tests/test_tokenizer.py checks this on Multi30k train).

    Not SentencePiece's own sampler (`encode(enable_sampling=True, alpha=p)`) for two reasons,
    measured with sentencepiece 0.2.3: its BPE sampler drops a skipped merge for good instead
    of for one step, which makes segmentations much finer than the paper's (Multi30k train at
    a 6000-piece vocabulary and p = 0.1: 39% more pieces than deterministic BPE, against 21%
    here); and its random generator cannot be seeded reproducibly across processes (the same
    seed gave different segmentations in every new process), which would break resuming.

    Args:
      texts: sentences to segment.
      bpe_dropout: probability in [0, 1) of leaving out each applicable merge at each step.
      seed: seeds the draws; same seed, texts and vocabulary, same ids, in any process.
        Pure Python: about 1.5 s per 29,000 Multi30k sentences on the project's 2-core CPU.

    Raises:
      ValueError: bpe_dropout outside [0, 1), or the vocabulary is not BPE (merges to drop).
    """
    if not 0.0 <= bpe_dropout < 1.0:
      raise ValueError(f"data.bpe_dropout must be in [0, 1), got {bpe_dropout}")
    if self._merges is None:  # piece -> (score, id) for every piece a merge can produce
      if self.model_type != "bpe":
        raise ValueError(f"data.bpe_dropout needs a BPE vocabulary, {self.model_path!r} is "
                         f"{self.model_type!r}")
      self._merges = {self._sp.id_to_piece(i): (self._sp.get_score(i), i)
                      for i in range(self.vocab_size)
                      if not (self._sp.is_control(i) or self._sp.is_unknown(i))}
    draw = random.Random(seed).random
    out = []
    for text in texts:
      ids = []
      for word in _words(self._sp.normalize(text)):
        ids.extend(self._merges.get(piece, (0.0, UNK_ID))[1]
                   for piece in self._dropout_merges(word, bpe_dropout, draw))
      out.append(ids)
    return out

  def _dropout_merges(self, word: str, p: float, draw) -> list[str]:
    """One word's pieces under BPE-dropout (see `sample_batch`)."""
    pieces = list(word)
    while len(pieces) > 1:
      best, at = None, -1
      for i in range(len(pieces) - 1):
        merged = self._merges.get(pieces[i] + pieces[i + 1])
        if merged is None or draw() < p:
          continue
        if best is None or merged[0] > best:
          best, at = merged[0], i
      if at < 0:
        return pieces
      pieces[at:at + 2] = [pieces[at] + pieces[at + 1]]
    return pieces

  def decode(self, ids: Sequence[int]) -> str:
    """Ids (list or 1-D int array) -> detokenized text.

    Stops at the first EOS and drops PAD and BOS, so raw model output can be passed in.

    Raises:
      ValueError: an id outside [0, vocab_size).
    """
    return self.decode_batch([ids])[0]

  def decode_batch(self, ids_batch: Sequence[Sequence[int]]) -> list[str]:
    """`decode` for each row of `ids_batch` (list of lists, or a [B, T] int array)."""
    rows = [_strip_specials(ids) for ids in ids_batch]
    if not rows:
      return []
    for row in rows:
      bad = [i for i in row if not 0 <= i < self.vocab_size]
      if bad:
        raise ValueError(f"token id {bad[0]} outside the vocabulary [0, {self.vocab_size})")
    return self._sp.decode(rows)
