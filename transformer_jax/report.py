"""The comparison report: our Table 3 runs beside the paper's, as Markdown and as an HTML page.

`compare(dirs, output)` reads every result.json under the given directories (see run_record),
groups the runs by Table 3 row and writes OUTPUT.md and OUTPUT.html (self-contained, plots
embedded) plus the plots as PNG files. Per row: our dev perplexity, BLEU and parameter count
(mean and sample standard deviation over seeds) beside the paper's; our difference from our base
beside the paper's difference from its base; whether the two differences point the same way;
and a paired bootstrap test (sacrebleu, 1000 resamples) of the row's dev translations against
base's (first seed of each) saying whether the BLEU difference is significant at p < 0.05.
Rows without a record are listed as missing. The same records give the same report.
"""

from __future__ import annotations

import base64
import dataclasses
import html
import json
import math
import pathlib
import statistics
from typing import Any, Sequence

from sacrebleu import significance
from sacrebleu.metrics import BLEU

from transformer_jax import run_record
from transformer_jax import table3

P_SIGNIFICANT = 0.05
BOOTSTRAP_SAMPLES = 1000


class ReportError(ValueError):
  """No run records were found, or a record is unreadable (the message names the file)."""


def load_records(dirs: Sequence[str | pathlib.Path]) -> list[dict[str, Any]]:
  """Every result.json under `dirs` (searched recursively), each with '_dir' set to its run
  directory, sorted by (row, seed, directory).

  Raises:
    ReportError: a directory does not exist, a record is not valid JSON or has no 'row'.
  """
  records = []
  for d in dirs:
    d = pathlib.Path(d)
    if not d.is_dir():
      raise ReportError(f"{d} is not a directory")
    for path in sorted(d.rglob(run_record.RESULT)):
      try:
        record = json.loads(path.read_text())
      except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ReportError(f"{path} is not a valid run record: {e}") from None
      if not record.get("row"):
        raise ReportError(f"{path} has no Table 3 'row'; was it written by a table3 config?")
      record["_dir"] = str(path.parent)
      records.append(record)
  return sorted(records, key=lambda r: (r["row"], r["seed"], r["_dir"]))


def _mean_sd(values: list[float]) -> tuple[float, float]:
  if not values:
    return math.nan, math.nan
  return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else math.nan


def _sign(x: float, tolerance: float = 0.0) -> int:
  return 0 if math.isnan(x) or abs(x) <= tolerance else (1 if x > 0 else -1)


def agreement(ours: float, paper: float) -> str:
  """'yes' if our change from base points the same way as the paper's, 'no' if it points the
  other way (or we moved where the paper did not), '' if either is unknown."""
  if math.isnan(ours) or math.isnan(paper):
    return ""
  if _sign(paper) == 0:
    return "paper: no change"
  return "yes" if _sign(ours) == _sign(paper) else "no"


@dataclasses.dataclass
class RowSummary:
  """One line of the report; NaN where unknown."""
  row: str
  seeds: int
  ppl: float
  ppl_sd: float
  bleu: float
  bleu_sd: float
  params_m: float
  paper_ppl: float
  paper_bleu: float
  paper_params_m: float
  d_ppl: float = math.nan
  d_bleu: float = math.nan
  paper_d_ppl: float = math.nan
  paper_d_bleu: float = math.nan
  p_value: float = math.nan
  scale: str = ""


def _read_lines(path: pathlib.Path) -> list[str] | None:
  return path.read_text(encoding="utf-8").splitlines() if path.is_file() else None


def paired_bootstrap(base: dict, other: dict) -> float:
  """p-value of sacrebleu's paired bootstrap test (BOOTSTRAP_SAMPLES resamples, sacrebleu's
  fixed seed) of `other`'s dev translations against `base`'s; NaN if a file is missing or the
  two runs were scored on different references."""
  if base["data_sha256"]["dev_ref"] != other["data_sha256"]["dev_ref"]:
    return math.nan
  refs = _read_lines(pathlib.Path(base["_dir"]) / base["dev_ref"])
  hyp_a = _read_lines(pathlib.Path(base["_dir"]) / base["dev_hyp"])
  hyp_b = _read_lines(pathlib.Path(other["_dir"]) / other["dev_hyp"])
  if refs is None or hyp_a is None or hyp_b is None or not len(refs) == len(hyp_a) == len(hyp_b):
    return math.nan
  if hyp_a == hyp_b:  # nothing differs; sacrebleu's statistic degenerates (it would say 0.001)
    return 1.0
  test = significance.PairedTest([("base", hyp_a), ("other", hyp_b)],
                                           {"BLEU": BLEU()}, [refs],
                                           test_type="bs", n_samples=BOOTSTRAP_SAMPLES)
  _, scores = test()
  return float(scores["BLEU"][1].p_value)


