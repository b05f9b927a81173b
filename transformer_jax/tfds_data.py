"""Parallel text from TensorFlow Datasets (the paper's WMT 2014 EN-DE, `wmt14_translate/de-en`).

`read_split(config, split)` returns the same `data.ParallelText` that the text-file path
returns, so everything after it is shared: the vocabulary sample (`data.vocab_sample`),
`data.encode_parallel`, `data.BucketedBatches`, and the translation and BLEU of the final
evaluation.

Why `tfds.data_source` (here its two steps, `tfds.builder(...).as_data_source(split)`) and
not `tfds.load`:
- No TensorFlow at run time. `tfds.load` / `as_dataset` build a `tf.data` pipeline and need
  TensorFlow (a 546 MiB wheel that would also compete with JAX for the accelerator);
  `tfds.data_source` reads TFDS's `array_record` files with the small `array_record` reader
  and decodes the features in numpy.
- Random access. A data source is a sequence: `len(source)` and `source[i]` for any i, read
  in chunks here. The length-bucketed batching (Section 5.1) needs every pair's length before
  the first batch, which a streaming `tf.data` pipeline does not give.
- Deterministic per-host sharding. Record i is always the same pair, so a host's share of a
  split is index arithmetic, with no coordination between hosts and the same shares after a
  restart. (Today every host reads the whole split: the vocabulary and the global batch plan
  need all pairs; reading is about 50 us per pair, 2.5 s per 50k on a 2-core CPU.)

The dataset must be prepared once, elsewhere, in `array_record` format (see the README,
"Reproduce Table 2 on Cloud TPU"); nothing here downloads or builds WMT. TFDS's
`wmt14_translate/de-en` has splits 'train' (Europarl v7, Common Crawl, News Commentary v9:
about 4.5M pairs), 'validation' (newstest2013, 3000 pairs: the paper's dev set, Table 3) and
'test' (newstest2014, the full 3003-pair version: Table 2). TFDS shuffles pairs when it
writes a split, so the records are not in the original newstest line order; corpus BLEU does
not depend on the order.

`array_record` cannot open gs:// paths (array_record issue #120), so a gs://
`data.tfds_data_dir` is first copied to a local directory (~/tensorflow_datasets, or
TRANSFORMER_JAX_TFDS_CACHE) once per host; that copy needs `gcsfs` (`pip install gcsfs`).
"""

from __future__ import annotations

import os
import pathlib
import shutil
import time

import ml_collections

from transformer_jax.config import ConfigError
from transformer_jax.data import DataError, ParallelText

SPLIT_KEYS = {"train": "tfds_train_split", "val": "tfds_val_split", "test": "tfds_test_split"}
READ_CHUNK = 10000  # records per __getitems__ call


def _dataset_path(name: str) -> str:
  """'wmt14_translate/de-en[:1.0.0]' -> 'wmt14_translate/de-en', the folder under data_dir."""
  return name.split(":")[0]


def stage_locally(data_dir: str, name: str, local_root: str | os.PathLike) -> str:
  """Copies `data_dir/<dataset>/<config>` (all versions) to `local_root` unless already there.

  Args:
    data_dir: a TFDS data directory readable by `etils.epath` (gs:// needs `gcsfs`).
    name: TFDS name as in `config.data.tfds_name`, e.g. 'wmt14_translate/de-en'.
    local_root: local directory that becomes the TFDS data_dir.

  Returns:
    `local_root` as a string: the data_dir to give TFDS.

  The copy goes to a temporary folder and is renamed when complete, so an interrupted copy is
  redone rather than half-read.

  Raises:
    DataError: `data_dir/<dataset>/<config>` does not exist.
  """
  from etils import epath
  rel = _dataset_path(name)
  remote = epath.Path(data_dir) / rel
  local = pathlib.Path(local_root) / rel
  if local.is_dir():
    return str(local_root)
  if not remote.exists():
    raise DataError(f"config.data.tfds_data_dir={data_dir!r} has no {rel}/ (expected the output "
                    f"of `tfds build {rel} --file_format=array_record --data_dir={data_dir}`)")
  partial = local.with_name(f".{local.name}.incomplete{os.getpid()}")
  shutil.rmtree(partial, ignore_errors=True)
  todo = [(remote, partial)]
  while todo:  # copy the folder tree
    src, dst = todo.pop()
    dst.mkdir(parents=True, exist_ok=True)
    for child in src.iterdir():
      if child.is_dir():
        todo.append((child, dst / child.name))
      else:
        (dst / child.name).write_bytes(child.read_bytes())
  partial.rename(local)
  return str(local_root)


def _local_data_dir(data_dir: str, name: str) -> str | None:
  """The data_dir to hand to TFDS: a local copy when `data_dir` is a gs:// path."""
  if not data_dir:
    return None
  if not data_dir.startswith("gs://"):
    return data_dir
  root = os.environ.get("TRANSFORMER_JAX_TFDS_CACHE",
                       os.path.expanduser("~/tensorflow_datasets"))
  try:
    return stage_locally(data_dir, name, root)
  except ImportError as e:  # etils' gs:// backend without gcsfs
    raise ConfigError(
        f"config.data.tfds_data_dir={data_dir!r}: reading gs:// needs gcsfs ({e}). Run "
        f"`pip install gcsfs`, or copy it yourself: `gcloud storage cp -r "
        f"{data_dir.rstrip('/')}/{_dataset_path(name).split('/')[0]} {root}/` and set "
        f"--config.data.tfds_data_dir={root}") from e


