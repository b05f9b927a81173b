"""Compare the runs of any sweep, seeds pooled: Markdown, a self-contained HTML page, plots.

`compare(dirs, output, reference=None)` reads every result.json under `dirs`, groups the runs by
their overrides (record["run"]["overrides"]; seeds pooled) and compares each group with the
reference group: the one without overrides (Table 3's base), or the group named `reference`.

Per group: seeds; mean and sample sd of dev perplexity (per wordpiece) and dev sacreBLEU; the
difference from the reference with a 95% Welch confidence interval over seeds (scipy.stats;
"one seed: no interval" where either group has a single seed); a paired bootstrap p-value over
dev sentences using every seed of both groups (see `bootstrap`); and a verdict per metric:

  * both groups have >= 2 seeds: the Welch 95% interval of the difference excludes 0 ->
    'better' or 'worse' (lower perplexity, higher BLEU is better), else 'within noise';
  * BLEU where a group has one seed: the bootstrap decides, p < 0.05 -> 'better' / 'worse',
    else 'within noise'; the verdict says '(bootstrap)' since it knows nothing of seed noise;
  * perplexity where a group has one seed: 'no verdict (one seed)' (records keep no
    per-sentence losses to bootstrap).

A Table 3 sweep (its runs carry the paper's numbers in run["metadata"]) keeps the paper's
columns: its PPL, BLEU and parameters, its difference from its base and whether ours points the
same way, counted twice: over all rows, and over the rows whose verdict is outside noise.
The report states the noise first: seeds per group and the reference's seed-to-seed sd.
The same records give the same report.
"""

from __future__ import annotations

import dataclasses
import json
import math
import pathlib
import statistics
from typing import Any, Sequence

import ml_collections

from transformer_jax import config as config_lib
from transformer_jax.experiments import record as run_record
from transformer_jax.experiments import table3
from transformer_jax.experiments import bootstrap
from transformer_jax.experiments import compare_report

CONFIDENCE = 0.95
P_SIGNIFICANT = 0.05
ONE_SEED = "one seed: no interval"


class ReportError(ValueError):
  """No run records were found, a record is unreadable or inconsistent (the message names the
  file), or the reference group does not exist."""


def run_key(record: dict[str, Any]) -> dict[str, Any]:
  """The record's "run" ({name, group, overrides, seed, sweep, metadata}); for records written
  before it had one (Table 3 rows: "row", "seed", "paper"), the same derived from those.

  Raises:
    ReportError: neither "run" nor a known Table 3 "row".
  """
  if record.get("run"):
    return record["run"]
  row, paper = record.get("row"), record.get("paper") or {}
  if row not in table3.ROWS:
    raise ReportError(f"no 'run' key and no Table 3 'row' (got {row!r})")
  params = paper.get("paper_params_m")
  return {"name": f"{row}/seed{record['seed']}", "group": row, "overrides": table3.ROWS[row][0],
          "seed": record["seed"], "sweep": "configs/table3.py",
          "metadata": {"paper_ppl_dev": paper.get("paper_ppl_dev"),
                       "paper_bleu_dev": paper.get("paper_bleu_dev"),
                       "paper_params_m": None if params in (None, -1, -1.0) else params,
                       "table3_group": paper.get("group", table3.group(row))}}


def load_records(dirs: Sequence[str | pathlib.Path]) -> list[dict[str, Any]]:
  """Every result.json under `dirs` (recursively), each with '_dir' (its run directory) and
  '_run' (run_key) added, sorted by (group, seed, directory).

  Raises:
    ReportError: a directory does not exist; a record is not JSON, lacks dev_ppl / dev_bleu or
      a run key; two records are the same group and seed.
  """
  records, seen = [], {}
  for d in map(pathlib.Path, dirs):
    if not d.is_dir():
      raise ReportError(f"{d} is not a directory")
    for path in sorted(d.rglob(run_record.RESULT)):
      try:
        record = json.loads(path.read_text(encoding="utf-8"))
        record["_run"] = run = run_key(record)
        key, _ = (_key(run["overrides"]), run["seed"]), run["group"]
        float(record["dev_ppl"]), float(record["dev_bleu"])
      except KeyError as e:
        raise ReportError(f"{path} is not a valid run record: it has no {e} key") from None
      except (json.JSONDecodeError, UnicodeDecodeError, ReportError, TypeError, ValueError,
              AttributeError) as e:
        raise ReportError(f"{path} is not a valid run record: {e}") from None
      record["_dir"] = str(path.parent)
      if key in seen:
        raise ReportError(f"{path} and {seen[key]} are the same run (group "
                          f"{record['_run']['group']!r}, seed {key[1]}); keep one")
      seen[key] = path
      records.append(record)
  return sorted(records, key=lambda r: (r["_run"]["group"], r["_run"]["seed"], r["_dir"]))


