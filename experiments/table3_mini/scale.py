r"""Issue 14's scale measurement, read: does the mini Table 3 gain more from twice the steps or
from more seeds?

  python experiments/table3_mini/scale.py [ROOT]    (default experiments/table3_mini/runs)

Reads ROOT/ROW/seedK/result.json (the 1000-step record: dev PPL and sacreBLEU with the last
checkpoint, train wall seconds) and ROOT/ROW/seedK/dev500.json (`transformer-jax evaluate
--step=500` of the same run: checkpoint 500 is the 500-step run, Eq. 3 not depending on
train.steps), as experiments/table3_mini_scale.sh writes them, and writes scale.md beside ROOT:

- per row and scale, dev PPL and BLEU as mean and sample sd over seeds;
- per row, its difference from base at each scale with the Welch 95% interval
  (transformer_jax.experiments.compare.welch, scipy) and whether it points the paper's way;
- the trade: with n seeds per row at cost c per run, a difference d against a seed sd s is
  seen with t of about d / (s * sqrt(2 / n)). At a fixed budget B, n = B / c, so t grows as
  d / (s * sqrt(c)): for a row that points the paper's way at 1000 steps, doubling the steps
  is the better buy when |d| / s grows by more than sqrt(c_1000 / c_500) (about sqrt(2)) or
  when the sign of d turned to the paper's; a row that points against the paper at both
  scales is reported with its ratio to base at each (row mean / base mean), which says whether
  twice the steps moved it toward the paper at all (no number of seeds can).

Costs: c_1000 is the median train_wall_seconds of the records; c_500 is taken as half of it
(the same runs' first 500 steps; compiles make the true ratio a little above one half).
"""

from __future__ import annotations

import json
import math
import pathlib
import statistics
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2]))
from transformer_jax.experiments.compare import welch  # noqa: E402  (the report's own Welch)
from transformer_jax.experiments.table3 import ROWS  # noqa: E402

SCALES = (500, 1000)


def load(root: pathlib.Path) -> dict[str, list[dict]]:
  """{row: [{'ppl': {500: x, 1000: y}, 'bleu': {...}, 'wall': s}, ...]} for runs with both files."""
  rows: dict[str, list[dict]] = {}
  for result in sorted(root.glob("*/seed*/result.json")):
    at500 = result.parent / "dev500.json"
    if not at500.exists():
      continue
    r, e = json.loads(result.read_text()), json.loads(at500.read_text())
    if r["steps"] != 1000:
      raise SystemExit(f"error: {result}: steps {r['steps']}, expected 1000")
    rows.setdefault(result.parent.parent.name, []).append({
        "seed": r["seed"], "ppl": {500: e["ppl"], 1000: r["dev_ppl"]},
        "bleu": {500: e["bleu"], 1000: r["dev_bleu"]}, "wall": r["train_wall_seconds"]})
  return dict(sorted(rows.items(), key=lambda kv: (kv[0] != "base", kv[0])))


def _sd(xs: list[float]) -> float:
  return statistics.stdev(xs) if len(xs) > 1 else math.nan


def paper_direction(row: str, metric: str) -> float:
  """Sign of the paper's difference from base (dev set of Table 3): +1, -1 or 0 (equal)."""
  paper = {"ppl": 0, "bleu": 1}[metric]
  d = ROWS[row][1][paper] - ROWS["base"][1][paper]
  return 0.0 if abs(d) < 1e-9 else math.copysign(1.0, d)


