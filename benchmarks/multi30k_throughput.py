r"""End-to-end training throughput of the main job (configs/multi30k.py), input pipeline included.

  python benchmarks/multi30k_throughput.py [--steps=300] [--warmup_steps=100] [--log_every=50]
                                           [--workdir=DIR] [--no_huge_pages]

Trains configs/multi30k.py on the embedded Multi30k data for --steps steps, in this process
through transformer_jax.train.train, so with everything `transformer-jax train` runs: the
SentencePiece vocabulary, the bucketed batches, the prefetch thread and the train step. The
workdir is a fresh temporary one (removed afterwards) or --workdir, which must be new or empty.
Final evaluation is off; dev evaluation and checkpointing happen once, at the last step, after
the last log interval. Then it prints, from WORKDIR/metrics.jsonl and train()'s result:

  - real (non-PAD) target tokens per second: the median over the log intervals (--log_every
    steps) that start at or after step --warmup_steps (XLA compiles each new batch shape before
    that), and the mean over the whole run, compiles included;
  - the padding fraction of target and source positions over one epoch of batches;
  - input wait: the fraction of training time the loop spent blocked on the next batch, median
    and max over the post-warm-up intervals and over the whole run. It is an upper bound on the
    device's wait for input: with asynchronous dispatch the previous step may still be running
    while the loop waits;
  - the process's peak host RSS (MiB) and the machine (platform, cores, jax, glibc,
    GLIBC_TUNABLES).

Like the `transformer-jax` CLI, it re-executes itself with GLIBC_TUNABLES=glibc.malloc.hugetlb=1
when that tunable is unset (transformer_jax.main._reexec_with_huge_pages; also off with
TRANSFORMER_JAX_HUGE_PAGES=0); --no_huge_pages runs with the environment as it is. Run it on an
otherwise idle machine: the training uses every core.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import resource
import statistics
import sys
import tempfile

from transformer_jax import config as config_lib

CONFIG = pathlib.Path(__file__).resolve().parent.parent / "configs" / "multi30k.py"


def huge_pages(no_huge_pages: bool) -> str:
  """Re-executes this script with malloc huge pages unless told not to; says how it runs."""
  if not no_huge_pages:
    from transformer_jax.main import _reexec_with_huge_pages
    _reexec_with_huge_pages([sys.executable, *sys.argv])  # returns only if it does not re-exec
  on = "glibc.malloc.hugetlb" in os.environ.get("GLIBC_TUNABLES", "")
  return f"malloc huge pages (glibc.malloc.hugetlb=1): {'on' if on else 'off'}"


def load_config(steps: int, log_every: int):
  """configs/multi30k.py's config, set up for a timed run."""
  config = config_lib.load_file(CONFIG)
  config.train.steps = steps
  config.train.log_every = log_every
  config.train.eval_every = steps  # dev evaluation and checkpoint only at the last step
  config.train.checkpoint_every = steps
  config.train.final_eval = False
  return config


def _pct(x: float | None) -> str:
  return "n/a" if x is None else f"{x:.1%}"


