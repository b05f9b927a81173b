"""Checkpoints through orbax: save, resume, and checkpoint averaging (Section 6.1).

Layout: WORKDIR/checkpoints/<step>/{state,meta}. `state` holds parameters, optimizer state and
the step; `meta` (JSON) holds the data position and anything else needed to resume.
"""

from __future__ import annotations

import pathlib
import shutil
from typing import Any, Callable, Optional, Sequence

import jax
import numpy as np
from jax.experimental import multihost_utils
import orbax.checkpoint as ocp


class Checkpoints:
  """A series of training checkpoints in `directory`, the newest `keep` kept.

  Saving is asynchronous (orbax writes in the background and commits atomically); call `wait()`
  before reading what was saved or before exiting.
  """

  def __init__(self, directory: str | pathlib.Path, keep: int = 5, async_save: bool = True):
    self.directory = pathlib.Path(directory).absolute()
    self._options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True,
                                                 enable_async_checkpointing=async_save)
    self._open()

  def _open(self) -> None:
    self._manager = ocp.CheckpointManager(self.directory, options=self._options,
                                          item_names=("state", "meta"))

  def save(self, step: int, state: Any, meta: dict[str, Any]) -> None:
    """Writes `state` (a pytree of arrays) and `meta` (JSON-able dict) as checkpoint `step`."""
    self._manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                                     meta=ocp.args.JsonSave(meta)), force=True)

  def wait(self) -> None:
    """Blocks until every pending save is on disk."""
    self._manager.wait_until_finished()

  def steps(self) -> list[int]:
    """Steps of the checkpoints on disk, ascending."""
    return sorted(self._manager.all_steps())

  def latest_step(self) -> Optional[int]:
    return self._manager.latest_step()

  def restore(self, step: int, abstract_state: Any) -> tuple[Any, dict[str, Any]]:
    """Reads checkpoint `step` into the structure, shapes and shardings of `abstract_state`.

    Returns:
      (state, meta).
    """
    out = self._manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract_state), meta=ocp.args.JsonRestore()))
    return out["state"], dict(out["meta"])

  def restore_latest(self, abstract_state: Any, log: Callable[[str], None] = print
                     ) -> tuple[Optional[int], Any, dict[str, Any]]:
    """Restores the newest readable checkpoint, newest first.

    A checkpoint that cannot be read (corrupted or half-written files) is reported through
    `log` and moved, untouched, to `<directory>/../corrupt_checkpoints/<step>`, and the next
    older one is tried; nothing is deleted.

    Returns:
      (step, state, meta), or (None, abstract_state, {}) when there is no checkpoint.

    Raises:
      RuntimeError: checkpoints exist but none of them can be read.
    """
    steps = self.steps()
    for step in reversed(steps):
      try:
        state, meta = self.restore(step, abstract_state)
        return step, state, meta
      except Exception as e:  # orbax raises many types for damaged files
        aside = self.directory.parent / "corrupt_checkpoints" / str(step)
        log(f"warning: checkpoint {self.directory / str(step)} cannot be read "
            f"({type(e).__name__}: {str(e)[:200]}); moved it to {aside} and trying an older one")
        self._manager.close()
        if jax.process_index() == 0:  # several processes share the directory: one moves it
          aside.parent.mkdir(parents=True, exist_ok=True)
          shutil.move(str(self.directory / str(step)), str(aside))
        if jax.process_count() > 1:
          multihost_utils.sync_global_devices(f"moved checkpoint {step}")
        self._open()
    if steps:
      raise RuntimeError(f"none of the checkpoints {steps} in {self.directory} can be read; "
                         f"they were moved to {self.directory.parent / 'corrupt_checkpoints'}")
    return None, abstract_state, {}

  def close(self) -> None:
    self._manager.close()


def average_params(ckpts: Checkpoints, steps: Sequence[int], abstract_state: Any) -> Any:
  """Element-wise mean of the parameters of checkpoints `steps` (Section 6.1).

  The paper averages the last 5 (base) or 20 (big) checkpoints. The mean is accumulated in
  float64 on the host so the result does not depend on the order of the steps.

  Raises:
    ValueError: `steps` is empty.
  """
  if not steps:
    raise ValueError("no checkpoints to average")
  total = None
  for step in steps:
    state, _ = ckpts.restore(step, abstract_state)
    params = state.params if hasattr(state, "params") else state["params"]  # TrainState | dict
    params = jax.tree_util.tree_map(lambda x: np.asarray(x, np.float64), params)
    total = params if total is None else jax.tree_util.tree_map(np.add, total, params)
  return jax.tree_util.tree_map(lambda x: (x / len(steps)).astype(np.float32), total)


def save_params(path: str | pathlib.Path, params: Any) -> None:
  """Writes a parameter tree (e.g. an average) to `path` atomically, replacing what was there."""
  with ocp.StandardCheckpointer() as checkpointer:
    checkpointer.save(pathlib.Path(path).absolute(), params, force=True)


def load_params(path: str | pathlib.Path, abstract_params: Any) -> Any:
  """Reads a tree written by `save_params` into the structure of `abstract_params`."""
  with ocp.StandardCheckpointer() as checkpointer:
    return checkpointer.restore(pathlib.Path(path).absolute(), abstract_params)