def report(rows: dict[str, list[dict]]) -> str:
  if "base" not in rows or len(rows["base"]) < 2:
    raise SystemExit("error: need at least 2 finished base runs (dev500.json and result.json)")
  base = rows["base"]
  c1000 = statistics.median(r["wall"] for runs in rows.values() for r in runs)
  cost_ratio = 2.0  # c_1000 / c_500, see the module docstring
  out = ["# Mini Table 3: twice the steps or more seeds? (issue 14)", "",
         f"Runs: {', '.join(f'{k} x {len(v)}' for k, v in rows.items())}; each trained to 1000 "
         "steps, scored on Multi30k val (1014 pairs, beam 4, last checkpoint) with checkpoint "
         f"500 and 1000. Median train wall time of a 1000-step run: {c1000:.0f} s.", "",
         "| row | seeds | PPL @500 | PPL @1000 | BLEU @500 | BLEU @1000 |", "|---|---|---|---|---|---|"]
  for row, runs in rows.items():
    cells = []
    for metric in ("ppl", "bleu"):
      for s in SCALES:
        xs = [r[metric][s] for r in runs]
        cells.append(f"{statistics.mean(xs):.2f} ± {_sd(xs):.2f}")
    out.append(f"| {row} | {len(runs)} | " + " | ".join(cells) + " |")
  out += ["", "Mean ± sample sd over seeds.", "",
          "| row | metric | scale | diff from base | Welch 95% interval | paper's direction | "
          "agrees | abs(diff) / base sd |", "|---|---|---|---|---|---|---|---|"]
  gains = []
  for row, runs in rows.items():
    if row == "base":
      continue
    for metric in ("ppl", "bleu"):
      sign, z, agree, ratio = paper_direction(row, metric), {}, {}, {}
      for s in SCALES:
        ref, other = [r[metric][s] for r in base], [r[metric][s] for r in runs]
        d = statistics.mean(other) - statistics.mean(ref)
        agree[s], ratio[s] = sign != 0 and d * sign > 0, statistics.mean(other) / statistics.mean(ref)
        low, high, _ = welch(ref, other)
        z[s] = abs(d) / _sd(ref)
        agrees = "paper: equal" if sign == 0 else ("yes" if agree[s] else "no")
        out.append(f"| {row} | {metric.upper()} | {s} | {d:+.2f} | [{low:+.2f}, {high:+.2f}] | "
                   f"{'+' if sign > 0 else '-' if sign < 0 else '='} | {agrees} | {z[s]:.2f} |")
      gains.append((row, metric, sign, z[1000] / z[500] if z[500] else math.inf, agree, ratio))
  out += ["", "Base seed sd: " + ", ".join(
      f"{m.upper()} {_sd([r[m][s] for r in base]):.2f} at {s}" for m in ("ppl", "bleu")
      for s in SCALES) + ".", "",
          f"Signal per unit of compute: doubling the steps multiplies the cost of a run by about "
          f"{cost_ratio:.0f}, so at a fixed budget it pays when abs(diff) / sd grows by more than "
          f"sqrt({cost_ratio:.0f}) = {math.sqrt(cost_ratio):.2f}; one more seed per row (n -> n + 1) "
          "narrows the interval by sqrt(n / (n + 1)) at the cost of one run.", ""]
  for row, metric, sign, g, agree, ratio in gains:
    head = f"- {row} {metric.upper()}: "
    if sign == 0:
      out.append(head + "the paper finds no change; abs(diff) / sd "
                 f"x{g:.2f} from 500 to 1000 steps")
    elif agree[1000] and not agree[500]:
      out.append(head + "turns to the paper's direction between 500 and 1000 steps "
                 "(more steps is the better buy)")
    elif agree[1000]:
      out.append(head + f"the paper's direction at both; abs(diff) / sd x{g:.2f} from 500 to "
                 f"1000 steps ({'more steps' if g > math.sqrt(cost_ratio) else 'more seeds'} "
                 "is the better buy)")
    else:
      out.append(head + f"against the paper at {'both scales' if not agree[500] else '1000'}; "
                 f"row / base {ratio[500]:.2f} at 500, {ratio[1000]:.2f} at 1000 steps")
  return "\n".join(out) + "\n"


def main() -> None:
  root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "experiments/table3_mini/runs")
  text = report(load(root))
  (root.parent / "scale.md").write_text(text)
  print(text, end="")


if __name__ == "__main__":
  main()
