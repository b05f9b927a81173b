"""Sweeps: every chosen Table 3 row x seed as its own run under one root directory.

A sweep is a list of runs; run (row, seed) lives in ROOT/ROW/seedK and is the command
  transformer-jax run --config=CONFIG:ROW,scale=SCALE,seed=K --workdir=ROOT/ROW/seedK
started as a subprocess whose output goes to ROOT/ROW/seedK/run.log. The sweep is idempotent: a
run whose result.json exists is skipped, and an interrupted one resumes from its checkpoint
(the train command resumes by itself). Each run holds its workdir while it runs
(workdir.hold), so two sweeps on one root never run one run twice: the second one's attempt
exits with EX_TEMPFAIL and is reported as claimed by another process. `dry_run` prints the commands instead, one per line, so
the same sweep can be sent to other machines (e.g. one Cloud TPU VM per run).
"""

from __future__ import annotations

import dataclasses
import pathlib
import shlex
import subprocess
import sys
import time
from typing import Callable, Sequence

from transformer_jax import run_record
from transformer_jax import table3
from transformer_jax import workdir as workdir_lib


class SweepError(ValueError):
  """A sweep argument is invalid; the message names the flag."""


@dataclasses.dataclass(frozen=True)
class Run:
  """One run of a sweep: Table 3 row `row` with seed `seed` in `workdir`."""
  row: str
  seed: int
  workdir: pathlib.Path
  argv: tuple[str, ...]

  @property
  def finished(self) -> bool:
    return (self.workdir / run_record.RESULT).exists()

  def command(self) -> str:
    """The shell command of this run, with the `transformer-jax` entry point."""
    return " ".join(["transformer-jax", *map(shlex.quote, self.argv[3:])])


def select_rows(spec: str) -> list[str]:
  """Row names from a comma-separated list of rows and groups ('A,B-dk16,big'), in Table 3's
  order, always with 'base' (every comparison is against it). '' or 'all' = every row.

  Raises:
    SweepError: an entry is neither a row nor a group (the message lists both).
  """
  entries = [e.strip() for e in spec.split(",") if e.strip()]
  if not entries or entries == ["all"]:
    return list(table3.ROWS)
  groups = {table3.group(r) for r in table3.ROWS}
  chosen = {"base"}
  for entry in entries:
    if entry in table3.ROWS:
      chosen.add(entry)
    elif entry in groups:
      chosen.update(r for r in table3.ROWS if table3.group(r) == entry)
    else:
      raise SweepError(f"--rows: {entry!r} is neither a Table 3 row nor a group; rows: "
                       f"{', '.join(table3.ROWS)}; groups: {', '.join(sorted(groups))}")
  return [r for r in table3.ROWS if r in chosen]


def plan(config_path: str, rows: Sequence[str], *, seeds: int, scale: str,
         root: str | pathlib.Path, extra_args: Sequence[str] = ()) -> list[Run]:
  """The runs of a sweep, row-major (all seeds of a row together).

  Args:
    config_path: the Table 3 config file (configs/table3.py).
    rows: row names (see select_rows).
    seeds: seeds per row, 0..seeds-1.
    scale: 'paper' or 'mini'.
    root: directory holding one workdir per run.
    extra_args: passed to every run, e.g. ('--config.train.steps=10',).

  Raises:
    SweepError: seeds < 1 or an unknown scale.
  """
  if seeds < 1:
    raise SweepError(f"--seeds must be >= 1, got {seeds}")
  if scale not in table3.SCALES:
    raise SweepError(f"--scale must be one of {table3.SCALES}, got {scale!r}")
  runs = []
  for row in rows:
    for seed in range(seeds):
      workdir = pathlib.Path(root) / row / f"seed{seed}"
      argv = (sys.executable, "-m", "transformer_jax.main", "run",
              f"--config={config_path}:{row},scale={scale},seed={seed}", f"--workdir={workdir}",
              *extra_args)
      runs.append(Run(row, seed, workdir, argv))
  return runs


def execute(runs: Sequence[Run], *, parallel: int = 1, log: Callable[[str], None] = print,
            poll_seconds: float = 1.0) -> dict[str, list[Run]]:
  """Runs the unfinished runs, `parallel` at a time, each as a subprocess logging to run.log.

  A failed run does not stop the others; it is reported at the end.

  Returns:
    {'skipped': finished before, 'done': finished now, 'busy': claimed by another process (the
    run exited with EX_TEMPFAIL: another sweep or `run` holds its workdir), 'failed': exited
    otherwise non-zero or wrote no result.json}.

  Raises:
    SweepError: parallel < 1.
  """
  if parallel < 1:
    raise SweepError(f"--parallel must be >= 1, got {parallel}")
  out: dict[str, list[Run]] = {"skipped": [], "done": [], "failed": [], "busy": []}
  todo = []
  for r in runs:
    (out["skipped"] if r.finished else todo).append(r)
  for r in out["skipped"]:
    log(f"skip {r.row} seed {r.seed}: {r.workdir / run_record.RESULT} exists")
  active: list[tuple[Run, subprocess.Popen, float]] = []
  while todo or active:
    while todo and len(active) < parallel:
      r = todo.pop(0)
      r.workdir.mkdir(parents=True, exist_ok=True)
      resuming = (r.workdir / "checkpoints").exists()
      log(f"{'resume' if resuming else 'start'} {r.row} seed {r.seed}: {r.command()}")
      logfile = open(r.workdir / "run.log", "a", encoding="utf-8")
      proc = subprocess.Popen(r.argv, stdout=logfile, stderr=subprocess.STDOUT)
      logfile.close()
      active.append((r, proc, time.perf_counter()))
    time.sleep(poll_seconds if active else 0)
    for item in list(active):
      r, proc, started = item
      if proc.poll() is None:
        continue
      active.remove(item)
      minutes = (time.perf_counter() - started) / 60
      if proc.returncode == 0 and r.finished:
        out["done"].append(r)
        log(f"done {r.row} seed {r.seed} in {minutes:.1f} min")
      elif proc.returncode == workdir_lib.EX_TEMPFAIL:
        out["busy"].append(r)
        log(f"skip {r.row} seed {r.seed}: claimed by another process (its workdir "
            f"{r.workdir} is held; see {r.workdir / 'run.log'})")
      else:
        out["failed"].append(r)
        log(f"FAILED {r.row} seed {r.seed} (exit {proc.returncode}) after {minutes:.1f} min; "
            f"see {r.workdir / 'run.log'}")
  return out
