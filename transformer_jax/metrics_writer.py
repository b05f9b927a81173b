"""Training logs: one JSON object per line in WORKDIR/metrics.jsonl, and TensorBoard events.

Each line is {"step": int, "kind": "train" | "val" | "final" | "info", "time": unix seconds,
...values}. TensorBoard events (tensorboardX, no TensorFlow needed) go to WORKDIR/tb as
"<kind>/<name>" scalars.
"""

from __future__ import annotations

import json
import pathlib
import time
from typing import Any

import tensorboardX


class MetricsWriter:
  """Appends to metrics.jsonl (so a resumed run continues the same file) and TensorBoard."""

  def __init__(self, workdir: str | pathlib.Path):
    workdir = pathlib.Path(workdir)
    self._file = open(workdir / "metrics.jsonl", "a", encoding="utf-8")
    self._tb = tensorboardX.SummaryWriter(str(workdir / "tb"))

  def write(self, step: int, values: dict[str, Any], *, kind: str) -> None:
    record = {"step": int(step), "kind": kind, "time": round(time.time(), 3), **values}
    self._file.write(json.dumps(record) + "\n")
    self._file.flush()
    for name, value in values.items():
      if isinstance(value, (int, float)) and not isinstance(value, bool):
        self._tb.add_scalar(f"{kind}/{name}", value, step)

  def flush(self) -> None:
    self._file.flush()
    self._tb.flush()

  def close(self) -> None:
    self._file.close()
    self._tb.close()


class NullWriter:
  """MetricsWriter's interface, writing nothing: for the processes other than process 0."""

  def write(self, step: int, values: dict[str, Any], *, kind: str) -> None:
    pass

  def flush(self) -> None:
    pass

  def close(self) -> None:
    pass
