"""Table 2's training-cost estimate and the paper's step times, next to a run's own.

The paper (Table 2 and its footnote) estimates training cost as
  training time x number of GPUs x sustained single-precision FLOP/s of one GPU,
with 9.5 TFLOPS for a P100. Section 5.2: 8 P100 GPUs; base model 100k steps at about 0.4 s
per step (12 hours), big model 300k steps at 1.0 s per step (3.5 days). So
  base: 12 h   x 3600 x 8 x 9.5e12 = 3.28e18 FLOPs (Table 2: 3.3e18),
  big:  84 h   x 3600 x 8 x 9.5e12 = 2.30e19 FLOPs (Table 2: 2.3e19).
The same formula for a run here uses its measured step time, `config.train.steps`, the number
of devices and `config.train.peak_flops_per_device` (a rated peak, e.g. a TPU's bf16 peak,
which is not the paper's sustained fp32 figure: compare orders of magnitude, not digits).
"""

from __future__ import annotations

import math
from typing import Any

P100_FLOPS = 9.5e12  # Table 2 footnote: sustained single-precision FLOP/s of a P100
PAPER = {  # Section 5.2 and Table 2
    "base": {"steps": 100_000, "step_seconds": 0.4, "train_hours": 12.0, "gpus": 8,
             "cost_flops": 3.3e18},
    "big": {"steps": 300_000, "step_seconds": 1.0, "train_hours": 3.5 * 24, "gpus": 8,
            "cost_flops": 2.3e19},
}


def budget_report(paper_model: str, *, step_seconds: float, steps: int, n_devices: int,
                  peak_flops_per_device: float = 0.0) -> dict[str, Any]:
  """This run's step time and cost next to Table 2's row `paper_model`.

  Args:
    paper_model: 'base' or 'big' (config.train.paper_model).
    step_seconds: measured seconds per optimizer step (s), > 0.
    steps: optimizer steps of the whole run (config.train.steps), > 0.
    n_devices: accelerators the run uses, > 0.
    peak_flops_per_device: FLOP/s of one device; 0 = unknown, so no cost estimate.

  Returns:
    paper_* figures (cost_flops as printed in Table 2, cost_flops_formula recomputed from
    the footnote, step_seconds, steps, train_hours, gpus), step_seconds, step_time_vs_paper
    (measured / paper), steps, projected_train_hours (step_seconds x steps), n_devices,
    peak_flops_per_device, and cost_flops / cost_vs_paper (None when the peak is unknown).

  Raises:
    ValueError: unknown paper_model or a non-positive argument (naming the config key).
  """
  if paper_model not in PAPER:
    raise ValueError(f"config.train.paper_model must be one of {sorted(PAPER)}, got "
                     f"{paper_model!r}")
  for name, value in (("step_seconds", step_seconds), ("config.train.steps", steps),
                      ("n_devices", n_devices)):
    if not value > 0 or not math.isfinite(value):
      raise ValueError(f"{name} must be positive, got {value!r}")
  if not peak_flops_per_device >= 0:
    raise ValueError(f"config.train.peak_flops_per_device must be >= 0, got "
                     f"{peak_flops_per_device!r}")
  paper = PAPER[paper_model]
  seconds = step_seconds * steps
  cost = seconds * n_devices * peak_flops_per_device if peak_flops_per_device else None
  return {
      "paper_model": paper_model,
      "paper_cost_flops": paper["cost_flops"],
      "paper_cost_flops_formula": paper["train_hours"] * 3600 * paper["gpus"] * P100_FLOPS,
      "paper_step_seconds": paper["step_seconds"], "paper_steps": paper["steps"],
      "paper_train_hours": paper["train_hours"], "paper_gpus": paper["gpus"],
      "step_seconds": step_seconds,
      "step_time_vs_paper": step_seconds / paper["step_seconds"],
      "steps": steps, "projected_train_hours": seconds / 3600, "n_devices": n_devices,
      "peak_flops_per_device": peak_flops_per_device, "cost_flops": cost,
      "cost_vs_paper": cost / paper["cost_flops"] if cost else None,
  }


def summary(report: dict[str, Any]) -> str:
  """One log line for a `budget_report`."""
  r = report
  line = (f"budget vs paper ({r['paper_model']}, Table 2): {r['step_seconds']:.3f} s/step on "
          f"{r['n_devices']} device(s) vs {r['paper_step_seconds']} s/step on {r['paper_gpus']} "
          f"P100 ({r['step_time_vs_paper']:.2f}x); {r['steps']} steps take "
          f"{r['projected_train_hours']:.1f} h vs {r['paper_train_hours']:.0f} h; ")
  if r["cost_flops"] is None:
    return line + (f"cost {r['paper_cost_flops']:.1e} FLOPs in the paper, unknown here "
                   "(set config.train.peak_flops_per_device)")
  return line + (f"cost {r['cost_flops']:.2e} FLOPs vs {r['paper_cost_flops']:.1e} "
                 f"({r['cost_vs_paper']:.2f}x; time x devices x peak FLOP/s)")