def summarize(records: list[dict[str, Any]]) -> list[RowSummary | str]:
  """One RowSummary per Table 3 row with records, the row's name (a str) where it has none,
  in Table 3's order; differences are taken from our base and from the paper's base."""
  by_row: dict[str, list[dict]] = {}
  for r in records:
    by_row.setdefault(r["row"], []).append(r)
  base_ppl, base_bleu, _ = table3.ROWS["base"][1]
  lines: list[RowSummary | str] = []
  for row, (_, (paper_ppl, paper_bleu, paper_params)) in table3.ROWS.items():
    runs = by_row.get(row)
    if not runs:
      lines.append(row)
      continue
    ppl, ppl_sd = _mean_sd([r["dev_ppl"] for r in runs])
    bleu, bleu_sd = _mean_sd([r["dev_bleu"] for r in runs])
    lines.append(RowSummary(
        row=row, seeds=len(runs), ppl=ppl, ppl_sd=ppl_sd, bleu=bleu, bleu_sd=bleu_sd,
        params_m=runs[0]["params"] / 1e6, paper_ppl=paper_ppl, paper_bleu=paper_bleu,
        paper_params_m=math.nan if paper_params is None else paper_params,
        paper_d_ppl=paper_ppl - base_ppl, paper_d_bleu=paper_bleu - base_bleu,
        scale=runs[0].get("paper", {}).get("scale", "")))
  base = next((s for s in lines if isinstance(s, RowSummary) and s.row == "base"), None)
  if base is not None:
    base_run = by_row["base"][0]
    for s in lines:
      if isinstance(s, RowSummary) and s.row != "base":
        s.d_ppl, s.d_bleu = s.ppl - base.ppl, s.bleu - base.bleu
        s.p_value = paired_bootstrap(base_run, by_row[s.row][0])
  return lines


def _fmt(x: float, digits: int = 2, signed: bool = False) -> str:
  if math.isnan(x):
    return ""
  return f"{x:+.{digits}f}" if signed else f"{x:.{digits}f}"


def _with_sd(x: float, sd: float) -> str:
  return _fmt(x) + ("" if math.isnan(sd) else f" ± {sd:.2f}")


HEADER = ("row", "seeds", "params M (ours)", "params M (paper)", "PPL (ours)", "PPL (paper)",
          "ΔPPL (ours)", "ΔPPL (paper)", "PPL agrees", "BLEU (ours)", "BLEU (paper)",
          "ΔBLEU (ours)", "ΔBLEU (paper)", "BLEU agrees", "p (vs base)")


def table_rows(lines: list[RowSummary | str]) -> list[list[str]]:
  """The report's table as strings, one list per Table 3 row (columns as HEADER)."""
  out = []
  for s in lines:
    if isinstance(s, str):
      _, (ppl, bleu, params) = table3.ROWS[s]
      out.append([s, "missing", "", "" if params is None else f"{params:g}", "", _fmt(ppl), "",
                  "", "", "", _fmt(bleu, 1), "", "", "", ""])
      continue
    significant = ("" if math.isnan(s.p_value) else
                   f"{s.p_value:.3f}" + (" *" if s.p_value < P_SIGNIFICANT else ""))
    out.append([s.row, str(s.seeds), _fmt(s.params_m), _fmt(s.paper_params_m, 0),
                _with_sd(s.ppl, s.ppl_sd), _fmt(s.paper_ppl), _fmt(s.d_ppl, signed=True),
                _fmt(s.paper_d_ppl, signed=True) if s.row != "base" else "",
                agreement(s.d_ppl, s.paper_d_ppl) if s.row != "base" else "",
                _with_sd(s.bleu, s.bleu_sd), _fmt(s.paper_bleu, 1), _fmt(s.d_bleu, signed=True),
                _fmt(s.paper_d_bleu, 1, signed=True) if s.row != "base" else "",
                agreement(s.d_bleu, s.paper_d_bleu) if s.row != "base" else "", significant])
  return out


