"""The run directory: checks that it is usable and that a resumed run matches what it holds.

A workdir holds config.json (the config of the run that last wrote it), the vocabulary and
checkpoints/. Resuming with a different model or different data would restore parameters into
the wrong shapes or continue from a data position that means something else, so `check_config`
refuses such a change unless asked (`--allow_config_change`), and even then refuses any change
of parameter shapes.
"""

from __future__ import annotations

import json
import pathlib
import tempfile
from typing import Callable

import ml_collections

from transformer_jax import config as config_lib

# Sections whose keys may differ on resume without --allow_config_change: they change neither
# the parameters nor the batch stream the checkpoint's data position refers to.
FREE_SECTIONS = ("train", "decode")


class WorkdirError(RuntimeError):
  """The workdir cannot be used; the message names the path and what was expected."""


def prepare(workdir: str | pathlib.Path) -> pathlib.Path:
  """Creates `workdir` if needed and checks that files can be written in it.

  Returns:
    The workdir as a Path.

  Raises:
    WorkdirError: the path is an existing non-directory, or cannot be created or written
      (permissions, read-only file system, a parent that is a file).
  """
  workdir = pathlib.Path(workdir)
  if workdir.exists() and not workdir.is_dir():
    raise WorkdirError(f"workdir {workdir} is an existing file, not a directory (expected a "
                       "directory for checkpoints and logs, or a path to create one at)")
  try:
    workdir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryFile(dir=workdir):
      pass
  except OSError as e:
    raise WorkdirError(f"workdir {workdir} is not writable ({e.strerror}: {e.filename}); "
                       "expected a directory this user can create files in") from None
  return workdir


def has_checkpoints(workdir: pathlib.Path) -> bool:
  """Whether WORKDIR/checkpoints holds at least one step directory."""
  directory = workdir / "checkpoints"
  return directory.is_dir() and any(p.name.isdigit() for p in directory.iterdir())


def _param_shapes(config: ml_collections.ConfigDict) -> dict[str, tuple]:
  """{parameter path: shape} of the model `config` describes, without allocating it."""
  import jax
  from transformer_jax.model import param_shapes
  flat = jax.tree_util.tree_flatten_with_path(param_shapes(config_lib.model_config(config)))[0]
  return {jax.tree_util.keystr(path): tuple(leaf.shape) for path, leaf in flat}


def _with(config: ml_collections.ConfigDict, key: str, value) -> ml_collections.ConfigDict:
  copy = ml_collections.ConfigDict(config.to_dict())
  section, name = key.split(".")
  copy[section][name] = value
  return copy


def check_config(workdir: pathlib.Path, config: ml_collections.ConfigDict, *,
                 allow_change: bool = False, log: Callable[[str], None] = print) -> None:
  """Compares `config` with WORKDIR/config.json before a run resumes from its checkpoints.

  Differences in train.* and decode.* are logged and allowed. Differences in model.* or data.*
  are refused unless `allow_change`; with it they are logged and allowed as long as every
  parameter keeps its shape. Nothing is checked when the workdir has no checkpoint yet.

  Raises:
    ConfigError: model.*/data.* keys differ without `allow_change` (each named with its saved
      and requested value), or with it, keys that change parameter shapes (named).
  """
  path = workdir / "config.json"
  if not path.exists() or not has_checkpoints(workdir):
    return
  saved = ml_collections.ConfigDict(json.loads(path.read_text()))
  free, guarded = [], {}
  for section, values in config.items():
    for name, value in values.items():
      if name not in saved.get(section, {}):
        continue
      old = saved[section][name]
      if (list(old) if isinstance(old, (list, tuple)) else old) != (
          list(value) if isinstance(value, (list, tuple)) else value):
        text = f"{section}.{name}: saved {old!r}, requested {value!r}"
        if section in FREE_SECTIONS:
          free.append(text)
        else:
          guarded[f"{section}.{name}"] = (text, value)
  if free:
    log(f"config differs from {path} in " + "; ".join(free))
  if not guarded:
    return
  if not allow_change:
    raise config_lib.ConfigError(
        f"{path} was written for a different model or data; use a new --workdir, the same "
        "config, or --allow_config_change to resume with changes that keep the parameter "
        "shapes. Differing keys: " + "; ".join(text for text, _ in guarded.values()))
  before = _param_shapes(saved)
  if _param_shapes(config) != before:
    reshaping = []
    for key, (text, value) in guarded.items():
      try:
        changed = _param_shapes(_with(saved, key, value))
      except config_lib.ConfigError:
        changed = None
      if changed != before:
        reshaping.append(text)
    raise config_lib.ConfigError(
        f"--allow_config_change cannot resume {workdir} with a model of other parameter "
        "shapes: the checkpoints cannot be restored into it; use a new --workdir. Keys that "
        "change shapes: " + "; ".join(reshaping or [text for text, _ in guarded.values()]))
  log("warning: resuming with config changes (--allow_config_change): "
      + "; ".join(text for text, _ in guarded.values())
      + ". Changed data.* keys change the batches from here on.")