def summarize(workdir: pathlib.Path, result: dict, warmup_steps: int) -> list[str]:
  """Lines of figures from WORKDIR/metrics.jsonl and train()'s `result`."""
  records = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
  info = next((r for r in records if r["kind"] == "info" and r["step"] == 0), {})
  train_records = sorted((r for r in records if r["kind"] == "train"), key=lambda r: r["step"])
  starts = [0] + [r["step"] for r in train_records[:-1]]
  post = [r for r, start in zip(train_records, starts) if start >= warmup_steps]
  lines = []

  seen, train_s = result["target_tokens_seen"], result["train_seconds"]
  if post:
    tok = [r["tokens_per_sec"] for r in post]
    head = (f"median {statistics.median(tok):.0f} over {len(post)} intervals from step "
            f"{warmup_steps} (min {min(tok):.0f}, max {max(tok):.0f})")
  else:
    head = f"no log interval starts at or after step {warmup_steps} (--warmup_steps)"
  lines.append(f"target tokens/s (non-PAD): {head}; mean {seen / max(train_s, 1e-9):.0f} over "
               f"the whole run ({seen:.0f} tokens in {train_s:.1f} s, compiles included)")

  lines.append(f"padding: {_pct(info.get('pad_tgt_pad_fraction'))} of target and "
               f"{_pct(info.get('pad_src_pad_fraction'))} of source positions (one epoch: "
               f"{info.get('pad_num_batches', 'n/a')} batches in "
               f"{info.get('pad_num_shapes', 'n/a')} shapes)")

  waits = [r["input_wait_fraction"] for r in post if "input_wait_fraction" in r]
  post_wait = (f"median {_pct(statistics.median(waits))}, max {_pct(max(waits))} of "
               "post-warm-up interval time" if waits
               else "no post-warm-up interval with input_wait_fraction")
  wait_s = result.get("input_wait_seconds")
  total_wait = ("n/a" if wait_s is None else
                f"{_pct(wait_s / max(train_s, 1e-9))} of the whole run ({wait_s:.2f} s of "
                f"{train_s:.1f} s)")
  lines.append(f"input wait (loop blocked in next(batches)): {post_wait}; {total_wait}. An upper "
               "bound on the device's wait: with asynchronous dispatch the previous step may "
               "still run while the loop waits")

  loop_s = result.get("loop_seconds", float("nan"))
  lines.append(f"run: {result['steps_run']} steps, {result['params'] / 1e6:.2f}M parameters; "
               f"loop {loop_s:.1f} s, of which log intervals {train_s:.1f} s (the rest: the "
               "dev evaluation and checkpoint at the last step)")
  rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
  lines.append(f"peak host RSS: {rss / 1024:.0f} MiB")
  return lines


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--steps", type=int, default=300, help="training steps")
  parser.add_argument("--warmup_steps", type=int, default=100,
                      help="log intervals starting before this step are left out of the median")
  parser.add_argument("--log_every", type=int, default=50, help="steps per log interval")
  parser.add_argument("--workdir", default=None,
                      help="new or empty run directory, kept (default: a temporary one)")
  parser.add_argument("--no_huge_pages", action="store_true",
                      help="do not re-execute with GLIBC_TUNABLES=glibc.malloc.hugetlb=1")
  args = parser.parse_args()
  if args.steps < 1 or args.log_every < 1:
    parser.error("--steps and --log_every must be >= 1")
  pages = huge_pages(args.no_huge_pages)

  import jax  # after the re-exec, so that it is imported once
  from transformer_jax import train

  print(f"machine: {platform.machine()}, {platform.platform()}, {os.cpu_count()} cores; "
        f"jax {jax.__version__}, device {jax.devices()[0].device_kind}; "
        f"{' '.join(platform.libc_ver())}; GLIBC_TUNABLES={os.environ.get('GLIBC_TUNABLES')}",
        flush=True)
  print(pages, flush=True)
  print(f"training {CONFIG.relative_to(CONFIG.parent.parent)} for {args.steps} steps, logging "
        f"every {args.log_every}, warm-up {args.warmup_steps} steps", flush=True)
  config = load_config(args.steps, args.log_every)
  log = lambda message: print(message, file=sys.stderr, flush=True)  # noqa: E731

  with tempfile.TemporaryDirectory(prefix="multi30k_throughput_") as tmp:
    workdir = pathlib.Path(args.workdir or tmp)
    if workdir.exists() and any(workdir.iterdir()):
      raise SystemExit(f"error: --workdir={workdir} is not empty; the benchmark needs a fresh "
                       "run (a resumed one would skip the compiles and the vocabulary)")
    result = train.train(config, workdir, log=log)
    if "stopped_by" in result:
      raise SystemExit(f"stopped by {result['stopped_by']} at step {result['step']}")
    for line in summarize(workdir, result, args.warmup_steps):
      print(line)


if __name__ == "__main__":
  main()