def agreement_counts(lines: list[RowSummary | str]) -> dict[str, dict[str, int]]:
  """{'PPL' | 'BLEU': {'yes': n, 'no': n, 'paper: no change': n}} over the rows we ran."""
  counts = {"PPL": {}, "BLEU": {}}
  for s in lines:
    if isinstance(s, RowSummary) and s.row != "base":
      for name, ours, paper in (("PPL", s.d_ppl, s.paper_d_ppl), ("BLEU", s.d_bleu,
                                                                   s.paper_d_bleu)):
        verdict = agreement(ours, paper)
        if verdict:
          counts[name][verdict] = counts[name].get(verdict, 0) + 1
  return counts


def _groups(lines) -> dict[str, list[RowSummary]]:
  groups: dict[str, list[RowSummary]] = {}
  for s in lines:
    if isinstance(s, RowSummary) and s.row != "base":
      groups.setdefault(table3.group(s.row), []).append(s)
  return groups


def _pyplot():
  """matplotlib.pyplot on the Agg (file-only) backend.

  Raises:
    ReportError: matplotlib is not installed (an extra, not a core dependency).
  """
  try:
    import matplotlib
  except ImportError as e:
    raise ReportError(f"the report's plots need matplotlib ({e}); install it with "
                      "`pip install -e \".[report]\"`") from None
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  return plt


def plot_deltas(lines: list[RowSummary | str], path: pathlib.Path) -> pathlib.Path:
  """Bar charts, one column per ablation group: each row's change from base in dev PPL (top)
  and dev BLEU (bottom), ours beside the paper's. Writes a PNG; returns its path."""
  plt = _pyplot()

  groups = _groups(lines)
  fig, axes = plt.subplots(2, max(len(groups), 1), figsize=(3.2 * max(len(groups), 1), 6),
                           squeeze=False)
  for col, (name, rows) in enumerate(sorted(groups.items())):
    for ax_row, (metric, ours, paper) in enumerate((("ΔPPL", "d_ppl", "paper_d_ppl"),
                                                    ("ΔBLEU", "d_bleu", "paper_d_bleu"))):
      ax = axes[ax_row][col]
      xs = range(len(rows))
      ax.bar([x - 0.2 for x in xs], [getattr(s, ours) for s in rows], 0.4, label="ours")
      ax.bar([x + 0.2 for x in xs], [getattr(s, paper) for s in rows], 0.4, label="paper")
      ax.axhline(0, color="black", linewidth=0.6)
      ax.set_xticks(list(xs), [s.row.split("-", 1)[-1] for s in rows], rotation=45, fontsize=8)
      ax.set_title(f"{name}: {metric} from base", fontsize=9)
      if col == 0 and ax_row == 0:
        ax.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=90)
  plt.close(fig)
  return path


def plot_curves(records: list[dict[str, Any]], path: pathlib.Path) -> pathlib.Path:
  """Dev NLL per wordpiece against step, one panel per ablation group with base overlaid
  (first seed of each row). Writes a PNG; returns its path."""
  plt = _pyplot()

  first = {}
  for r in records:
    first.setdefault(r["row"], r)
  names = sorted({table3.group(r) for r in first if r != "base"})
  fig, axes = plt.subplots(1, max(len(names), 1), figsize=(3.2 * max(len(names), 1), 3.2),
                           squeeze=False)
  for ax, name in zip(axes[0], names):
    for row, r in first.items():
      if row == "base" or table3.group(row) == name:
        curve = r.get("dev_loss_curve") or []
        ax.plot([s for s, _ in curve], [v for _, v in curve], label=row,
                linestyle="--" if row == "base" else "-", linewidth=1)
    ax.set_title(f"{name}: dev NLL", fontsize=9)
    ax.set_xlabel("step", fontsize=8)
    ax.legend(fontsize=6)
  fig.tight_layout()
  fig.savefig(path, dpi=90)
  plt.close(fig)
  return path


