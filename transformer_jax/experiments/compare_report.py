"""The comparison's table, text and files: Markdown and one self-contained HTML page.

`write(reference, groups, records, output)` lays out what `compare.summarize` computed: the
noise first (seeds per group, the reference's seed-to-seed sd), how to read the table, the
table (with the paper's columns for a Table 3 sweep), what each row finds against the paper
(`finding`: reproduced or contradicted beyond seed noise, or unresolved) and those findings
counted, BLEU signatures, and the plots (`compare_plots`), which the HTML page embeds as base64
PNGs.
"""

from __future__ import annotations

import base64
import html
import math
import pathlib
from typing import Any

from transformer_jax.experiments import table3
from transformer_jax.experiments import bootstrap
from transformer_jax.experiments import compare_plots

GENERAL = ("group", "seeds", "PPL", "ΔPPL [95% CI]", "PPL verdict", "BLEU", "ΔBLEU [95% CI]",
           "p (bootstrap)", "BLEU verdict")
TABLE3 = ("row", "seeds", "params M", "params M (paper)", "PPL", "PPL (paper)", "ΔPPL [95% CI]",
          "ΔPPL (paper)", "PPL verdict", "PPL against the paper", "BLEU", "BLEU (paper)",
          "ΔBLEU [95% CI]", "ΔBLEU (paper)", "p (bootstrap)", "BLEU verdict",
          "BLEU against the paper")
FINDINGS = ("reproduced", "contradicted", "unresolved")


def is_table3(reference, groups) -> bool:
  return any("paper_ppl_dev" in g.metadata for g in [reference, *groups])


def _fmt(x: float | None, digits: int = 2, signed: bool = False) -> str:
  if x is None or math.isnan(x):
    return ""
  return f"{x:+.{digits}f}" if signed else f"{x:.{digits}f}"


def _mean_sd(g, metric: str) -> str:
  mean, sd = g.mean_sd(metric)
  return _fmt(mean) + ("" if math.isnan(sd) else f" ± {sd:.2f}")


def _delta(d) -> str:
  if d is None:
    return "reference"
  if math.isnan(d.low):
    return f"{d.delta:+.2f} ({d.no_interval})"
  return f"{d.delta:+.2f} [{d.low:+.2f}, {d.high:+.2f}]"


def _p(d) -> str:
  if d is None or math.isnan(d.p_bootstrap):
    return ""
  return f"{d.p_bootstrap:.3f}"


def _paper(g, key: str) -> float:
  value = g.metadata.get(key)
  return math.nan if value is None else float(value)


def agreement(ours: float, paper: float) -> str:
  """'yes' if our difference points the same way as the paper's, 'no' if not, 'paper: no
  change' where the paper's is 0, '' if either is unknown."""
  if math.isnan(ours) or math.isnan(paper):
    return ""
  if paper == 0:
    return "paper: no change"
  return "yes" if (ours > 0) == (paper > 0) and ours != 0 else "no"


def finding(d, paper: float) -> str:
  """What a row's difference from base finds about the paper's, beyond seed noise.

  'reproduced': the Welch 95% interval over seeds excludes 0 on the paper's side;
  'contradicted': it excludes 0 on the other side, or the paper has no change (equal numbers
  in Table 3) and ours has one; 'unresolved': no interval (a group with one seed: the
  bootstrap over sentences is not seed noise) or one that holds 0. Each is followed by the
  direction in parentheses where that says more: '(same direction)', '(opposite direction)',
  '(paper: no change)', '(one seed)'. '' where our or the paper's difference is unknown.
  """
  way = agreement(d.delta, paper)
  if not way:
    return ""
  if math.isnan(d.low):
    return "unresolved (one seed)"
  if d.low <= 0 <= d.high:
    return f"unresolved ({ {'yes': 'same direction', 'no': 'opposite direction'}.get(way, way)})"
  if way == "paper: no change":
    return "contradicted (paper: no change)"
  return "reproduced" if way == "yes" else "contradicted"


def _paper_delta(g, ref, metric: str) -> float:
  key = f"paper_{metric}_dev"
  return _paper(g, key) - _paper(ref, key)


