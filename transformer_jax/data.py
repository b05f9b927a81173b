"""Parallel text -> padded, length-bucketed int32 batches (paper Section 5.1).

Pipeline: `read_parallel` (two line-aligned UTF-8 files) -> `encode_parallel` (subword ids, EOS
appended, over-long pairs dropped) -> `BucketedBatches` (training/eval batches of about
`tokens_per_batch` target positions, "batched together by approximate sequence length",
Section 5.1). `BPEDropoutBatches` re-segments the training text every epoch (BPE-dropout, a
switch, not the paper's) and batches each epoch the same way. `batch_sentences` batches source
sentences for decoding.

Shapes: B rows per batch, S source positions, T target positions. All arrays are int32 with
PAD_ID (0) as padding. Every distinct (B, S, T) costs one XLA compile, so S and T are always taken
from a small fixed list of `boundaries` and B is a function of T.
"""

from __future__ import annotations

import dataclasses
import threading
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np

from transformer_jax.tokenizer import BOS_ID, EOS_ID, PAD_ID

Key = tuple[int, int]  # (S, T) bucket


class DataError(ValueError):
  """Bad input data; the message names the file and line."""


@dataclasses.dataclass
class ParallelText:
  """Line-aligned sentence pairs, blank pairs already removed."""
  src: list[str]
  tgt: list[str]
  src_path: str
  tgt_path: str
  n_blank_dropped: int  # pairs where either side was blank/whitespace-only (dropped)


def read_lines(path: str | Path, *, allow_empty: bool = False) -> list[str]:
  """Strictly decoded, `.strip()`-ed lines of a UTF-8 file (a leading BOM is dropped).

  Raises:
    DataError: the file is missing, a directory, empty (unless `allow_empty`), or has a line
      that is not valid UTF-8 (file and 1-based line number named).
  """
  path = Path(path)
  if not path.exists():
    raise DataError(f"{path}: file not found (expected a UTF-8 text file)")
  if path.is_dir():
    raise DataError(f"{path}: is a directory (expected a UTF-8 text file)")
  data = path.read_bytes()
  if not data and not allow_empty:
    raise DataError(f"{path}: file is empty (0 bytes; expected one sentence per line)")
  return decode_lines(data, str(path))


def decode_lines(data: bytes, name: str) -> list[str]:
  """Strictly decoded, `.strip()`-ed lines of UTF-8 bytes (a leading BOM is dropped).

  Raises:
    DataError: a line is not valid UTF-8 (`name` and the 1-based line number named).
  """
  raw = data.split(b"\n")
  if raw[-1] == b"":  # the final line terminator does not start another line
    raw.pop()
  lines = []
  for n, line in enumerate(raw, start=1):
    try:
      text = line.decode("utf-8", errors="strict")
    except UnicodeDecodeError as e:
      raise DataError(f"{name}:{n}: line {n} is not valid UTF-8 (byte {e.start} of the "
                      f"line: {e.reason}; expected UTF-8 text)") from None
    lines.append(text.lstrip("\ufeff").strip() if n == 1 else text.strip())
  return lines


def read_parallel(src_path: str | Path, tgt_path: str | Path) -> ParallelText:
  """Reads two line-aligned files (one sentence per line, UTF-8, LF or CRLF).

  Each line is `.strip()`-ed (Multi30k train.de has 40 lines with trailing spaces). A pair where
  either side is blank is dropped and counted in `n_blank_dropped`.

  Raises:
    DataError: a file is missing, a directory, or empty (0 bytes, or nothing left after dropping
      blank pairs); a line is not valid UTF-8 (file and 1-based line number named); or the two
      files have different line counts (both files and both counts named).
  """
  src, tgt = read_lines(src_path), read_lines(tgt_path)
  if len(src) != len(tgt):
    raise DataError(f"line counts differ: {src_path} has {len(src)} lines but {tgt_path} "
                    f"has {len(tgt)} (expected line-aligned parallel files)")
  pairs = [(s, t) for s, t in zip(src, tgt) if s and t]
  if not pairs:
    raise DataError(f"{src_path} / {tgt_path}: no non-blank sentence pairs "
                    f"(expected one sentence per line)")
  return ParallelText(src=[s for s, _ in pairs], tgt=[t for _, t in pairs],
                      src_path=str(src_path), tgt_path=str(tgt_path),
                      n_blank_dropped=len(src) - len(pairs))