def _key(overrides: dict) -> str:
  return json.dumps(overrides, sort_keys=True)


@dataclasses.dataclass
class Difference:
  """One metric of a group minus the reference's (means over seeds); NaN where unknown."""
  delta: float
  low: float = math.nan  # Welch 95% interval of delta
  high: float = math.nan
  df: float = math.nan  # Welch-Satterthwaite degrees of freedom
  p_bootstrap: float = math.nan  # BLEU only
  verdict: str = ""  # 'better' | 'worse' | 'within noise' [+ ' (bootstrap)'] | 'no verdict ...'
  no_interval: str = ""  # why low / high are NaN


@dataclasses.dataclass
class Group:
  """The runs of one set of overrides, seeds pooled."""
  name: str
  overrides: dict[str, Any]
  runs: list[dict[str, Any]]
  metadata: dict[str, Any]
  ppl: Difference | None = None  # None for the reference
  bleu: Difference | None = None

  @property
  def seeds(self) -> list[int]:
    return [r["_run"]["seed"] for r in self.runs]

  def values(self, metric: str) -> list[float]:
    return [float(r[f"dev_{metric}"]) for r in self.runs]

  def mean_sd(self, metric: str) -> tuple[float, float]:
    v = self.values(metric)
    return statistics.fmean(v), statistics.stdev(v) if len(v) > 1 else math.nan


def group_runs(records: list[dict[str, Any]]) -> list[Group]:
  """Records grouped by overrides (seeds pooled), in record order of first appearance.

  Raises:
    ReportError: two different sets of overrides carry the same group name.
  """
  groups: dict[str, Group] = {}
  for r in records:
    run = r["_run"]
    g = groups.setdefault(_key(run["overrides"]), Group(run["group"], run["overrides"], [],
                                                        run.get("metadata") or {}))
    g.runs.append(r)
  names = [g.name for g in groups.values()]
  for name in names:
    if names.count(name) > 1:
      raise ReportError(f"group name {name!r} is used by runs with different overrides")
  return list(groups.values())


def welch(reference: list[float], other: list[float]) -> tuple[float, float, float]:
  """(low, high, df) of the Welch 95% confidence interval of mean(other) - mean(reference);
  NaNs when either has fewer than two values (or both no spread)."""
  if len(reference) < 2 or len(other) < 2:
    return math.nan, math.nan, math.nan
  try:
    from scipy import stats  # the `report` extra, like matplotlib
  except ImportError as e:
    raise ReportError(f"compare's intervals need scipy ({e}); install it with "
                      "`pip install -e \".[report]\"`") from None
  result = stats.ttest_ind(other, reference, equal_var=False)
  ci = result.confidence_interval(CONFIDENCE)
  return float(ci.low), float(ci.high), float(result.df)


def verdict(d: Difference, lower_is_better: bool) -> str:
  """The module docstring's rule, from a Difference's interval and bootstrap p-value."""
  if not math.isnan(d.low):
    if d.low <= 0 <= d.high:
      return "within noise"
    improved = (d.high < 0) == lower_is_better
  elif not math.isnan(d.p_bootstrap):
    if d.p_bootstrap >= P_SIGNIFICANT:
      return "within noise (bootstrap)"
    improved = (d.delta < 0) == lower_is_better
    return ("better" if improved else "worse") + " (bootstrap)"
  else:
    return "no verdict (one seed)" if d.no_interval in ("", ONE_SEED) else "no verdict"
  return "better" if improved else "worse"


def _references(record: dict[str, Any]) -> list[str] | None:
  """The dev references a run was scored on: its dev.ref, else the file its config names (the
  committed one-seed records keep only dev.hyp), if its sha256 is the record's; else None."""
  expected = _ref_digest(record)
  candidates = [pathlib.Path(record["_dir"]) / record.get("dev_ref", run_record.DEV_REF)]
  try:
    candidates.append(pathlib.Path(config_lib.split_paths(
        ml_collections.ConfigDict(record["config"]), "val")[1]))
  except (KeyError, TypeError, AttributeError, config_lib.ConfigError):
    pass
  for path in candidates:
    if path.is_file() and (expected is None or run_record.sha256(path) == expected):
      return path.read_text(encoding="utf-8").splitlines()
  return None


