"""The comparison's plots (matplotlib, PNG), each judged at a glance.

  ours_against_paper: Table 3 sweeps. Per metric, each row is a point at (the paper's
    difference from its base, our difference from our base), with our 95% Welch interval as a
    vertical bar; the quadrants where the two agree in sign are shaded. Each axis has its own
    scale, so agreement is read from the quadrant, not from bar heights on one axis.
  deltas: any sweep. Per metric, each group's difference from the reference with its interval.
  curves: dev NLL per wordpiece against step, every seed; one panel per Table 3 group (or per
    group of a general sweep), the reference dashed in each.
One-seed groups, which have no interval, are drawn hollow.
"""

from __future__ import annotations

import math
import pathlib

METRICS = (("ppl", "ΔPPL (dev perplexity; lower is better)"),
           ("bleu", "ΔBLEU (dev sacreBLEU; higher is better)"))


class PlotsUnavailable(ImportError):
  """matplotlib is not installed (it is the `report` extra, not a core dependency)."""


def _pyplot():
  """matplotlib.pyplot on the Agg (file-only) backend.

  Raises:
    PlotsUnavailable: matplotlib is not installed.
  """
  try:
    import matplotlib
  except ImportError as e:
    raise PlotsUnavailable(f"compare's plots need matplotlib ({e}); install it with "
                           "`pip install -e \".[report]\"`") from None
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  return plt


def _save(plt, fig, path: pathlib.Path) -> pathlib.Path:
  fig.tight_layout()
  fig.savefig(path, dpi=90)
  plt.close(fig)
  return path


def _color(d) -> str:
  """Blue for a difference outside noise (verdict better or worse), grey otherwise."""
  return "#1f77b4" if d.verdict.startswith(("better", "worse")) else "#888888"


def _err(d) -> tuple[float, float]:
  return (0.0, 0.0) if math.isnan(d.low) else (d.delta - d.low, d.high - d.delta)


def _point(ax, x, y, d, label, color):
  lo, hi = _err(d)
  hollow = math.isnan(d.low)
  ax.errorbar([x], [y], yerr=[[lo], [hi]], fmt="o", color=color, capsize=3, markersize=5,
              markerfacecolor="white" if hollow else color)
  ax.annotate(label, (x, y), textcoords="offset points", xytext=(4, 3), fontsize=7)


def ours_against_paper(reference, groups, path: pathlib.Path) -> pathlib.Path:
  """Writes the Table 3 scatter (see the module docstring); returns `path`."""
  plt = _pyplot()
  fig, axes = plt.subplots(1, 2, figsize=(13, 6))
  for ax, (metric, title) in zip(axes, METRICS):
    points = []
    key = f"paper_{metric}_dev"
    for g in groups:
      d = getattr(g, metric)
      paper = g.metadata.get(key)
      if paper is None or reference.metadata.get(key) is None:
        continue
      points.append((paper - reference.metadata[key], d, g.name))
    if not points:
      continue
    xs = [p[0] for p in points] + [0.0]
    ys = [v for _, d, _ in points for v in (d.delta, d.low, d.high) if not math.isnan(v)] + [0.0]
    xpad, ypad = 0.1 * (max(xs) - min(xs) or 1), 0.1 * (max(ys) - min(ys) or 1)
    x0, x1, y0, y1 = min(xs) - xpad, max(xs) + xpad, min(ys) - ypad, max(ys) + ypad
    ax.fill_between([0, x1], 0, y1, color="#d8f0d8", zorder=0)
    ax.fill_between([x0, 0], y0, 0, color="#d8f0d8", zorder=0)
    ax.axhline(0, color="black", linewidth=0.8)
    ax.axvline(0, color="black", linewidth=0.8)
    for x, d, name in points:
      color = _color(d)
      _point(ax, x, d.delta, d, name, color)
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)
    ax.set_xlabel(f"paper: {title.split(' (')[0]} from its base (newstest2013)", fontsize=9)
    ax.set_ylabel(f"ours: {title.split(' (')[0]} from {reference.name}", fontsize=9)
    ax.set_title(f"{title}\ngreen: same direction as the paper; blue: outside noise; "
                 "bars: 95% interval; hollow: one seed", fontsize=9)
  return _save(plt, fig, path)


def deltas(reference, groups, path: pathlib.Path) -> pathlib.Path:
  """Writes the per-group difference plot of a general sweep; returns `path`."""
  plt = _pyplot()
  fig, axes = plt.subplots(1, 2, figsize=(12, 1.5 + 0.35 * max(len(groups), 1)), squeeze=False)
  for ax, (metric, title) in zip(axes[0], METRICS):
    for i, g in enumerate(groups):
      d = getattr(g, metric)
      lo, hi = _err(d)
      color = _color(d)
      ax.errorbar([d.delta], [i], xerr=[[lo], [hi]], fmt="o", color=color, capsize=3,
                  markerfacecolor="white" if math.isnan(d.low) else color)
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_yticks(range(len(groups)), [g.name for g in groups], fontsize=8)
    ax.invert_yaxis()
    ax.set_title(f"{title} from {reference.name}\nbars: 95% interval; blue: outside noise; "
                 "hollow: one seed", fontsize=9)
  return _save(plt, fig, path)


def curves(reference, groups, path: pathlib.Path) -> pathlib.Path:
  """Writes the dev-loss curves (every seed; see the module docstring); returns `path`."""
  plt = _pyplot()
  panels: dict[str, list] = {}
  for g in groups:
    panels.setdefault(str(g.metadata.get("table3_group") or g.name), []).append(g)
  ncols = min(max(len(panels), 1), 4)
  nrows = math.ceil(max(len(panels), 1) / ncols)
  fig, axes = plt.subplots(nrows, ncols, figsize=(3.6 * ncols, 3.0 * nrows), squeeze=False)
  for ax in axes.flat[len(panels):]:
    ax.axis("off")
  for ax, (name, members) in zip(axes.flat, panels.items()):
    for g, style, color in [(reference, "--", "black")] + [
        (g, "-", f"C{i}") for i, g in enumerate(members)]:
      for j, r in enumerate(g.runs):
        curve = r.get("dev_loss_curve") or []
        ax.plot([s for s, _ in curve], [v for _, v in curve], linestyle=style, color=color,
                linewidth=1, label=g.name if j == 0 else None)
    ax.set_title(f"{name}: dev NLL (every seed)", fontsize=9)
    ax.set_xlabel("step", fontsize=8)
    ax.legend(fontsize=6)
  return _save(plt, fig, path)
