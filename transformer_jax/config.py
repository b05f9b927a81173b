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
    positions: 'sinusoidal' (Section 3.5) or 'learned' (Table 3 row E).
    max_len: longest sequence a learned position table covers, in tokens.
    norm: 'post' (the paper: LayerNorm(x + Sublayer(x))) or 'pre' (x + Sublayer(LayerNorm(x))).
    dtype: activation and matmul dtype, 'float32' (paper) or 'bfloat16'. Parameters, softmax
      and the loss stay float32.
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
  positions: str = "sinusoidal"
  max_len: int = 512
  norm: str = "post"
  dtype: str = "float32"

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
    if self.positions not in ("sinusoidal", "learned"):
      raise ConfigError(
          f"config.model.positions must be 'sinusoidal' or 'learned', got {self.positions!r}")
    if self.norm not in ("post", "pre"):
      raise ConfigError(f"config.model.norm must be 'post' or 'pre', got {self.norm!r}")
    if self.dtype not in ("float32", "bfloat16"):
      raise ConfigError(f"config.model.dtype must be 'float32' or 'bfloat16', got {self.dtype!r}")


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
  c.model.positions = "sinusoidal"  # 'sinusoidal' (Section 3.5) | 'learned' (Table 3 row E)
  c.model.max_len = 512  # longest position a learned table covers (tokens)
  c.model.norm = "post"  # 'post' (paper) | 'pre' (modern switch)
  c.model.dtype = "float32"  # 'float32' (paper) | 'bfloat16' activations

  c.data = ml_collections.ConfigDict()
  c.data.corpus = "multi30k"  # embedded corpus used where a path below is empty
  c.data.src_lang = "en"  # file suffix of the source side
  c.data.tgt_lang = "de"  # file suffix of the target side
  c.data.train_src = ""  # path of the training source text; '' = embedded corpus
  c.data.train_tgt = ""  # path of the training target text
  c.data.val_src = ""  # path of the dev source text (perplexity, dev BLEU)
  c.data.val_tgt = ""  # path of the dev target text
  c.data.test_src = ""  # path of the test source text (BLEU after training)
  c.data.test_tgt = ""  # path of the test target text
  c.data.vocab_size = 37000  # shared BPE vocabulary, about 37000 in Section 5.1
  c.data.vocab_sample = 0  # sentences sampled to train the vocabulary; 0 = all
  c.data.max_len = 256  # longer pairs (tokens incl. EOS) are dropped and counted
  c.data.tokens_per_batch = 25000  # target tokens per batch (padded), Section 5.1
  c.data.bucket_boundaries = (8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 32, 36, 40, 48, 56, 64,
                              80, 96, 128, 160, 192, 256)  # padded lengths a batch may have
  c.data.batch_multiple = 1  # rows per batch are a multiple of this (and of accum x shards)
  c.data.seed = 0  # seeds the batch order; same seed, same batches

  c.train = ml_collections.ConfigDict()
  c.train.steps = 100000  # optimizer steps, Section 5.2
  c.train.warmup_steps = 4000  # warmup_steps of Eq. 3, Section 5.3
  c.train.lr_scale = 1.0  # multiplies Eq. 3; 1.0 = paper
  c.train.adam_b1 = 0.9  # Section 5.3
  c.train.adam_b2 = 0.98  # Section 5.3
  c.train.adam_eps = 1e-9  # Section 5.3
  c.train.eps_ls = 0.1  # label smoothing, Section 5.4
  c.train.seed = 0  # seeds parameters and dropout
  c.train.dropout_prng = "rbg"  # PRNG for dropout masks: 'rbg' (fast on CPU) | 'threefry2x32'
  c.train.log_every = 100  # steps between metrics.jsonl lines
  c.train.eval_every = 1000  # steps between dev-perplexity evaluations
  c.train.checkpoint_every = 1000  # steps between checkpoints
  c.train.keep_checkpoints = 5  # checkpoints kept on disk
  c.train.average_last = 5  # checkpoints averaged for the final model, Section 6.1 (1 = none)
  c.train.final_eval = True  # after training, translate the test set and report BLEU
  c.train.grad_accum_steps = 1  # micro-batches per step: gradients summed, then / target tokens

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
  c.decode.batch_size = 64  # sentences decoded together
  return c


def model_config(config: ml_collections.ConfigDict) -> TransformerConfig:
  """Builds the frozen model config from `config.model` and `config.data.vocab_size`.

  Raises:
    ConfigError: a value is impossible (the message names the key).
  """
  fields = {f.name for f in dataclasses.fields(TransformerConfig)} - {"vocab_size"}
  kwargs = {k: v for k, v in config.model.items() if k in fields}
  if config.data.vocab_size <= 4:
    raise ConfigError("config.data.vocab_size must exceed the 4 special tokens "
                      f"(PAD, UNK, BOS, EOS), got {config.data.vocab_size}")
  needed = config.data.max_len + config.decode.max_extra_len
  if config.model.positions == "learned" and config.model.max_len < needed:
    raise ConfigError(f"config.model.max_len={config.model.max_len} is too short for learned "
                      f"positions: decoding reaches data.max_len + decode.max_extra_len = {needed}")
  return TransformerConfig(vocab_size=config.data.vocab_size, **kwargs)


ASSETS = __import__("pathlib").Path(__file__).parent / "assets"
_SPLITS = {"train": "train", "val": "val", "test": "test2016"}


def split_paths(config: ml_collections.ConfigDict, split: str) -> tuple[str, str]:
  """(source path, target path) of `split` in 'train' | 'val' | 'test'.

  A path left empty in `config.data` ({split}_src / {split}_tgt) comes from the embedded corpus
  `config.data.corpus` with the language suffixes `src_lang` and `tgt_lang`, so reversing the
  direction is `--config.data.src_lang=de --config.data.tgt_lang=en`.

  Raises:
    ConfigError: unknown split, or an empty path with no embedded corpus of that name.
  """
  if split not in _SPLITS:
    raise ConfigError(f"unknown split {split!r}; expected one of {sorted(_SPLITS)}")
  d = config.data
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