def table(reference, groups) -> tuple[tuple[str, ...], list[list[str]]]:
  """(header, rows): the reference first, then each group; for Table 3 the paper's columns and
  a 'missing' line for each row without records."""
  t3 = is_table3(reference, groups)
  rows = []
  for g in [reference, *groups]:
    ppl, bleu = g.ppl, g.bleu
    if not t3:
      rows.append([g.name, str(len(g.runs)), _mean_sd(g, "ppl"), _delta(ppl),
                   ppl.verdict if ppl else "", _mean_sd(g, "bleu"), _delta(bleu), _p(bleu),
                   bleu.verdict if bleu else ""])
      continue
    d_ppl, d_bleu = _paper_delta(g, reference, "ppl"), _paper_delta(g, reference, "bleu")
    rows.append([g.name, str(len(g.runs)), _fmt(g.runs[0].get("params", math.nan) / 1e6),
                 _fmt(_paper(g, "paper_params_m"), 0), _mean_sd(g, "ppl"),
                 _fmt(_paper(g, "paper_ppl_dev")), _delta(ppl),
                 _fmt(d_ppl, signed=True) if ppl else "", ppl.verdict if ppl else "",
                 finding(ppl, d_ppl) if ppl else "", _mean_sd(g, "bleu"),
                 _fmt(_paper(g, "paper_bleu_dev"), 1), _delta(bleu),
                 _fmt(d_bleu, 1, signed=True) if bleu else "", _p(bleu),
                 bleu.verdict if bleu else "", finding(bleu, d_bleu) if bleu else ""])
  if t3:
    have = {g.name for g in [reference, *groups]}
    for row, (_, (ppl, bleu, params)) in table3.ROWS.items():
      if row not in have:
        rows.append([row, "missing", "", "" if params is None else f"{params:g}", "",
                     _fmt(ppl), *[""] * 4, "", _fmt(bleu, 1), *[""] * 5])
  return (TABLE3 if t3 else GENERAL), rows


def finding_counts(reference, groups) -> dict[str, dict[str, int]]:
  """{'PPL' | 'BLEU': {'reproduced', 'contradicted', 'unresolved', 'same direction': n}} over
  the rows with a finding (`finding`); 'same direction' counts the unresolved rows whose
  difference points the paper's way."""
  out = {}
  for name, metric in (("PPL", "ppl"), ("BLEU", "bleu")):
    counts = dict.fromkeys((*FINDINGS, "same direction"), 0)
    for g in groups:
      f = finding(getattr(g, metric), _paper_delta(g, reference, metric))
      if f:
        counts[f.split(" ")[0]] += 1
        counts["same direction"] += f == "unresolved (same direction)"
    out[name] = counts
  return out


def _noise(reference, groups) -> str:
  by_count: dict[int, list[str]] = {}
  for g in [reference, *groups]:
    by_count.setdefault(len(g.runs), []).append(g.name)
  if len(by_count) == 1:
    (n, names), = by_count.items()
    seeds = f"{n} in each of the {len(names)} groups"
  else:
    seeds = "; ".join(f"{n} ({', '.join(f'`{m}`' for m in names)})"  # names hold commas
                      for n, names in sorted(by_count.items(), reverse=True))
  n = len(reference.runs)
  if n > 1:
    spread = (f"{n} seeds; its seed-to-seed sd is {reference.mean_sd('ppl')[1]:.2f} in dev "
              f"perplexity and {reference.mean_sd('bleu')[1]:.2f} in dev BLEU")
  else:
    spread = ("one seed, so the seed-to-seed spread is unknown: no difference from it has an "
              "interval, and BLEU verdicts rest on the paired bootstrap over dev sentences, "
              "which measures the dev set's sampling noise, not training noise")
  return f"**Noise.** Seeds per group: {seeds}. The reference, {reference.name}, has {spread}."


def _method(t3: bool) -> str:
  text = ("Ours: dev perplexity per wordpiece and dev sacreBLEU, mean ± sample sd over seeds. "
          "Δ = group mean minus reference mean, with the 95% Welch confidence interval over "
          "seeds (scipy.stats.ttest_ind, unequal variances) where both have two seeds or more. "
          f"p (bootstrap): paired bootstrap over dev sentences ({bootstrap.SAMPLES} resamples), "
          "every seed of both groups scored on the same resampled sentences, statistic = "
          "difference of seed-mean BLEU, p-value as sacrebleu's paired test (the chance of so "
          "large a difference from sentence sampling alone). Verdict: better / worse where the "
          "Welch interval excludes 0, else within noise (lower PPL, higher BLEU is better); "
          "where a group has one seed, BLEU falls back to the bootstrap (p < 0.05, marked "
          "'(bootstrap)') and PPL has no verdict.")
  if t3:
    text += (" Paper: newstest2013, Table 3; its Δ is from its base. Against the paper: "
             "reproduced where our interval excludes 0 on the paper's side, contradicted where "
             "it excludes 0 on the other side (or the paper has no change and we have one), "
             "else unresolved, with the direction of our Δ in parentheses.")
  return text


