r"""Beam-search decoding speed, with and without the per-layer key/value cache.

  python benchmarks/decode_speed.py --workdir=runs/multi30k [--lines=200] [--beam_size=4]

Translates the first --lines sentences of the embedded Multi30k test2016 with the workdir's
final parameters, once per mode, after a warm-up pass over the same sentences (so compile time
is excluded), and prints sentences per second for each mode and their ratio. Both modes share
the beam-search code and give the same tokens (tests/test_decode.py); uncached recomputes the
whole prefix with a full decoder pass at every step.
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import time

from absl import flags

from transformer_jax import evaluate
from transformer_jax import main as cli
from transformer_jax.config import ASSETS


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--workdir", required=True)
  parser.add_argument("--lines", type=int, default=200)
  parser.add_argument("--beam_size", type=int, default=4)
  args = parser.parse_args()
  flags.FLAGS(sys.argv[:1])  # the CLI's loader reads --params/--step from absl flags
  config, model, tokenizer, params, source = cli._load_run(pathlib.Path(args.workdir))
  lines = (ASSETS / "multi30k" / "test2016.en").read_text(encoding="utf-8").splitlines()
  lines = lines[:args.lines]
  print(f"{len(lines)} sentences of test2016, beam {args.beam_size}, params {source}")
  rates, outputs = {}, {}
  for use_cache in (True, False):
    kwargs = dict(beam_size=args.beam_size, alpha=config.decode.alpha,
                  max_extra_len=config.decode.max_extra_len,
                  batch_size=config.decode.batch_size, use_cache=use_cache)
    evaluate.translate_lines(model, params, tokenizer, lines, **kwargs)  # compile
    start = time.perf_counter()
    outputs[use_cache] = evaluate.translate_lines(model, params, tokenizer, lines, **kwargs)
    seconds = time.perf_counter() - start
    rates[use_cache] = len(lines) / seconds
    print(f"{'cached' if use_cache else 'uncached':9s} {seconds:7.1f} s  "
          f"{rates[use_cache]:7.1f} sentences/s")
  same = sum(a == b for a, b in zip(outputs[True], outputs[False]))
  print(f"cached / uncached speed: {rates[True] / rates[False]:.1f}x; "
        f"identical translations: {same}/{len(lines)}")


if __name__ == "__main__":
  main()