def open_split(config: ml_collections.ConfigDict, split: str):
  """The random-access data source of `split` ('train' | 'val' | 'test'), and its label.

  Raises:
    ConfigError: unknown split, an empty TFDS split name in config.data, or TFDS not
      installed (the `tfds` extra).
    DataError: the dataset, its split or one of the two languages is missing (the message
      names config.data.tfds_name / tfds_data_dir and how to prepare the data).
  """
  try:  # an extra, not a core dependency: text files train without it
    import tensorflow_datasets as tfds
    import tensorflow_datasets.translate  # noqa: F401  registers wmt14_translate (not lazy)
  except ImportError as e:
    raise ConfigError(f"config.data.source='tfds' needs tensorflow-datasets and array_record "
                      f"({e}); install them with `pip install -e \".[tfds]\"`") from None
  if split not in SPLIT_KEYS:
    raise ConfigError(f"unknown split {split!r}; expected one of {sorted(SPLIT_KEYS)}")
  d = config.data
  tfds_split = d[SPLIT_KEYS[split]]
  if not tfds_split:
    raise ConfigError(f"config.data.{SPLIT_KEYS[split]} is empty; give a TFDS split name "
                      f"(e.g. 'validation') or set config.data.{split}_src / {split}_tgt")
  data_dir = _local_data_dir(d.tfds_data_dir, d.tfds_name)
  where = (f"config.data.tfds_name={d.tfds_name!r}, "
           f"tfds_data_dir={d.tfds_data_dir or '(TFDS default)'!r}")
  prepare = (f"prepare it once with `tfds build {_dataset_path(d.tfds_name)} "
             "--file_format=array_record --data_dir=DIR` (README)")
  try:  # what tfds.data_source(download=False) does, with errors that say what to do
    builder = tfds.builder(d.tfds_name, data_dir=data_dir)
  except tfds.core.registered.DatasetNotFoundError as e:
    raise DataError(f"{where}: {e}; {prepare}") from None
  if not builder.is_prepared():
    raise DataError(f"{where}: not prepared in {builder.data_dir}; {prepare}")
  try:
    source = builder.as_data_source(split=tfds_split)
  except NotImplementedError:  # prepared, but as tfrecord: no random access
    raise DataError(f"{where}: {builder.data_dir} holds "
                    f"{sorted(str(f) for f in builder.info.available_file_formats())} files; "
                    f"random access needs array_record: {prepare}") from None
  except (ValueError, KeyError) as e:
    raise DataError(f"{where}: cannot open split {tfds_split!r} (config.data."
                    f"{SPLIT_KEYS[split]}; {type(e).__name__}: {e})") from None
  languages = list(getattr(source.dataset_info.features, "languages", None) or
                   source.dataset_info.features.keys())
  for key in ("src_lang", "tgt_lang"):
    if d[key] not in languages:
      raise DataError(f"{where}: config.data.{key}={d[key]!r} is not a language of this dataset "
                      f"(its features are {languages})")
  return source, f"tfds:{d.tfds_name}[{tfds_split}]"


def read_split(config: ml_collections.ConfigDict, split: str, log=None) -> ParallelText:
  """All sentence pairs of a TFDS split, in record order, as `data.ParallelText`.

  Source and target are the features keyed `config.data.src_lang` and `tgt_lang` (EN->DE:
  'en' -> 'de'). Each side is UTF-8 decoded and `.strip()`-ed; a pair with a blank side is
  dropped and counted, as `data.read_parallel` does. `src_path` / `tgt_path` are labels such
  as 'tfds:wmt14_translate/de-en[validation]:en'.

  Raises:
    ConfigError, DataError: see `open_split`; DataError also if the split has no non-blank
      pair or a record is not valid UTF-8 (naming the record index).
  """
  d = config.data
  source, label = open_split(config, split)
  start, n = time.perf_counter(), len(source)
  src, tgt, blank = [], [], 0
  for first in range(0, n, READ_CHUNK):
    records = source.__getitems__(list(range(first, min(n, first + READ_CHUNK))))
    for i, record in enumerate(records, start=first):
      try:
        s = record[d.src_lang].decode("utf-8").strip()
        t = record[d.tgt_lang].decode("utf-8").strip()
      except UnicodeDecodeError as e:
        raise DataError(f"{label}: record {i} is not valid UTF-8 ({e.reason})") from None
      if s and t:
        src.append(s)
        tgt.append(t)
      else:
        blank += 1
  if not src:
    raise DataError(f"{label}: no non-blank sentence pairs in {n} records")
  if log:
    log(f"read {n} records from {label} in {time.perf_counter() - start:.1f} s")
  return ParallelText(src=src, tgt=tgt, src_path=f"{label}:{d.src_lang}",
                      tgt_path=f"{label}:{d.tgt_lang}", n_blank_dropped=blank)
