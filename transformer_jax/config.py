"""Configuration: the paper's base model as a ConfigDict, and the frozen model dataclass.

Every config file under `configs/` starts from `default_config()` (the paper's base model,
Table 3 first row, Section 5) and overrides only what it changes. The model never sees a
ConfigDict: `model_config(config)` turns `config.model` into the frozen `TransformerConfig`.

Names follow the paper: N = `n_layers`, `d_model`, `d_ff`, `h`, `d_k`, `d_v`, P_drop = `p_drop`,
eps_ls = `eps_ls`. (flax's examples/wmt calls these num_layers, emb_dim, mlp_dim, num_heads,
qkv_dim; it cannot express d_k != d_v.)
"""

from __future__ import annotations

import dataclasses
import importlib.util
import pathlib
import types

import ml_collections


class ConfigError(ValueError):
  """A config value is impossible; the message names the key and what was expected."""


@dataclasses.dataclass(frozen=True)
class TransformerConfig:
  """Hyperparameters of the encoder-decoder Transformer (paper Section 3, Table 3).

  Attributes:
    vocab_size: size C of the shared source/target vocabulary (Section 3.4).
    d_model: width D of every sub-layer output and embedding.
    d_ff: inner width F of the position-wise feed-forward network (Section 3.3).
    h: number of attention heads H (Section 3.2.2).
    d_k: per-head query/key width K.
    d_v: per-head value width V (independent of d_k; Table 3 row B).
    n_layers: N, identical layers in the encoder and in the decoder.
    p_drop: residual dropout P_drop on each sub-layer output and on the embedding sums
      (Section 5.4).
    p_drop_attn: dropout on attention weights. Not in the paper (0.0 = paper).
    dropout_algorithm: XLA RngBitGenerator algorithm drawing the dropout masks: 'three_fry'
      (fastest on CPU), 'philox', or 'default' (the backend's own; try it on TPU). dropout.py.
    positions: 'sinusoidal' (Section 3.5) or 'learned' (Table 3 row E).
    max_len: longest sequence a learned position table covers, in tokens.
    norm: 'post' (the paper: LayerNorm(x + Sublayer(x))) or 'pre' (x + Sublayer(LayerNorm(x))).
    dtype: activation and matmul dtype, 'float32' (paper) or 'bfloat16'. Parameters, softmax
      and the loss stay float32.
    attention_impl: how Eq. 1 is computed, the same function each way: 'auto' (per platform,
      attention.choose_implementation), 'einsum', 'xla' or 'cudnn' (jax.nn.dot_product_attention).
  """

  vocab_size: int
  d_model: int = 512
  d_ff: int = 2048
  h: int = 8
  d_k: int = 64
  d_v: int = 64
  n_layers: int = 6
  p_drop: float = 0.1
  p_drop_attn: float = 0.0
  dropout_algorithm: str = "three_fry"
  positions: str = "sinusoidal"
  max_len: int = 512
  norm: str = "post"
  dtype: str = "float32"
  attention_impl: str = "auto"

  def __post_init__(self):
    positive = ("vocab_size", "d_model", "d_ff", "h", "d_k", "d_v", "n_layers", "max_len")
    for name in positive:
      value = getattr(self, name)
      if not isinstance(value, int) or value <= 0:
        raise ConfigError(f"config.model.{name} must be a positive integer, got {value!r}")
    for name in ("p_drop", "p_drop_attn"):
      value = getattr(self, name)
      if not 0.0 <= value < 1.0:
        raise ConfigError(f"config.model.{name} must be in [0, 1), got {value!r}")
    from transformer_jax.dropout import ALGORITHMS  # pylint: disable=import-outside-toplevel
    if self.dropout_algorithm not in ALGORITHMS:
      raise ConfigError(f"config.model.dropout_algorithm must be one of {sorted(ALGORITHMS)}, "
                        f"got {self.dropout_algorithm!r}")
    if self.positions not in ("sinusoidal", "learned"):
      raise ConfigError(
          f"config.model.positions must be 'sinusoidal' or 'learned', got {self.positions!r}")
    if self.norm not in ("post", "pre"):
      raise ConfigError(f"config.model.norm must be 'post' or 'pre', got {self.norm!r}")
    if self.dtype not in ("float32", "bfloat16"):
      raise ConfigError(f"config.model.dtype must be 'float32' or 'bfloat16', got {self.dtype!r}")
    from transformer_jax.attention import choose_implementation
    choose_implementation(self.attention_impl, platform=None, dtype=self.dtype, d_k=self.d_k,
                          d_v=self.d_v, p_drop_attn=self.p_drop_attn)  # refusals, named


