r"""Fixed-shape train-step throughput and model FLOP utilisation (MFU).

  python benchmarks/train_step.py [--sizes=small,base] [--repeats=5] [--rounds=3] [--no_torch]
                                  [--attention=auto[,einsum,xla]] [--dtype=float32]

Prints, per size and framework, the median step time over rounds x repeats timed steps (after
one compile or two warm-up steps), our step (one column per --attention implementation,
model.attention_impl) and the PyTorch eager peer (benchmarks/torch_peer.py) alternating round
by round in the same process, target tokens per second, their ratio, and
MFU = model FLOPs/s / peak, where model FLOPs per step are 6 x (non-embedding parameters x
(source + target tokens) split between encoder and decoder, plus the output projection per
target token) plus attention score/value FLOPs, and the peak is the float32 matmul rate
measured here on the same machine (a 2048^3 matmul, best of 5).

Sizes (issue 5): small = vocab 8000, d_model 256, h 4, N 3+3, d_ff 1024, batch 32 x 64;
base = vocab 32000, d_model 512, h 8, N 6+6, d_ff 2048, batch 8 x 64;
paper = the base model (vocab 37000) on the paper's batch of about 25000 target tokens
(Section 5.1), 390 x 64 (for an accelerator; benchmarks/device_check.py); tiny (issue 16, Wu et
al. 2021's Transformer-Tiny) = vocab 10000, d_model 128, h 4, N 4+4, d_ff 256, batch 32 x 64;
small6k (issue 16's recipe search, p12; the main job's since beb7515) = small with vocab 6000;
small4k (p13) = small with vocab 4000; small6k_1024 and small6k_512 (p14, p15) = small6k with
batches of 16 x 64 and 8 x 64 (1024 and 512 target tokens); small6k_n2 and small6k_ff512 (p24's
cheaper step) = small6k with N 2+2 and with d_ff 512; tiny8192 (p37, Wu et al.'s own batch of 2 x
4096) = tiny with batch 128 x 64 in one piece, tiny8192_accum4 the same batch as four micro-batches
of 32 x 64 (config.train.grad_accum_steps=4: the same update). A size may be repeated
(--sizes=small,small6k,small,small6k) to alternate two sizes against drifts of the machine.
"""

from __future__ import annotations

import argparse
import functools
import os
import platform
import time

import jax
import jax.numpy as jnp
import numpy as np

import torch_peer

from transformer_jax import optim, train
from transformer_jax.config import TransformerConfig, default_config, model_config
from transformer_jax.model import Transformer, count_params

_SMALL = dict(vocab=8000, d_model=256, h=4, n_layers=3, d_ff=1024, batch=32, length=64)
_TINY = dict(vocab=10000, d_model=128, h=4, n_layers=4, d_ff=256, batch=32, length=64)
SIZES = {
    "small": _SMALL,
    "base": dict(vocab=32000, d_model=512, h=8, n_layers=6, d_ff=2048, batch=8, length=64),
    "paper": dict(vocab=37000, d_model=512, h=8, n_layers=6, d_ff=2048, batch=390, length=64),
    "tiny": _TINY,
    "tiny8192": dict(_TINY, batch=128),
    "tiny8192_accum4": dict(_TINY, batch=128, accum=4),
    "small6k": dict(_SMALL, vocab=6000),
    "small4k": dict(_SMALL, vocab=4000),
    "small6k_1024": dict(_SMALL, vocab=6000, batch=16),
    "small6k_512": dict(_SMALL, vocab=6000, batch=8),
    "small6k_n2": dict(_SMALL, vocab=6000, n_layers=2),
    "small6k_ff512": dict(_SMALL, vocab=6000, d_ff=512),
}


def matmul_peak(n: int = 2048, dtype: str = "float32") -> float:
  """Measured matmul FLOP/s of `dtype` operands (best of 5) on the default device, on random
  data (zeros can run faster than real data)."""
  a = jax.random.normal(jax.random.PRNGKey(0), (n, n), jnp.float32).astype(dtype)
  f = jax.jit(lambda x: x @ x)
  f(a).block_until_ready()
  best = min(_time(lambda: f(a).block_until_ready()) for _ in range(5))
  return 2 * n ** 3 / best


def _time(fn) -> float:
  start = time.perf_counter()
  fn()
  return time.perf_counter() - start


def model_flops(cfg: TransformerConfig, batch: int, src_len: int, tgt_len: int) -> float:
  """Training FLOPs of one step: 6 x params x tokens per matmul, plus attention (QK^T, AV)."""
  d, f, h, k, v, n = cfg.d_model, cfg.d_ff, cfg.h, cfg.d_k, cfg.d_v, cfg.n_layers
  attn_proj = d * h * (2 * k + v) + h * v * d
  enc_layer = attn_proj + 2 * d * f
  dec_layer = 2 * attn_proj + 2 * d * f
  src_tok, tgt_tok = batch * src_len, batch * tgt_len
  matmul = n * enc_layer * src_tok + n * dec_layer * tgt_tok + d * cfg.vocab_size * tgt_tok
  # QK^T and AV per layer and sequence: 2 FLOPs per multiply-add, over (K + V) widths.
  pairs = src_len * src_len + tgt_len * tgt_len + tgt_len * src_len  # enc self, dec self, cross
  attn = n * batch * h * 2 * pairs * (k + v)
  return 6 * matmul + 3 * attn