TITLE = "Table 3: our runs beside the paper's"


def _markdown(lines, rows: list[list[str]], records, plots: list[pathlib.Path]) -> str:
  counts = agreement_counts(lines)
  scales = sorted({r.get("paper", {}).get("scale", "?") for r in records})
  out = [f"# {TITLE}", "",
         f"{len(records)} run records, scale {', '.join(scales)}. Ours: dev perplexity per "
         "wordpiece and dev sacreBLEU (beam search, no checkpoint averaging), mean ± sample sd "
         "over seeds. Paper: newstest2013, Table 3. Δ = row minus base (ours against our base, "
         "the paper's against its base). 'agrees': the two Δ point the same way. p: paired "
         f"bootstrap (sacrebleu, {BOOTSTRAP_SAMPLES} resamples) of the row's dev BLEU against "
         f"base's, first seed; * = p < {P_SIGNIFICANT}.", "",
         "| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
  out += ["| " + " | ".join(r) + " |" for r in rows]
  out += ["", "Direction agreement with the paper (rows run, base excluded): "
          + "; ".join(f"{k}: " + ", ".join(f"{v} {n}" for n, v in sorted(c.items()))
                      for k, c in counts.items()), ""]
  signatures = sorted({r["dev_bleu_signature"] for r in records})
  out += [f"BLEU signature: `{s}`" for s in signatures]
  out += [""] + [f"![{p.stem}]({p.name})" for p in plots] + [""]
  return "\n".join(out)


def _html(rows: list[list[str]], plots: list[pathlib.Path], md: str) -> str:
  """The Markdown report as one HTML page: its intro paragraph, table and notes, with the plots
  embedded as base64 PNGs."""
  head = "".join(f"<th>{html.escape(h)}</th>" for h in HEADER)
  body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>"
                 for r in rows)
  intro = md.split("\n\n")[1]  # the paragraph after the title
  images = "".join(
      f'<p><img alt="{p.stem}" src="data:image/png;base64,'
      f'{base64.b64encode(p.read_bytes()).decode()}"></p>' for p in plots)
  notes = "".join(f"<p>{html.escape(line)}</p>" for line in md.split("\n")
                  if line.startswith(("Direction", "BLEU signature")))
  return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{TITLE}</title>"
          "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;"
          "font-size:13px}td,th{border:1px solid #bbb;padding:3px 6px;text-align:right}"
          "td:first-child{text-align:left}</style></head><body>"
          f"<h1>{TITLE}</h1><p>{html.escape(intro)}</p>"
          f"<table><tr>{head}</tr>{body}</table>{notes}{images}</body></html>\n")


def compare(dirs: Sequence[str | pathlib.Path], output: str | pathlib.Path) -> dict[str, Any]:
  """Writes OUTPUT.md, OUTPUT.html and OUTPUT_deltas.png / OUTPUT_curves.png.

  Args:
    dirs: sweep roots or run directories holding result.json files.
    output: path prefix of the report files (its directory is created).

  Returns:
    {'markdown': path, 'html': path, 'rows': the table as lists of strings}.

  Raises:
    ReportError: no records under `dirs`, an unreadable record, or no matplotlib.
  """
  records = load_records(dirs)
  if not records:
    raise ReportError(f"no {run_record.RESULT} under {', '.join(map(str, dirs))}")
  output = pathlib.Path(output)
  output.parent.mkdir(parents=True, exist_ok=True)
  lines = summarize(records)
  plots = [plot_deltas(lines, output.with_name(output.name + "_deltas.png")),
           plot_curves(records, output.with_name(output.name + "_curves.png"))]
  rows = table_rows(lines)
  md = _markdown(lines, rows, records, plots)
  md_path, html_path = output.with_suffix(".md"), output.with_suffix(".html")
  md_path.write_text(md, encoding="utf-8")
  html_path.write_text(_html(rows, plots, md), encoding="utf-8")
  return {"markdown": md_path, "html": html_path, "rows": rows}