def default_config() -> ml_collections.ConfigDict:
  """The paper's base model and training setup (Table 3 row 'base', Section 5), unlocked.

  Config files override fields and call `.lock()`; see configs/base.py.
  """
  c = ml_collections.ConfigDict()

  c.model = ml_collections.ConfigDict()
  c.model.d_model = 512  # D, Section 3.1
  c.model.d_ff = 2048  # F, Section 3.3
  c.model.h = 8  # heads, Section 3.2.2
  c.model.d_k = 64  # per-head query/key width
  c.model.d_v = 64  # per-head value width
  c.model.n_layers = 6  # N, encoder and decoder each
  c.model.p_drop = 0.1  # residual dropout, Section 5.4
  c.model.p_drop_attn = 0.0  # dropout on attention weights; not in the paper
  c.model.dropout_algorithm = "three_fry"  # mask generator: 'three_fry' | 'philox' | 'default'
  c.model.positions = "sinusoidal"  # 'sinusoidal' (Section 3.5) | 'learned' (Table 3 row E)
  c.model.max_len = 512  # longest position a learned table covers (tokens)
  c.model.norm = "post"  # 'post' (paper) | 'pre' (modern switch)
  c.model.dtype = "float32"  # 'float32' (paper) | 'bfloat16' activations
  c.model.attention_impl = "auto"  # Eq. 1 via 'auto' | 'einsum' | 'xla' | 'cudnn' (same function)

  c.data = ml_collections.ConfigDict()
  c.data.source = "text"  # 'text' (paths below or embedded corpus) | 'tfds' (TensorFlow Datasets)
  c.data.corpus = "multi30k"  # embedded corpus used where a path below is empty
  c.data.src_lang = "en"  # file suffix of the source side
  c.data.tgt_lang = "de"  # file suffix of the target side
  c.data.train_src = ""  # path of the training source text; '' = embedded corpus
  c.data.train_tgt = ""  # path of the training target text
  c.data.val_src = ""  # path of the dev source text (perplexity, dev BLEU)
  c.data.val_tgt = ""  # path of the dev target text
  c.data.test_src = ""  # path of the test source text (BLEU after training)
  c.data.test_tgt = ""  # path of the test target text
  c.data.tfds_name = "wmt14_translate/de-en"  # TFDS dataset[/config] read when source='tfds'
  c.data.tfds_data_dir = ""  # TFDS data_dir holding it in array_record format; '' = TFDS default
  c.data.tfds_train_split = "train"  # TFDS split for training (wmt14: 4.5M pairs)
  c.data.tfds_val_split = "validation"  # TFDS split for dev (wmt14: newstest2013)
  c.data.tfds_test_split = "test"  # TFDS split for test (wmt14: newstest2014)
  c.data.vocab_size = 37000  # shared BPE vocabulary, about 37000 in Section 5.1
  c.data.vocab_model = "bpe"  # SentencePiece model: 'bpe' (Section 5.1) | 'unigram' (Kudo 2018)
  c.data.vocab_sample = 0  # sentences sampled to train the vocabulary; 0 = all
  c.data.max_len = 256  # longer pairs (tokens incl. EOS) are dropped and counted
  c.data.tokens_per_batch = 25000  # target tokens per batch (padded), Section 5.1
  c.data.bucket_boundaries = (8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 32, 36, 40, 48, 56, 64,
                              80, 96, 128, 160, 192, 256)  # padded lengths a batch may have
  c.data.batch_multiple = 1  # rows per batch are a multiple of this (and of accum x shards)
  c.data.seed = 0  # seeds the batch order; same seed, same batches
  # BPE-dropout (Provilkov et al. 2020; not in the paper): each epoch re-segments the training
  # text dropping each merge with this probability; dev/test keep deterministic BPE. 0 = paper
  c.data.bpe_dropout = 0.0
  c.data.bpe_dropout_sides = "both"  # sides re-segmented: 'src' | 'tgt' | 'both'
  # Lowercase the training and dev text and every source to translate (str.lower), as much of
  # the Multi30k literature does (e.g. Wu et al. 2021); references for BLEU stay as written, so
  # cased sacreBLEU shows what the lost capitals cost. False = the paper (cased text)
  c.data.lowercase = False

  c.train = ml_collections.ConfigDict()
  c.train.steps = 100000  # optimizer steps, Section 5.2
  c.train.warmup_steps = 4000  # warmup_steps of Eq. 3, Section 5.3
  c.train.lr_scale = 1.0  # multiplies Eq. 3; 1.0 = paper
  c.train.adam_b1 = 0.9  # Section 5.3
  c.train.adam_b2 = 0.98  # Section 5.3
  c.train.adam_eps = 1e-9  # Section 5.3
  c.train.eps_ls = 0.1  # label smoothing, Section 5.4
  c.train.seed = 0  # seeds parameters and dropout
  c.train.dropout_prng = "rbg"  # impl of the dropout key: 'rbg' | 'unsafe_rbg' | 'threefry2x32'
  c.train.log_every = 100  # steps between metrics.jsonl lines
  c.train.eval_every = 1000  # steps between dev-perplexity evaluations
  c.train.checkpoint_every = 1000  # steps between checkpoints
  c.train.keep_checkpoints = 5  # checkpoints kept on disk
  c.train.average_last = 5  # checkpoints averaged for the final model, Section 6.1 (1 = none)
  c.train.final_eval = True  # after training, translate the test set and report BLEU
  c.train.final_eval_splits = ("test",)  # splits translated and scored then: 'val', 'test'
  c.train.paper_bleu = False  # also report tokenized, compound-split BLEU (Table 2's metric)
  c.train.paper_model = ""  # '' | 'base' | 'big': Table 2 row to compare cost and step time with
  c.train.peak_flops_per_device = 0.0  # FLOP/s per device for Table 2's cost formula; 0 = unknown
  c.train.grad_accum_steps = 1  # micro-batches per step: gradients summed, then / target tokens
  c.train.profile_steps = ""  # 'N' or 'FIRST-LAST': jax.profiler trace to WORKDIR/tb; '' = off

  c.mesh = ml_collections.ConfigDict()  # device mesh; see sharding.py
  c.mesh.data = -1  # devices on the data-parallel axis; -1 = all the other axes leave
  c.mesh.fsdp = 1  # devices on the FSDP axis (parameters and Adam moments split over it)
  c.mesh.tensor = 1  # devices on the tensor-parallel axis (heads, d_ff, vocabulary split)

  c.sharding = ml_collections.ConfigDict()
  c.sharding.rules = "data_parallel"  # 'data_parallel' | 'fsdp' | 'tensor_parallel' | 'fsdp_tensor'

  c.distributed = ml_collections.ConfigDict()  # multi-host: jax.distributed.initialize()
  c.distributed.enabled = False  # True on a TPU slice / GPU cluster with several processes
  c.distributed.coordinator_address = ""  # 'host:port' of process 0; '' = auto-detect (TPU)
  c.distributed.num_processes = 0  # processes in the job; 0 = auto-detect
  c.distributed.process_id = -1  # this process's index; -1 = auto-detect

  c.decode = ml_collections.ConfigDict()
  c.decode.beam_size = 4  # Section 6.1
  c.decode.alpha = 0.6  # length penalty, Section 6.1
  c.decode.max_extra_len = 50  # output may be this many tokens longer than the input
  c.decode.word_reward = 0.0  # nats per output token added to a finished hypothesis; not paper
  c.decode.batch_size = 64  # sentences decoded together
  return c


