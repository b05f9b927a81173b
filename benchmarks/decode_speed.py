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


def measure(workdir: pathlib.Path, n_lines: int = 200, beam_size: int = 4,
            modes: tuple[bool, ...] = (True, False)) -> dict:
  """Sentences/s of beam search with the workdir's parameters, per mode (use_cache), after a
  warm-up pass over the same sentences; also benchmarks/device_check.py's decoding figure.

  Returns:
    {'source': params used, 'lines': n, 'rates': {use_cache: sentences/s},
     'seconds': {use_cache: s}, 'outputs': {use_cache: translations}}.
  """
  flags.FLAGS(sys.argv[:1])  # the CLI's loader reads --params/--step from absl flags
  config, model, tokenizer, params, source = cli._load_run(pathlib.Path(workdir))
  lines = (ASSETS / "multi30k" / "test2016.en").read_text(encoding="utf-8").splitlines()
  lines = lines[:n_lines]
  out = {"source": source, "lines": len(lines), "rates": {}, "seconds": {}, "outputs": {}}
  for use_cache in modes:
    kwargs = dict(beam_size=beam_size, alpha=config.decode.alpha,
                  max_extra_len=config.decode.max_extra_len,
                  batch_size=config.decode.batch_size, use_cache=use_cache)
    evaluate.translate_lines(model, params, tokenizer, lines, **kwargs)  # compile
    start = time.perf_counter()
    out["outputs"][use_cache] = evaluate.translate_lines(model, params, tokenizer, lines,
                                                         **kwargs)
    out["seconds"][use_cache] = time.perf_counter() - start
    out["rates"][use_cache] = len(lines) / out["seconds"][use_cache]
  return out


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--workdir", required=True)
  parser.add_argument("--lines", type=int, default=200)
  parser.add_argument("--beam_size", type=int, default=4)
  args = parser.parse_args()
  m = measure(pathlib.Path(args.workdir), args.lines, args.beam_size)
  print(f"{m['lines']} sentences of test2016, beam {args.beam_size}, params {m['source']}")
  for use_cache in (True, False):
    print(f"{'cached' if use_cache else 'uncached':9s} {m['seconds'][use_cache]:7.1f} s  "
          f"{m['rates'][use_cache]:7.1f} sentences/s")
  same = sum(a == b for a, b in zip(m["outputs"][True], m["outputs"][False]))
  print(f"cached / uncached speed: {m['rates'][True] / m['rates'][False]:.1f}x; "
        f"identical translations: {same}/{m['lines']}")


if __name__ == "__main__":
  main()