def model_text(config, text: ParallelText) -> ParallelText:
  """`text` as the model trains on it: both sides lowercased by `str.lower` when
  `config.data.lowercase` (a config.json written before the key existed: cased), else `text`."""
  if not config.data.get("lowercase", False):
    return text
  return dataclasses.replace(text, src=[s.lower() for s in text.src],
                             tgt=[t.lower() for t in text.tgt])


def read_split(config, split: str, log=None) -> ParallelText:
  """The pairs of `split` ('train' | 'val' | 'test') from `config.data.source`.

  'text': the files of `config.split_paths` (embedded corpus where a path is empty).
  'tfds': `tfds_data.read_split` (TensorFlow Datasets), unless both `{split}_src` and
  `{split}_tgt` are set, in which case those files are read (e.g. a local newstest2014).

  Raises:
    ConfigError: `config.data.source` is neither 'text' nor 'tfds'; only one of the two paths
      of a TFDS split is set; or see `split_paths`.
    DataError: see `read_parallel` and `tfds_data.read_split`.
  """
  from transformer_jax import config as config_lib
  d = config.data
  source = d.get("source", "text")  # workdirs written before the key existed are 'text'
  if source not in ("text", "tfds"):
    raise config_lib.ConfigError(f"config.data.source must be 'text' or 'tfds', got {source!r}")
  given = [f"{split}_{side}" for side in ("src", "tgt") if d[f"{split}_{side}"]]
  if source == "tfds" and len(given) == 1:
    raise config_lib.ConfigError(f"config.data.{given[0]} is set but not its other side; with "
                                 "config.data.source='tfds' set both paths or neither")
  if source == "tfds" and not given:
    from transformer_jax import tfds_data
    return tfds_data.read_split(config, split, log=log)
  return read_parallel(*config_lib.split_paths(config, split))


@dataclasses.dataclass
class Encoded:
  """Subword ids per sentence pair, each int32 array ending with EOS_ID."""
  src: list[np.ndarray]
  tgt: list[np.ndarray]
  n_too_long: int  # pairs dropped because len(src) or len(tgt) (EOS included) > max_len
  text: ParallelText | None = None  # the text, where kept to be re-segmented (BPE-dropout)


def encode_parallel(text: ParallelText, tokenizer, max_len: int) -> Encoded:
  """Tokenizes both sides with the shared vocabulary and appends EOS_ID.

  Args:
    text: output of `read_parallel`.
    tokenizer: anything with `encode_batch(list[str]) -> list[list[int]]` (a `Tokenizer`).
    max_len: pairs with more than `max_len` tokens (EOS included) on either side are dropped
      and counted in `n_too_long`, never truncated. `max_len <= 0` keeps every pair.
  """
  return _append_eos(tokenizer.encode_batch(text.src), tokenizer.encode_batch(text.tgt), max_len)


def _append_eos(src_ids: Sequence[Sequence[int]], tgt_ids: Sequence[Sequence[int]],
                max_len: int) -> Encoded:
  """Pairs of id lists -> `Encoded` (EOS appended, pairs over `max_len` dropped and counted)."""
  src, tgt, n_too_long = [], [], 0
  for s, t in zip(src_ids, tgt_ids):
    if max_len > 0 and (len(s) + 1 > max_len or len(t) + 1 > max_len):
      n_too_long += 1
      continue
    src.append(np.asarray(list(s) + [EOS_ID], dtype=np.int32))
    tgt.append(np.asarray(list(t) + [EOS_ID], dtype=np.int32))
  return Encoded(src=src, tgt=tgt, n_too_long=n_too_long)


def _check_boundaries(boundaries: Sequence[int]) -> np.ndarray:
  b = np.asarray(list(boundaries), dtype=np.int64)
  if b.ndim != 1 or b.size == 0 or b[0] < 1 or np.any(np.diff(b) <= 0):
    raise ValueError(f"data.bucket_boundaries must be a non-empty, strictly increasing list "
                     f"of positive ints, got {list(boundaries)}")
  return b


