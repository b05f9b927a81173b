"""A run's hyperparameters and final metrics in its own TensorBoard events (HParams dashboard).

`write_record(workdir, record)` writes, into WORKDIR/tb (the directory the run's training
scalars are in, so TensorBoard counts it as the same run), one events file named
`*.hparams` holding:
  * the HParams plugin's session start info: the run's hyperparameters, i.e. its overrides
    (e.g. "model.h": 4), "seed" and "group" (record["run"], or compare.run_key's back-compat
    derivation for records without one);
  * the final metrics as scalars "hparams/dev_ppl" (per wordpiece) and "hparams/dev_bleu"
    (sacreBLEU), at the run's last step;
  * the session end info (status success).
`tensorboard --logdir ROOT` then shows a sweep as one HParams row per run.

Two choices keep the dashboard right. tensorboardX's `SummaryWriter.add_hparams` writes into a
new sub-directory of the log directory, which TensorBoard shows as a second, stray run; here the
summaries from `tensorboardX.summary.hparams` go through a writer on the run's own directory.
And no per-run experiment summary is written: TensorBoard takes the first experiment summary it
finds as the whole sweep's column list, so runs with other overrides would lose their columns;
without one it builds the columns from every run's session start info (and the metrics from
every scalar tag). Writing again (a rerun of the same workdir) replaces the earlier file.
"""

from __future__ import annotations

import json
import pathlib
from typing import Any

import tensorboardX
from tensorboardX import summary

SUFFIX = ".hparams"  # events file name suffix, so a rewrite can find and replace its file
METRICS = {"hparams/dev_ppl": "dev_ppl", "hparams/dev_bleu": "dev_bleu"}  # tag -> record key


def hparams_of(run: dict[str, Any]) -> dict[str, bool | int | float | str]:
  """The hyperparameters of a run key ({group, overrides, seed, ...}): every override under its
  config key, plus 'seed' and 'group'. Values TensorBoard cannot show (lists, None) become JSON
  strings."""
  values = {**run.get("overrides", {}), "seed": run["seed"], "group": run["group"]}
  return {k: v if isinstance(v, (bool, int, float, str)) else json.dumps(v)
          for k, v in values.items()}


def write(logdir: str | pathlib.Path, hparams: dict[str, Any], metrics: dict[str, float],
          step: int) -> pathlib.Path:
  """Writes session start info (`hparams`), `metrics` as scalars at `step` and session end
  info into `logdir`, replacing an earlier file of this kind there. Returns the file's path."""
  logdir = pathlib.Path(logdir)
  logdir.mkdir(parents=True, exist_ok=True)
  for old in logdir.glob(f"*tfevents*{SUFFIX}"):
    old.unlink()
  _, start, end = summary.hparams(hparams, metrics)  # the experiment summary is left out
  with tensorboardX.SummaryWriter(str(logdir), filename_suffix=SUFFIX) as writer:
    writer.file_writer.add_summary(start, step)
    for tag, value in metrics.items():
      writer.add_scalar(tag, value, step)
    writer.file_writer.add_summary(end, step)
  return next(logdir.glob(f"*tfevents*{SUFFIX}"))


def write_record(workdir: str | pathlib.Path, record: dict[str, Any]) -> pathlib.Path:
  """The run record's hyperparameters and final dev metrics into WORKDIR/tb (see the module
  docstring). Returns the events file's path."""
  from transformer_jax.experiments.compare import run_key
  metrics = {tag: float(record[key]) for tag, key in METRICS.items()}
  return write(pathlib.Path(workdir) / "tb", hparams_of(run_key(record)), metrics,
               int(record.get("steps") or 0))