def _ref_digest(record: dict[str, Any]) -> str | None:
  return (record.get("data_sha256") or {}).get("dev_ref")


def _bootstrap_all(ref: Group, groups: list[Group]) -> dict[str, float]:
  """Group name -> bootstrap p-value against `ref` (NaN where translations or references are
  missing or the groups were scored on different references)."""
  refs = {}
  for r in ref.runs + [r for g in groups for r in g.runs]:
    if _ref_digest(r) not in refs:
      refs[_ref_digest(r)] = _references(r)

  def system(g: Group) -> list | None:  # per-seed sentence statistics, None if unreadable
    out = []
    for r in g.runs:
      hyp_path = pathlib.Path(r["_dir"]) / r.get("dev_hyp", run_record.DEV_HYP)
      lines = refs.get(_ref_digest(r))
      if lines is None or not hyp_path.is_file():
        return None
      hyps = hyp_path.read_text(encoding="utf-8").splitlines()
      if len(hyps) != len(lines):
        return None
      out.append(bootstrap.sentence_stats(hyps, lines))
    return out

  ref_sys, out = system(ref), {}
  if ref_sys is None:
    return {g.name: math.nan for g in groups}
  ref_hash = {_ref_digest(r) for r in ref.runs}
  weights = bootstrap.resample_weights(len(ref_sys[0]))
  ref_scores = bootstrap.resampled_mean_bleu(ref_sys, weights)
  for g in groups:
    other = system(g)
    same_refs = {_ref_digest(r) for r in g.runs} == ref_hash
    out[g.name] = (bootstrap.p_value(ref_sys, other, weights, ref_scores)
                   if other is not None and same_refs and len(ref_hash) == 1 else math.nan)
  return out


def summarize(records: list[dict[str, Any]], reference: str | None = None
              ) -> tuple[Group, list[Group]]:
  """(reference group, the other groups with their Differences filled in).

  Raises:
    ReportError: `reference` names no group, or (without it) no group has empty overrides.
  """
  groups = group_runs(records)
  names = ", ".join(g.name for g in groups)
  if reference is not None:
    ref = next((g for g in groups if g.name == reference), None)
    if ref is None:
      raise ReportError(f"--reference={reference}: no such group; groups are {names}")
  else:
    ref = next((g for g in groups if not g.overrides), None)
    if ref is None:
      raise ReportError(f"no group without overrides to compare against; pick one with "
                        f"--reference=NAME (groups are {names})")
  others = [g for g in groups if g is not ref]
  p_values = _bootstrap_all(ref, others)
  for g in others:
    for metric, lower_is_better in (("ppl", True), ("bleu", False)):
      delta = g.mean_sd(metric)[0] - ref.mean_sd(metric)[0]
      low, high, df = welch(ref.values(metric), g.values(metric))
      d = Difference(delta, low, high, df, p_values[g.name] if metric == "bleu" else math.nan)
      if math.isnan(low):
        d.no_interval = (ONE_SEED if min(len(g.runs), len(ref.runs)) < 2 else
                         "no interval: no spread over seeds")
      d.verdict = verdict(d, lower_is_better)
      setattr(g, metric, d)
  if any("paper_ppl_dev" in g.metadata for g in groups):  # Table 3 order
    order = {row: i for i, row in enumerate(table3.ROWS)}
    others.sort(key=lambda g: (order.get(g.name, len(order)), g.name))
  return ref, others


def compare(dirs: Sequence[str | pathlib.Path], output: str | pathlib.Path,
            reference: str | None = None) -> dict[str, Any]:
  """Writes OUTPUT.md, OUTPUT.html (self-contained) and OUTPUT_deltas.png, OUTPUT_curves.png.

  Args:
    dirs: sweep roots or run directories holding result.json files.
    output: path prefix of the report files (its directory is created).
    reference: the group to compare against (default: the one without overrides).

  Returns:
    {'markdown': path, 'html': path, 'header': column names, 'rows': the table as lists of
    strings, 'reference': Group, 'groups': [Group]}.

  Raises:
    ReportError: no records under `dirs`, an unreadable record, or no reference group.
  """
  records = load_records(dirs)
  if not records:
    raise ReportError(f"no {run_record.RESULT} under {', '.join(map(str, dirs))}")
  ref, others = summarize(records, reference)
  output = pathlib.Path(output)
  output.parent.mkdir(parents=True, exist_ok=True)
  return {**compare_report.write(ref, others, records, output), "reference": ref,
          "groups": others}