def jax_runner(name: str, attention_impl: str = "auto", dtype: str = "float32",
               size: dict | None = None):
  """Builds our train step at size `name` (or the dict `size`, keys as in SIZES) with
  model.attention_impl and model.dtype, and compiles it with one step.

  Returns:
    (config.model view, parameter count, step) where step() takes one train step and waits
    for it.
  """
  s = size or SIZES[name]
  config = default_config()
  config.model.update(d_model=s["d_model"], h=s["h"], d_k=s["d_model"] // s["h"],
                      d_v=s["d_model"] // s["h"], n_layers=s["n_layers"], d_ff=s["d_ff"],
                      attention_impl=attention_impl, dtype=dtype)
  config.data.vocab_size = s["vocab"]
  cfg = model_config(config)
  model = Transformer(cfg)
  tx, _ = optim.make_optimizer(config)
  rng = np.random.default_rng(0)
  shape = (s["batch"], s["length"])
  batch = {k: jnp.asarray(rng.integers(4, s["vocab"], size=shape), jnp.int32)
           for k in ("src", "tgt_in", "tgt_out")}
  holder = [jax.jit(functools.partial(train.create_state, model, tx))(jax.random.PRNGKey(0),
                                                                        batch)]
  step = jax.jit(functools.partial(train.train_step, model=model, tx=tx, eps_ls=0.1,
                                   grad_accum_steps=s.get("accum", 1)), donate_argnums=(0,))
  key = jax.random.key(1, impl=config.train.dropout_prng)

  def one_step() -> None:
    holder[0], m = step(holder[0], batch, key)
    jax.block_until_ready(m)

  one_step()  # compile
  return cfg, count_params(holder[0].params), one_step


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--sizes", default="small,base")
  parser.add_argument("--repeats", type=int, default=5, help="timed steps per round")
  parser.add_argument("--rounds", type=int, default=3,
                      help="alternating JAX / PyTorch rounds per size")
  parser.add_argument("--no_torch", action="store_true", help="time our step only")
  parser.add_argument("--attention", default="auto",
                      help="model.attention_impl values, one JAX column each (auto,einsum,xla)")
  parser.add_argument("--dtype", default="float32", help="model.dtype of our step")
  args = parser.parse_args()
  torch_version = None if args.no_torch else torch_peer.available()
  peak = matmul_peak()
  print(f"machine: {platform.machine()}, {os.cpu_count()} cores; jax {jax.__version__}, "
        f"device {jax.devices()[0].device_kind}; torch {torch_version}; "
        f"GLIBC_TUNABLES={os.environ.get('GLIBC_TUNABLES')}")
  if torch_version is None and not args.no_torch:
    print("torch is not installed: no PyTorch column (pip install torch==2.13.0)")
  print(f"measured fp32 matmul peak: {peak / 1e9:.0f} GFLOP/s; {args.rounds} rounds x "
        f"{args.repeats} steps per framework, medians")
  for name in args.sizes.split(","):
    s = SIZES[name]
    tokens = s["batch"] * s["length"]
    runs = {}
    for impl in args.attention.split(","):
      cfg, n_params, jax_step = jax_runner(name, impl, args.dtype)
      runs["jax" if impl == "auto" else f"jax-{impl}"] = ([], n_params, jax_step)
    flops = model_flops(cfg, s["batch"], s["length"], s["length"])
    if torch_version and s.get("accum", 1) == 1:  # the peer takes the batch in one piece
      import torch
      torch.set_num_threads(os.cpu_count())
      t_params, torch_step = torch_peer.runner(s)
      runs["torch"] = ([], t_params, torch_step)
    for _ in range(args.rounds):  # alternate so that drifts of the machine hit both alike
      for times, _, step in runs.values():
        times.extend(_time(step) for _ in range(args.repeats))
    medians = {}
    for fw, (times, params, _) in runs.items():
      t = float(np.median(times))
      medians[fw] = t
      print(f"{name:6s} {fw:10s} params {params / 1e6:6.2f}M  step {t * 1e3:7.1f} ms "
            f"(min {min(times) * 1e3:.1f}, max {max(times) * 1e3:.1f})  "
            f"{tokens / t:8.0f} target tok/s  MFU {flops / t / peak:6.1%}")
    if "torch" in medians and "jax" in medians:
      print(f"{name:6s} jax / torch target tokens/s: {medians['torch'] / medians['jax']:.2f}x")
    first = next(iter(medians))
    for fw in medians:
      if fw.startswith("jax-") and fw != first:
        print(f"{name:6s} {fw} / {first} target tokens/s: {medians[first] / medians[fw]:.2f}x")


if __name__ == "__main__":
  main()
