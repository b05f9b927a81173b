"""`config.train.profile_steps`: a `jax.profiler` trace of chosen train steps.

`--config.train.profile_steps=11-13` traces steps 11 to 13 (as numbered in metrics.jsonl; one
number traces one step) into WORKDIR/tb/plugins/profile/<time>/: an .xplane.pb for TensorBoard's
profile plugin (`pip install xprof`, then `tensorboard --logdir WORKDIR/tb`), and
perfetto_trace.json.gz for https://ui.perfetto.dev. Pick steps after the first few, which
compile. Every process traces its own devices into the same directory.
"""

from __future__ import annotations

import pathlib
import re
from typing import Any, Callable, Optional

import jax

from transformer_jax.config import ConfigError

_SPEC = re.compile(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?")


def parse_steps(spec: str) -> Optional[tuple[int, int]]:
  """'' -> None; 'N' -> (N, N); 'N-M' -> (N, M).

  Raises:
    ConfigError: anything else, or not 1 <= N <= M (names config.train.profile_steps).
  """
  if not spec.strip():
    return None
  match = _SPEC.fullmatch(spec)
  first, last = (int(match.group(1)), int(match.group(2) or match.group(1))) if match else (0, 0)
  if not 1 <= first <= last:
    raise ConfigError("config.train.profile_steps must be '' (off), 'N' or 'FIRST-LAST' with "
                      f"1 <= FIRST <= LAST, got {spec!r}")
  return first, last


class StepTrace:
  """Starts the trace before the first chosen step and stops it after the last.

  Call `before(step)` ahead of each step, `after(step, outputs)` once it is dispatched, and
  `close()` at the end (it stops a trace a stopped or failed run left open).
  """

  def __init__(self, spec: str, log_dir: pathlib.Path, log: Callable[[str], None] = print):
    self.steps = parse_steps(spec)
    self.log_dir = pathlib.Path(log_dir)
    self.log = log
    self.running = False

  def before(self, step: int) -> None:
    if self.steps and not self.running and self.steps[0] <= step <= self.steps[1]:
      jax.profiler.start_trace(str(self.log_dir), create_perfetto_trace=True)
      self.running = True

  def after(self, step: int, outputs: Any) -> None:
    if self.running and step >= self.steps[1]:
      jax.block_until_ready(outputs)  # the traced steps' device work ends inside the trace
      self.close()

  def close(self) -> None:
    if self.running:
      jax.profiler.stop_trace()
      self.running = False
      self.log(f"profile of steps {self.steps[0]}-{self.steps[1]} written under "
               f"{self.log_dir / 'plugins' / 'profile'} (TensorBoard profile plugin, Perfetto)")