def load_file(path: str | pathlib.Path) -> ml_collections.ConfigDict:
  """`get_config()` of a config file (e.g. configs/multi30k.py), loaded by path as the
  `--config=PATH` flag loads it.

  Raises:
    FileNotFoundError: no file at `path`.
  """
  return load_module(path).get_config()


def load_module(path: str | pathlib.Path) -> types.ModuleType:
  """A config file (any Python file) executed as a module of its own, by path.

  Raises:
    FileNotFoundError: no file at `path`; whatever the file raises when it runs.
  """
  path = pathlib.Path(path)
  spec = importlib.util.spec_from_file_location(f"_config_{path.stem}", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def model_config(config: ml_collections.ConfigDict) -> TransformerConfig:
  """Builds the frozen model config from `config.model` and `config.data.vocab_size`.

  Also checks the config.train keys that are only used after training (final evaluation,
  budget report), so that a bad value fails before the run rather than after it.

  Raises:
    ConfigError: a value is impossible (the message names the key).
  """
  fields = {f.name for f in dataclasses.fields(TransformerConfig)} - {"vocab_size"}
  kwargs = {k: v for k, v in config.model.items() if k in fields}
  if config.data.vocab_size <= 4:
    raise ConfigError("config.data.vocab_size must exceed the 4 special tokens "
                      f"(PAD, UNK, BOS, EOS), got {config.data.vocab_size}")
  t = config.train  # keys used only after training: checked here, before it starts
  if not set(t.get("final_eval_splits", ("test",))) <= {"val", "test"}:
    raise ConfigError("config.train.final_eval_splits must hold only 'val' and 'test', got "
                      f"{tuple(t.final_eval_splits)!r}")
  if t.get("paper_model", "") not in ("", "base", "big"):
    raise ConfigError(f"config.train.paper_model must be '', 'base' or 'big', got "
                      f"{t.paper_model!r}")
  if not t.get("peak_flops_per_device", 0.0) >= 0:
    raise ConfigError("config.train.peak_flops_per_device must be >= 0 (FLOP/s), got "
                      f"{t.peak_flops_per_device!r}")
  needed = config.data.max_len + config.decode.max_extra_len
  if config.model.positions == "learned" and config.model.max_len < needed:
    raise ConfigError(f"config.model.max_len={config.model.max_len} is too short for learned "
                      f"positions: decoding reaches data.max_len + decode.max_extra_len = {needed}")
  return TransformerConfig(vocab_size=config.data.vocab_size, **kwargs)


def source_limit(config: ml_collections.ConfigDict) -> int:
  """Most source tokens (EOS included) a translated sentence keeps; 0 = no limit.

  data.max_len, the longest pair the model was trained on; with learned positions also no more
  than model.max_len - decode.max_extra_len, so the output's positions stay inside the table.
  """
  limit = config.data.max_len
  if config.model.positions == "learned":
    room = config.model.max_len - config.decode.max_extra_len
    limit = min(limit, room) if limit > 0 else room
  return max(limit, 0)


def _expect(ok: bool, key: str, expected: str, value) -> None:
  if not ok:
    raise ConfigError(f"config.{key} must be {expected}, got {value!r}")


def _same_type(value, default) -> bool:
  """Whether `value` may stand where default_config() has `default` (an int counts as a float,
  a list as a tuple; bool never counts as a number)."""
  if isinstance(default, bool) or isinstance(value, bool):
    return isinstance(value, bool) and isinstance(default, bool)
  if isinstance(default, float):
    return isinstance(value, (int, float))
  if isinstance(default, tuple):
    return isinstance(value, (list, tuple))
  return isinstance(value, type(default))


# Sections that describe a run rather than configure it, checked by their own modules:
# 'table3' (row name and the paper's numbers, transformer_jax/experiments/table3.py).
METADATA_SECTIONS = ("table3",)


def validate(config: ml_collections.ConfigDict) -> None:
  """Checks a whole config before any work is done (called by `train.train` and the CLI).

  Every key must be one default_config() has, with a value of the same type and a possible
  value. Data-dependent limits are checked later where the data is read (e.g. SentencePiece
  needs data.vocab_size >= distinct characters + 4; the tokenizer names that number).

  Raises:
    ConfigError: "config.SECTION.KEY must be ..., got VALUE" for the first bad key, or an
      unknown or missing section or key (named, with the keys that section has).
  """
  reference = default_config()
  for section in config.keys():
    if section not in reference and section not in METADATA_SECTIONS:
      raise ConfigError(f"config.{section} is not a config section; expected {sorted(reference)}")
  for section, defaults in reference.items():
    if section not in config:
      raise ConfigError(f"config.{section} is missing; expected a section with {sorted(defaults)}")
    for key in config[section].keys():
      if key not in defaults:
        raise ConfigError(f"config.{section}.{key} is not a known key; config.{section} has "
                          f"{sorted(defaults)}")
    for key, default in defaults.items():
      if key not in config[section]:
        raise ConfigError(f"config.{section}.{key} is missing (default {default!r})")
      value = config[section][key]
      _expect(_same_type(value, default), f"{section}.{key}",
              f"of type {type(default).__name__} like its default {default!r}", value)
  model_config(config)  # model.* values and data.vocab_size > the 4 special tokens
  d, t, dc = config.data, config.train, config.decode
  b = list(d.bucket_boundaries)
  _expect(bool(b) and all(isinstance(x, int) and x > 0 for x in b)
          and all(x < y for x, y in zip(b, b[1:])), "data.bucket_boundaries",
          "a non-empty, strictly increasing list of positive ints", b)
  for key in ("max_len", "vocab_sample"):
    _expect(d[key] >= 0, f"data.{key}", ">= 0", d[key])
  _expect(d.max_len <= b[-1], "data.max_len",
          f"<= the largest of config.data.bucket_boundaries ({b[-1]}), or longer pairs could "
          "not be batched", d.max_len)
  for key in ("tokens_per_batch", "batch_multiple"):
    _expect(d[key] >= 1, f"data.{key}", ">= 1", d[key])
  from transformer_jax.tokenizer import MODEL_TYPES  # pylint: disable=import-outside-toplevel
  _expect(d.vocab_model in MODEL_TYPES, "data.vocab_model", f"one of {list(MODEL_TYPES)}",
          d.vocab_model)
  _expect(0.0 <= d.bpe_dropout < 1.0, "data.bpe_dropout", "in [0, 1) (0 = the paper's BPE)",
          d.bpe_dropout)
  _expect(d.bpe_dropout == 0 or d.vocab_model == "bpe", "data.bpe_dropout",
          "0 unless config.data.vocab_model is 'bpe' (it drops BPE merges)", d.bpe_dropout)
  _expect(d.bpe_dropout_sides in ("src", "tgt", "both"), "data.bpe_dropout_sides",
          "'src', 'tgt' or 'both'", d.bpe_dropout_sides)
  for key in ("steps", "warmup_steps", "log_every", "eval_every", "checkpoint_every",
              "keep_checkpoints", "average_last"):
    _expect(t[key] >= 1, f"train.{key}", ">= 1", t[key])
  _expect(t.average_last <= t.keep_checkpoints, "train.average_last",
          f"<= config.train.keep_checkpoints={t.keep_checkpoints} (only that many are kept to "
          "average)", t.average_last)
  _expect(0.0 < t.lr_scale < float("inf"), "train.lr_scale", "a finite number > 0", t.lr_scale)
  for key in ("adam_b1", "adam_b2", "eps_ls"):
    _expect(0.0 <= t[key] < 1.0, f"train.{key}", "in [0, 1)", t[key])
  _expect(t.adam_eps > 0.0, "train.adam_eps", "> 0", t.adam_eps)
  from transformer_jax import profiling  # pylint: disable=import-outside-toplevel
  profiling.parse_steps(t.profile_steps)
  _expect(t.dropout_prng in ("rbg", "unsafe_rbg", "threefry2x32"), "train.dropout_prng",
          "'rbg', 'unsafe_rbg' or 'threefry2x32'", t.dropout_prng)
  for key in ("beam_size", "batch_size"):
    _expect(dc[key] >= 1, f"decode.{key}", ">= 1", dc[key])
  for key in ("alpha", "max_extra_len", "word_reward"):
    _expect(dc[key] >= 0, f"decode.{key}", ">= 0", dc[key])


ASSETS = __import__("pathlib").Path(__file__).parent / "assets"
_SPLITS = {"train": "train", "val": "val", "test": "test2016"}


def split_paths(config: ml_collections.ConfigDict, split: str) -> tuple[str, str]:
  """(source path, target path) of `split` in 'train' | 'val' | 'test'.

  A path left empty in `config.data` ({split}_src / {split}_tgt) comes from the embedded corpus
  `config.data.corpus` with the language suffixes `src_lang` and `tgt_lang`, so reversing the
  direction is `--config.data.src_lang=de --config.data.tgt_lang=en`. With
  `config.data.source='tfds'` only a split with both paths set has paths.

  Raises:
    ConfigError: unknown split, an empty path with no embedded corpus of that name, or a
      TFDS split without both paths.
  """
  if split not in _SPLITS:
    raise ConfigError(f"unknown split {split!r}; expected one of {sorted(_SPLITS)}")
  d = config.data
  if d.get("source", "text") == "tfds" and not (d[f"{split}_src"] and d[f"{split}_tgt"]):
    raise ConfigError(f"config.data.source='tfds': the {split} split comes from TFDS "
                      f"(data.read_split), unless both config.data.{split}_src and "
                      f"{split}_tgt are set")
  paths = []
  for side, lang in (("src", d.src_lang), ("tgt", d.tgt_lang)):
    path = d[f"{split}_{side}"]
    if not path:
      corpus = ASSETS / d.corpus
      if not corpus.is_dir():
        raise ConfigError(f"config.data.{split}_{side} is empty and config.data.corpus="
                          f"{d.corpus!r} is not an embedded corpus (have: "
                          f"{sorted(p.name for p in ASSETS.iterdir() if p.is_dir())})")
      path = str(corpus / f"{_SPLITS[split]}.{lang}")
    paths.append(path)
  return paths[0], paths[1]