def _findings_text(reference, groups) -> str:
  parts = []
  for name, c in finding_counts(reference, groups).items():
    parts.append(f"{name}: {c['reproduced']} reproduced, {c['contradicted']} contradicted, "
                 f"{c['unresolved']} unresolved ({c['same direction']} of them pointing the "
                 "paper's way)")
  missing = sum(1 for row in table3.ROWS if row not in {g.name for g in [reference, *groups]})
  return ("**Against the paper, beyond seed noise** (base excluded; a row reproduces or "
          "contradicts a direction only where its Welch 95% interval over seeds excludes 0). "
          + "; ".join(parts) + "." + (f" {missing} of Table 3's rows have no runs yet." if missing
                                      else ""))


def _blocks(reference, groups, records, plots) -> list[tuple]:
  t3 = is_table3(reference, groups)
  title = "Table 3: our runs beside the paper's" if t3 else "Sweep comparison"
  scales = sorted({str((r.get("paper") or {}).get("scale", "")) for r in records} - {""})
  sweeps = sorted({str(r["_run"].get("sweep", "")) for r in records} - {""})
  intro = (f"{len(records)} run records in {len(groups) + 1} groups"
           + (f" from {', '.join(sweeps)}" if sweeps else "")
           + (f", scale {', '.join(scales)}" if scales else "") + f"; reference: "
           f"{reference.name}.")
  header, rows = table(reference, groups)
  blocks = [("h1", title), ("p", intro), ("p", _noise(reference, groups)), ("p", _method(t3)),
            ("table", header, rows)]
  if t3:
    blocks.append(("p", _findings_text(reference, groups)))
  for s in sorted({str(r.get("dev_bleu_signature")) for r in records}):
    blocks.append(("p", f"BLEU signature: `{s}`"))
  return blocks + [("img", p) for p in plots]


def _markdown(blocks) -> str:
  out = []
  for b in blocks:
    if b[0] == "h1":
      out.append(f"# {b[1]}")
    elif b[0] == "p":
      out.append(b[1])
    elif b[0] == "table":
      cell = lambda c: c.replace("|", "\\|")
      out.append("\n".join(["| " + " | ".join(b[1]) + " |", "|" + "---|" * len(b[1])]
                           + ["| " + " | ".join(map(cell, r)) + " |" for r in b[2]]))
    else:
      out.append(f"![{b[1].stem}]({b[1].name})")
  return "\n\n".join(out) + "\n"


def _inline(text: str) -> str:
  """Markdown's **bold** and `code` of our own paragraphs, as HTML (everything else escaped)."""
  out = html.escape(text)
  for mark, tag in (("**", "b"), ("`", "code")):
    parts = out.split(mark)
    out = "".join(p if i % 2 == 0 else f"<{tag}>{p}</{tag}>" for i, p in enumerate(parts))
  return out


def _html(blocks) -> str:
  body = []
  for b in blocks:
    if b[0] == "h1":
      body.append(f"<h1>{html.escape(b[1])}</h1>")
    elif b[0] == "p":
      body.append(f"<p>{_inline(b[1])}</p>")
    elif b[0] == "table":
      head = "".join(f"<th>{html.escape(h)}</th>" for h in b[1])
      rows = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>"
                     for r in b[2])
      body.append(f"<table><tr>{head}</tr>{rows}</table>")
    else:
      data = base64.b64encode(b[1].read_bytes()).decode()
      body.append(f'<p><img alt="{b[1].stem}" src="data:image/png;base64,{data}"></p>')
  title = html.escape(blocks[0][1])
  return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{title}</title>"
          "<style>body{font-family:sans-serif;margin:2em;max-width:110em}table{border-collapse:"
          "collapse;font-size:13px}td,th{border:1px solid #bbb;padding:3px 6px;text-align:"
          "right}td:first-child{text-align:left}img{max-width:100%}</style></head><body>"
          + "".join(body) + "</body></html>\n")


def write(reference, groups, records, output: pathlib.Path) -> dict[str, Any]:
  """Writes OUTPUT.md, OUTPUT.html and the two plots; returns {'markdown', 'html': paths,
  'header', 'rows': the table}."""
  deltas = output.with_name(output.name + "_deltas.png")
  if is_table3(reference, groups):
    compare_plots.ours_against_paper(reference, groups, deltas)
  else:
    compare_plots.deltas(reference, groups, deltas)
  plots = [deltas, compare_plots.curves(reference, groups,
                                        output.with_name(output.name + "_curves.png"))]
  blocks = _blocks(reference, groups, records, plots)
  md_path, html_path = output.with_suffix(".md"), output.with_suffix(".html")
  md_path.write_text(_markdown(blocks), encoding="utf-8")
  html_path.write_text(_html(blocks), encoding="utf-8")
  header, rows = next(b[1:] for b in blocks if b[0] == "table")
  return {"markdown": md_path, "html": html_path, "header": header, "rows": rows}
