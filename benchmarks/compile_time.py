r"""Compile time of the main job's train step, one batch shape at a time, in sequence and in threads.

  python benchmarks/compile_time.py      # from the repository root; XLA_FLAGS are honoured

Prints wall and CPU seconds of `jax.jit(train_step).lower(...).compile()` for one shape of
configs/multi30k.py's model, for two more shapes one after the other, and for two more in two
threads: whether compiling a run's batch shapes ahead in parallel would pay (issue 16; the
main job compiles 35 shapes). Latest results: benchmarks/RESULTS.md.
"""

from __future__ import annotations

import functools
import pathlib
import resource
import time
from concurrent.futures import ThreadPoolExecutor

import jax
import jax.numpy as jnp

from transformer_jax import config as config_lib
from transformer_jax import optim, train
from transformer_jax.config import model_config
from transformer_jax.model import Transformer

ROOT = pathlib.Path(__file__).resolve().parents[1]
# (rows, source length, target length), shapes of the kind the main job's buckets make
SHAPES = [(64, 24, 26), (80, 20, 20), (48, 32, 34), (100, 16, 16), (40, 40, 40)]


def _cpu_s() -> float:
  usage = resource.getrusage(resource.RUSAGE_SELF)
  return usage.ru_utime + usage.ru_stime


def main() -> None:
  config = config_lib.load_file(ROOT / "configs" / "multi30k.py")
  model = Transformer(model_config(config))
  tx, _ = optim.make_optimizer(config)
  state = train.abstract_state(config, model)
  key = jax.eval_shape(lambda: jax.random.key(1, impl=config.train.dropout_prng))
  step = jax.jit(functools.partial(train.train_step, model=model, tx=tx,
                                   eps_ls=config.train.eps_ls), donate_argnums=(0,))

  def compile_shape(shape: tuple[int, int, int]) -> None:
    rows, src_len, tgt_len = shape
    batch = {"src": jax.ShapeDtypeStruct((rows, src_len), jnp.int32),
             "tgt_in": jax.ShapeDtypeStruct((rows, tgt_len), jnp.int32),
             "tgt_out": jax.ShapeDtypeStruct((rows, tgt_len), jnp.int32)}
    step.lower(state, batch, key).compile()

  def timed(label: str, fn) -> None:
    wall, cpu = time.perf_counter(), _cpu_s()
    fn()
    print(f"{label}: wall {time.perf_counter() - wall:.1f} s, CPU {_cpu_s() - cpu:.1f} s",
          flush=True)

  timed("one shape", lambda: compile_shape(SHAPES[0]))
  timed("two shapes in sequence", lambda: [compile_shape(s) for s in SHAPES[1:3]])
  with ThreadPoolExecutor(2) as pool:
    timed("two shapes in two threads", lambda: list(pool.map(compile_shape, SHAPES[3:5])))


if __name__ == "__main__":
  main()