def _ceil_to(length: int, boundaries: np.ndarray) -> int:
  """Smallest boundary >= length; ValueError naming data.bucket_boundaries if none."""
  i = int(np.searchsorted(boundaries, length, side="left"))
  if i == boundaries.size:
    raise ValueError(f"a sentence of {length} tokens is longer than the largest of "
                     f"data.bucket_boundaries ({int(boundaries[-1])}); add a larger boundary "
                     f"or lower data.max_len")
  return int(boundaries[i])


def _visit_order(key: Key) -> tuple[int, int, int]:
  """Keys are visited in increasing (S + T, T, S) order (see `BucketedBatches`)."""
  return key[0] + key[1], key[1], key[0]


def _pad_rows(seqs: Sequence[np.ndarray | None], width: int) -> np.ndarray:
  """[len(seqs), width] int32, PAD-filled; None gives an all-PAD row."""
  out = np.full((len(seqs), width), PAD_ID, dtype=np.int32)
  for r, s in enumerate(seqs):
    if s is not None:
      out[r, :len(s)] = s
  return out


class BucketedBatches:
  """Batches of roughly `tokens_per_batch` target tokens, grouped by length (paper Section 5.1:
  'Sentence pairs were batched together by approximate sequence length').

  The paper's batches hold ~25000 source and ~25000 target tokens; here the budget counts padded
  target positions: B * T <= tokens_per_batch (unless B is forced up to `batch_multiple`).
  Every distinct batch shape costs an XLA compile, so shapes come from a small fixed set.

  Keys: each pair's own key is (S, T) = (smallest boundary >= len(src), smallest boundary >=
  len(tgt)), EOS included. Keys are visited in increasing (S + T, T, S) order, so a key comes
  before every larger one. The cheapest larger key of (S, T) is the existing key (S', T') with
  S' >= S, T' >= T that adds the least padding, (S' - S) + (T' - T), ties to smaller T', S'.

  1. Merge (once): a key holding fewer than `min_batches` * B(T) pairs moves all of them into
     its cheapest larger key (which is visited later and may move on in turn). A key with no
     larger key (a corner of the length distribution) stays, however small.
  2. Carry (every epoch): each key shuffles its pairs (its own plus any carried in), cuts them
     into full batches of B(T) rows and carries the leftover (< B(T) pairs) into its cheapest
     larger key. Only keys without a larger key have a last batch that is partly all-PAD rows.
     Which pairs are carried changes from epoch to epoch; how many does not, so every epoch has
     the same `num_batches` batches with the same shapes.

  With `keys` given (the keys of another `BucketedBatches`, to keep its batch shapes), step 1
  is instead: each pair goes to the cheapest given key that holds its own (S, T); if none does,
  to the corner key (largest given S, largest given T), one extra shape at most; if even that is
  too short, it keeps its own key (a new shape).

  Rows per batch: B(T) = tokens_per_batch // T, capped at `max_rows` (if > 0), rounded down to
  a multiple of `batch_multiple`, and at least `batch_multiple`.

  Randomness: epoch e uses `np.random.default_rng((seed, e))` to shuffle each key's pairs and
  then the list of all batches. `shuffle=False` gives one fixed order for evaluation (keys
  ascending, pairs in input order, then pairs carried in).

  Batches are dicts of int32 numpy arrays, PAD_ID padding:
    "src":     [B, S] source ids, EOS included.
    "tgt_in":  [B, T] decoder input: BOS_ID, then the target without its last token (Section
               3.1, "output embeddings are offset by one position"); all PAD in all-PAD rows.
    "tgt_out": [B, T] target ids, EOS included (the labels).

  Attributes: `num_batches` (per epoch), `shapes` (sorted distinct (B, S, T)), `keys` (the
  (S, T) keys that have batches, in visiting order: one per shape), `buckets` (key -> indices
  of the pairs merged into it), `num_merged`, `num_carried` (pairs per epoch).

  Raises (constructor):
    ValueError: no pairs; bad `boundaries` or a pair longer than the largest boundary (both
      naming data.bucket_boundaries); tokens_per_batch < 1; batch_multiple < 1;
      0 < max_rows < batch_multiple; min_batches < 1.
  """

  def __init__(self, data: Encoded, *, tokens_per_batch: int, boundaries: Sequence[int],
               seed: int, shuffle: bool = True, batch_multiple: int = 1, max_rows: int = 0,
               min_batches: int = 4, keys: Sequence[Key] | None = None):
    if not data.src:
      raise ValueError("BucketedBatches got no sentence pairs (all dropped as too long?)")
    if tokens_per_batch < 1:
      raise ValueError(f"data.tokens_per_batch must be >= 1, got {tokens_per_batch}")
    if batch_multiple < 1 or 0 < max_rows < batch_multiple or min_batches < 1:
      raise ValueError(f"need batch_multiple >= 1, max_rows == 0 or >= batch_multiple, "
                       f"min_batches >= 1; got batch_multiple={batch_multiple}, "
                       f"max_rows={max_rows}, min_batches={min_batches}")
    self.src, self.tgt = data.src, data.tgt
    self.seed, self.shuffle = seed, shuffle
    self.tokens_per_batch, self.batch_multiple, self.max_rows = (
        tokens_per_batch, batch_multiple, max_rows)
    self.boundaries = _check_boundaries(boundaries)
    members: dict[Key, list[int]] = {}
    for i, (s, t) in enumerate(zip(self.src, self.tgt)):
      key = (_ceil_to(len(s), self.boundaries), _ceil_to(len(t), self.boundaries))
      members.setdefault(key, []).append(i)
    own_counts = {k: len(v) for k, v in members.items()}
    if keys is None:
      self._order = sorted(members, key=_visit_order)
      for key in list(self._order):  # step 1, merge
        dest = self._cheapest_larger(key)
        if dest is not None and len(members[key]) < min_batches * self.rows(key[1]):
          members[dest].extend(members.pop(key))
          self._order.remove(key)
    else:  # step 1 with the keys given: each own key joins the cheapest given key that fits it
      given = sorted({(int(S), int(T)) for S, T in keys}, key=_visit_order)
      corner = (max(S for S, _ in given), max(T for _, T in given))
      self._order, moved = given, {}
      for key, idx in members.items():
        dest = key if key in given else self._cheapest_larger(key)
        if dest is None:  # fits no given key: the one corner key, or its own if even that is short
          dest = corner if key[0] <= corner[0] and key[1] <= corner[1] else key
        moved.setdefault(dest, []).extend(idx)
      members = moved
      self._order = sorted(members, key=_visit_order)
    self.buckets = {k: np.sort(np.asarray(members[k], dtype=np.int64)) for k in self._order}
    # A key is either kept whole or emptied, so kept keys still hold all their own pairs.
    self.num_merged = len(self.src) - sum(own_counts.get(k, 0) for k in self._order)
    self._dest = {k: self._cheapest_larger(k) for k in self._order}
    self._batches_per_key, self.num_carried = {}, 0
    carried = dict.fromkeys(self._order, 0)
    for key in self._order:  # step 2, carry: counts are the same every epoch
      n, b = len(self.buckets[key]) + carried[key], self.rows(key[1])
      if self._dest[key] is not None:
        carried[self._dest[key]] += n % b
        self.num_carried += n % b
      self._batches_per_key[key] = n // b if self._dest[key] is not None else -(-n // b)
    self.num_batches = sum(self._batches_per_key.values())
    self.keys = [k for k in self._order if self._batches_per_key[k]]
    self.shapes = sorted({(self.rows(t), s, t) for s, t in self.keys})

  def rows(self, T: int) -> int:
    """B, the rows per batch for target bucket length T."""
    r = max(1, self.tokens_per_batch // T)
    if self.max_rows > 0:
      r = min(r, self.max_rows)
    return max(self.batch_multiple, r // self.batch_multiple * self.batch_multiple)

  def _cheapest_larger(self, key: Key) -> Key | None:
    larger = [k for k in self._order if k != key and k[0] >= key[0] and k[1] >= key[1]]
    if not larger:
      return None
    return min(larger, key=lambda k: (k[0] - key[0] + k[1] - key[1], k[1], k[0]))

  def _plan(self, epoch: int) -> list[tuple[Key, np.ndarray]]:
    """One epoch's batches as (key, [B] pair indices with -1 for all-PAD rows)."""
    rng = np.random.default_rng((self.seed, epoch)) if self.shuffle else None
    carried: dict[Key, list[np.ndarray]] = {k: [] for k in self._order}
    plan = []
    for key in self._order:  # a fixed order, so the rng draws are the same on every run
      pool = np.concatenate([self.buckets[key], *carried[key]])
      if rng is not None:
        pool = rng.permutation(pool)
      b, n = self.rows(key[1]), self._batches_per_key[key]
      if self._dest[key] is not None:
        carried[self._dest[key]].append(pool[n * b:])
      padded = np.full(n * b, -1, dtype=np.int64)
      padded[:min(len(pool), n * b)] = pool[:n * b]
      plan.extend((key, chunk) for chunk in padded.reshape(n, b))
    if rng is not None:
      plan = [plan[j] for j in rng.permutation(len(plan))]
    return plan

  def _batch(self, key: Key, idx: np.ndarray) -> dict[str, np.ndarray]:
    S, T = key
    src = _pad_rows([self.src[i] if i >= 0 else None for i in idx], S)  # [B, S]
    tgt_out = _pad_rows([self.tgt[i] if i >= 0 else None for i in idx], T)  # [B, T]
    shifted = np.concatenate(  # [B, T]: BOS, then the target minus its last position
        [np.full((len(idx), 1), BOS_ID, np.int32), tgt_out[:, :-1]], axis=1)
    tgt_in = np.where(tgt_out != PAD_ID, shifted, PAD_ID).astype(np.int32)  # [B, T]
    return {"src": src, "tgt_in": tgt_in, "tgt_out": tgt_out}

  def epoch(self, epoch: int, start: int = 0, rows: Callable[[int], np.ndarray] | None = None
            ) -> Iterator[dict[str, np.ndarray]]:
    """Yields the batches of epoch `epoch` (>= 0) in order, from its batch `start` on; `rows`
    as in `iterate`."""
    for key, idx in self._plan(epoch)[start:]:
      yield self._batch(key, idx if rows is None else idx[rows(len(idx))])

  def iterate(self, start_step: int = 0, rows: Callable[[int], np.ndarray] | None = None
              ) -> Iterator[dict[str, np.ndarray]]:
    """Endless stream over epochs 0, 1, ..., starting at global batch index `start_step`.

    Step n is batch n % num_batches of epoch n // num_batches, so a run resumed at step n
    sees exactly the batches it would have seen without the interruption.

    Args:
      start_step: global batch index to start at.
      rows: if given, `rows(B)` -> int indices of the rows to keep from each [B, ...] batch
        (a host's share in multi-host training: every host draws the same plan and pads
        only its own rows).
    """
    epoch, index = divmod(start_step, self.num_batches)
    while True:
      yield from self.epoch(epoch, index, rows)
      epoch, index = epoch + 1, 0

  def epoch_at(self, step: int) -> float:
    """Epochs done after `step` batches (`step / num_batches`)."""
    return step / self.num_batches

  def padding_stats(self) -> dict:
    """Padding in one epoch's batches (the same for every epoch), all-PAD rows included.

    Returns: src_pad_fraction, tgt_pad_fraction (padded / total positions, in [0, 1)),
    num_shapes, num_batches, num_examples, num_merged, num_carried (see class docstring).
    """
    pos_src = sum(n * self.rows(T) * S for (S, T), n in self._batches_per_key.items())
    pos_tgt = sum(n * self.rows(T) * T for (S, T), n in self._batches_per_key.items())
    return {"src_pad_fraction": 1 - sum(len(s) for s in self.src) / pos_src,
            "tgt_pad_fraction": 1 - sum(len(t) for t in self.tgt) / pos_tgt,
            "num_shapes": len(self.shapes), "num_batches": self.num_batches,
            "num_examples": len(self.src), "num_merged": self.num_merged,
            "num_carried": self.num_carried}


class BPEDropoutBatches:
  """Training batches whose pairs are re-segmented every epoch with BPE-dropout (Provilkov et
  al. 2020, `Tokenizer.sample_batch`): epoch e encodes the training text anew, each applicable
  merge left out with probability `bpe_dropout` at each step, and batches it as
  `BucketedBatches` does (rows, carrying, shuffling). Not in the paper (deterministic BPE,
  Section 5.1); a subword-regularization switch for small corpora (`config.data.bpe_dropout`).
  Dev and test text keep the deterministic segmentation.

  Batch shapes come from a fixed set of keys, so that later epochs bring few new XLA compiles
  (only for pairs longer than every key). With `sides='both'` the keys are the given `keys`
  (those of the deterministic segmentation's `BucketedBatches`): both sides grow together, so
  they still fit. With one side, the ratio of source to target lengths changes and those keys
  would waste positions, so the keys are epoch 0's own, merged as `BucketedBatches` does.
  Measured on Multi30k train at a 6000-piece vocabulary, p = 0.1, 2048-token batches (no
  BPE-dropout: 15.7 / 16.4 pieces per source / target sentence, EOS included, 247 batches, 38
  shapes, 5.5% target and 10.1% source padding): 'both' 18.8 / 19.6 pieces, 300 batches, 39
  shapes in epoch 0 and 3 more over the next 7, 7.0% / 9.5% padding; 'src' 18.8 / 16.4 pieces,
  248 batches, 42 shapes and none more, 5.9% / 9.2% padding. The number of batches varies a
  little from epoch to epoch. Pairs longer than `max_len` in an epoch's segmentation sit that
  epoch out.

  Randomness: the segmentation of epoch e depends only on (`seed`, e, side), the batch order as
  in `BucketedBatches` on (`seed`, e); so a run resumed at step n, in a new process or on
  several hosts, sees the batches it would have seen without the interruption. Epochs are built
  one at a time, under a lock (the input thread and the logging both ask for them).

  Batches, `rows`, `iterate` and `padding_stats` are as in `BucketedBatches`; `num_batches`,
  `shapes` and `padding_stats` describe epoch 0; `keys` are the fixed keys.

  Raises (constructor): ValueError for `bpe_dropout` outside (0, 1), `sides` not 'src', 'tgt'
  or 'both', and everything `BucketedBatches` raises for epoch 0.
  """

  SIDES = ("src", "tgt", "both")

  def __init__(self, text: ParallelText, tokenizer, *, keys: Sequence[Key], bpe_dropout: float,
               sides: str, max_len: int, tokens_per_batch: int, boundaries: Sequence[int],
               seed: int, batch_multiple: int = 1):
    if not 0.0 < bpe_dropout < 1.0:
      raise ValueError(f"data.bpe_dropout must be in (0, 1) for BPEDropoutBatches, got "
                       f"{bpe_dropout}")
    if sides not in self.SIDES:
      raise ValueError(f"data.bpe_dropout_sides must be one of {self.SIDES}, got {sides!r}")
    self.text, self.tokenizer = text, tokenizer
    self.bpe_dropout, self.sides, self.max_len, self.seed = bpe_dropout, sides, max_len, seed
    self._bucket_kw = dict(tokens_per_batch=tokens_per_batch, boundaries=boundaries, seed=seed,
                           batch_multiple=batch_multiple)
    self._lock = threading.Lock()
    self._fixed = {}  # side -> deterministic ids, for a side without dropout
    self._epochs: dict[int, BucketedBatches] = {}  # the two most recently built after epoch 0
    # Epoch 0 is kept (rows, padding_stats) and fixes every later epoch's keys: the given ones
    # ('both') or, with one side, its own.
    self._first = self._build(0, list(keys) if sides == "both" else None)
    self._counts: list[int] = [self._first.num_batches]  # of epochs 0, 1, ... as far as built
    self.keys = self._first.keys
    self.num_batches, self.shapes = self._first.num_batches, self._first.shapes

  def _segment(self, side: str, epoch: int) -> list[list[int]]:
    lines = self.text.src if side == "src" else self.text.tgt
    if self.sides not in (side, "both"):
      if side not in self._fixed:
        self._fixed[side] = self.tokenizer.encode_batch(lines)
      return self._fixed[side]
    seed = int(np.random.default_rng((self.seed, epoch, self.SIDES.index(side))).integers(2**31))
    return self.tokenizer.sample_batch(lines, bpe_dropout=self.bpe_dropout, seed=seed)

  def _build(self, epoch: int, keys: Sequence[Key] | None) -> BucketedBatches:
    enc = _append_eos(self._segment("src", epoch), self._segment("tgt", epoch), self.max_len)
    return BucketedBatches(enc, keys=keys, **self._bucket_kw)

  def _epoch(self, epoch: int) -> BucketedBatches:
    """Epoch `epoch`'s segmentation, batched (built on first use; epoch 0 and the last two are
    kept)."""
    if epoch == 0:
      return self._first
    with self._lock:
      if epoch not in self._epochs:
        batches = self._build(epoch, self.keys)
        self._epochs = {e: b for e, b in self._epochs.items() if e == epoch - 1}
        self._epochs[epoch] = batches
      batches = self._epochs[epoch]
      if epoch == len(self._counts):
        self._counts.append(batches.num_batches)
      return batches

  def batches_in_epoch(self, epoch: int) -> int:
    """Number of batches of epoch `epoch` (builds the epochs up to it, about 1 s each for
    Multi30k, if not yet built)."""
    while len(self._counts) <= epoch:
      self._epoch(len(self._counts))
    return self._counts[epoch]

  def _locate(self, step: int) -> tuple[int, int]:
    """(epoch, index in that epoch) of global batch `step`."""
    epoch = 0
    while step >= self.batches_in_epoch(epoch):
      step -= self.batches_in_epoch(epoch)
      epoch += 1
    return epoch, step

  def rows(self, T: int) -> int:
    """B, the rows per batch for target bucket length T (as `BucketedBatches.rows`)."""
    return self._first.rows(T)

  def epoch_at(self, step: int) -> float:
    """Epochs done after `step` batches: whole epochs plus the fraction of the current one."""
    epoch, index = self._locate(step)
    return epoch + index / self.batches_in_epoch(epoch)

  def iterate(self, start_step: int = 0, rows: Callable[[int], np.ndarray] | None = None
              ) -> Iterator[dict[str, np.ndarray]]:
    """Endless stream over epochs 0, 1, ..., from global batch `start_step`; as
    `BucketedBatches.iterate`, with each epoch's own segmentation and batch count."""
    epoch, index = self._locate(start_step)
    while True:
      yield from self._epoch(epoch).epoch(epoch, index, rows)
      epoch, index = epoch + 1, 0

  def padding_stats(self) -> dict:
    """`BucketedBatches.padding_stats` of epoch 0, plus `bpe_dropout`, `bpe_dropout_sides` and
    the mean pieces per sentence (EOS included) of epoch 0 on each side: `src_mean_len`,
    `tgt_mean_len`."""
    first = self._first
    return {**first.padding_stats(), "bpe_dropout": self.bpe_dropout,
            "bpe_dropout_sides": self.sides,
            "src_mean_len": float(np.mean([len(s) for s in first.src])),
            "tgt_mean_len": float(np.mean([len(t) for t in first.tgt]))}


def batch_sentences(src: list[np.ndarray], batch_size: int,
                    boundaries: Sequence[int]) -> list[tuple[np.ndarray, np.ndarray]]:
  """Batches source sentences for decoding, sorted by length to limit padding.

  Args:
    src: token id arrays (EOS included, e.g. `Encoded.src`); a sentence may be just [EOS].
    batch_size: B, rows of every batch (the last batch is filled with all-PAD rows).
    boundaries: allowed widths S (as in `BucketedBatches`).

  Returns:
    List of (ids [B, S] int32, original_indices [B] int64 with -1 for all-PAD rows); write the
    translation of row r to position original_indices[r] to restore input order.

  Raises:
    ValueError: batch_size < 1, or a sentence longer than the largest boundary.
  """
  if batch_size < 1:
    raise ValueError(f"batch_size must be >= 1, got {batch_size}")
  b = _check_boundaries(boundaries)
  order = np.argsort([len(s) for s in src], kind="stable")
  out = []
  for start in range(0, len(order), batch_size):
    idx = np.full(batch_size, -1, dtype=np.int64)
    chunk = order[start:start + batch_size]
    idx[:len(chunk)] = chunk
    S = _ceil_to(max(len(src[i]) for i in chunk), b)
    out.append((_pad_rows([src[i] if i >= 0 else None for i in idx], S), idx))  # [B, S]
  return out
