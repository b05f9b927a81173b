"""Tests for `compare` (transformer_jax/experiments/compare.py), from synthetic run records.

Welch intervals and verdicts are checked against the formula computed here by hand; the
seed-pooled bootstrap against sacrebleu's own paired test where each group has one seed;
three rows of the first, one-seed mini Table 3 (tests/data/table3_one_seed, written before
records had a "run" key) still load and compare. No training.
"""

from __future__ import annotations

import hashlib
import json
import math
import pathlib
import re
import shutil
import statistics

import pytest
from sacrebleu import significance
from sacrebleu.metrics import BLEU
from scipy import stats

from transformer_jax.experiments import bootstrap
from transformer_jax.experiments import compare
from transformer_jax.experiments import compare_report

ROOT = pathlib.Path(__file__).resolve().parents[1]
COMMITTED = ROOT / "tests" / "data" / "table3_one_seed"
REFS = ["ein Hund läuft im Park .", "zwei Männer spielen Fußball .", "eine Frau liest ein Buch .",
        "ein Kind springt ins Wasser ."] * 10
GOOD = list(REFS)
BAD = ["ein Katze .", "drei Frauen .", "eine Frau liest .", "ein Kind ."] * 10


def _name(overrides: dict) -> str:
  return ",".join(f"{k.split('.')[-1]}={v}" for k, v in sorted(overrides.items())) or "base"


def _record(root: pathlib.Path, overrides: dict, seed: int, ppl: float, bleu: float,
            hyps: list[str], metadata: dict | None = None, group: str | None = None) -> None:
  """A result.json in the agreed shape (with "run"), plus dev.hyp and dev.ref."""
  group = group or _name(overrides)
  d = root / group / f"seed{seed}"
  d.mkdir(parents=True)
  (d / "dev.hyp").write_text("".join(h + "\n" for h in hyps), encoding="utf-8")
  (d / "dev.ref").write_text("".join(r + "\n" for r in REFS), encoding="utf-8")
  (d / "result.json").write_text(json.dumps({
      "run": {"name": f"{group}/seed{seed}", "group": group, "overrides": overrides,
              "seed": seed, "sweep": "configs/sweep.py", "metadata": metadata or {}},
      "seed": seed, "steps": 100, "params": 2_000_000, "dev_ppl": ppl, "dev_bleu": bleu,
      "dev_bleu_signature": "sig", "dev_hyp": "dev.hyp", "dev_ref": "dev.ref",
      "data_sha256": {"dev_ref": hashlib.sha256((d / "dev.ref").read_bytes()).hexdigest()}, "dev_loss_curve": [[50, 3.0 + seed], [100, 2.5]]}))


def _hand_welch(ref: list[float], other: list[float]) -> tuple[float, float, float]:
  """95% Welch interval of mean(other) - mean(ref), from the formula."""
  v1, v2 = statistics.variance(other) / len(other), statistics.variance(ref) / len(ref)
  df = (v1 + v2) ** 2 / (v1 ** 2 / (len(other) - 1) + v2 ** 2 / (len(ref) - 1))
  half = stats.t.ppf(0.975, df) * math.sqrt(v1 + v2)
  diff = statistics.fmean(other) - statistics.fmean(ref)
  return diff - half, diff + half, df


def test_welch_interval_and_verdict_match_the_formula(tmp_path):
  base_ppl, base_bleu = [5.0, 5.3, 5.1], [30.0, 29.0, 29.6]
  h4_ppl, h4_bleu = [6.0, 6.2, 6.1], [29.5, 28.1, 30.2]  # clearly worse PPL; BLEU in noise
  for seed, (p, b) in enumerate(zip(base_ppl, base_bleu)):
    _record(tmp_path, {}, seed, p, b, GOOD)
  for seed, (p, b) in enumerate(zip(h4_ppl, h4_bleu)):
    _record(tmp_path, {"model.h": 4}, seed, p, b, GOOD)
  out = compare.compare([tmp_path], tmp_path / "out" / "report")
  ref, (h4,) = out["reference"], out["groups"]
  assert ref.name == "base" and h4.name == "h=4" and h4.seeds == [0, 1, 2]
  for d, base, ours, verdict in ((h4.ppl, base_ppl, h4_ppl, "worse"),
                                 (h4.bleu, base_bleu, h4_bleu, "within noise")):
    low, high, df = _hand_welch(base, ours)
    assert d.delta == pytest.approx(statistics.fmean(ours) - statistics.fmean(base))
    assert (d.low, d.high, d.df) == pytest.approx((low, high, df), rel=1e-9)
    assert d.verdict == verdict
  row = dict(zip(out["header"], out["rows"][1]))
  low, high, _ = _hand_welch(base_ppl, h4_ppl)
  assert row["ΔPPL [95% CI]"] == f"+0.97 [{low:+.2f}, {high:+.2f}]"
  assert row["PPL verdict"] == "worse" and row["BLEU verdict"] == "within noise"
  assert row["p (bootstrap)"] == "1.000"  # identical translations in every seed
  md = out["markdown"].read_text()
  assert md.index("**Noise.**") < md.index("| group |")  # the noise is stated first
  sd = statistics.stdev(base_ppl)
  assert "Seeds per group: 3 in each of the 2 groups." in md and f"sd is {sd:.2f} in dev perplexity" in md


def test_lower_perplexity_is_better_and_higher_bleu_is_better(tmp_path):
  for seed, (p, b) in enumerate(((5.0, 30.0), (5.2, 30.4), (5.1, 29.8))):
    _record(tmp_path, {}, seed, p, b, GOOD)
  for seed, (p, b) in enumerate(((4.0, 33.0), (4.1, 33.5), (3.9, 32.9))):
    _record(tmp_path, {"train.eps_ls": 0.0}, seed, p, b, GOOD)
  (g,) = compare.compare([tmp_path], tmp_path / "report")["groups"]
  assert g.ppl.high < 0 and g.ppl.verdict == "better"
  assert g.bleu.low > 0 and g.bleu.verdict == "better"


def test_one_seed_group_says_no_interval_and_falls_back_to_the_bootstrap(tmp_path):
  _record(tmp_path, {}, 0, 5.0, 30.0, GOOD)
  _record(tmp_path, {}, 1, 5.2, 29.0, GOOD)
  _record(tmp_path, {"model.n_layers": 2}, 0, 7.0, 10.0, BAD)
  out = compare.compare([tmp_path], tmp_path / "report")
  (g,) = out["groups"]
  assert math.isnan(g.ppl.low) and g.ppl.no_interval == "one seed: no interval"
  assert g.ppl.verdict == "no verdict (one seed)"
  assert g.bleu.p_bootstrap < 0.05 and g.bleu.verdict == "worse (bootstrap)"
  row = dict(zip(out["header"], out["rows"][1]))
  assert row["ΔPPL [95% CI]"] == "+1.90 (one seed: no interval)"
  assert row["ΔBLEU [95% CI]"] == "-19.50 (one seed: no interval)"
  assert "Seeds per group: 2 (`base`); 1 (`n_layers=2`)." in out["markdown"].read_text()


def test_runs_are_grouped_by_overrides_with_seeds_pooled(tmp_path):
  # Same overrides under different directory and group spellings are one group.
  _record(tmp_path / "a", {}, 0, 5.0, 30.0, GOOD)
  _record(tmp_path / "b", {}, 1, 6.0, 29.0, GOOD)
  _record(tmp_path / "a", {"model.h": 4, "model.p_drop": 0.3}, 0, 5.5, 28.0, GOOD)
  _record(tmp_path / "b", {"model.p_drop": 0.3, "model.h": 4}, 2, 5.9, 28.4, GOOD)
  out = compare.compare([tmp_path / "a", tmp_path / "b"], tmp_path / "report")
  assert out["reference"].seeds == [0, 1] and out["reference"].mean_sd("ppl")[0] == 5.5
  (g,) = out["groups"]
  assert g.name == "h=4,p_drop=0.3" and g.seeds == [0, 2]
  assert g.ppl.delta == pytest.approx(5.7 - 5.5)
  _record(tmp_path / "c", {"model.h": 4, "model.p_drop": 0.3}, 2, 5.9, 28.4, GOOD)
  with pytest.raises(compare.ReportError, match="are the same run.*seed 2"):
    compare.compare([tmp_path], tmp_path / "report")


def test_reference_flag_picks_the_group_to_compare_against(tmp_path, cli):
  _record(tmp_path, {}, 0, 5.0, 30.0, GOOD)
  _record(tmp_path, {"model.h": 4}, 0, 6.0, 25.0, BAD)
  _record(tmp_path, {"model.h": 16}, 0, 6.5, 24.0, BAD)
  out, _ = cli("compare", str(tmp_path), f"--output={tmp_path / 'r'}", "--reference=h=4")
  assert "reference: h=4." in out
  assert re.search(r"\| h=4 \| 1 \| 6\.00 \| reference \|", out)
  assert re.search(r"\| base \| 1 \| 5\.00 \| -1\.00 \(one seed: no interval\) \|", out)
  assert re.search(r"\| h=16 \| 1 \| 6\.50 \| \+0\.50 ", out)
  with pytest.raises(SystemExit, match="--reference=h=8: no such group; groups are base, h=16, "
                                       "h=4"):
    cli("compare", str(tmp_path), f"--output={tmp_path / 'r'}", "--reference=h=8")


def test_a_sweep_without_a_reference_group_is_an_error(tmp_path):
  _record(tmp_path, {"model.h": 4}, 0, 6.0, 25.0, GOOD)
  with pytest.raises(compare.ReportError, match="no group without overrides.*--reference"):
    compare.compare([tmp_path], tmp_path / "report")
  (tmp_path / "empty").mkdir()
  with pytest.raises(compare.ReportError, match="no result.json"):
    compare.compare([tmp_path / "empty"], tmp_path / "report")
  with pytest.raises(compare.ReportError, match="nothing is not a directory"):
    compare.compare([tmp_path / "nothing"], tmp_path / "report")
  (tmp_path / "h=4" / "seed0" / "result.json").write_text('{"dev_ppl": 1.0}')
  with pytest.raises(compare.ReportError, match="seed0/result.json is not a valid run record"):
    compare.compare([tmp_path], tmp_path / "report")


def _t3(row: str, paper_ppl: float, paper_bleu: float) -> dict:
  return {"paper_ppl_dev": paper_ppl, "paper_bleu_dev": paper_bleu, "paper_params_m": None,
          "table3_group": row.split("-")[0]}


def test_table3_findings_reproduced_contradicted_unresolved(tmp_path):
  base = _t3("base", 4.92, 25.8)
  for seed, (p, b) in enumerate(((5.0, 30.0), (5.2, 29.6), (5.1, 29.8))):
    _record(tmp_path, {}, seed, p, b, GOOD, base, group="base")
  rows = {  # row: (overrides, paper PPL, paper BLEU, our (PPL, BLEU) per seed)
      "C-N2": ({"model.n_layers": 2}, 6.11, 23.7, ((7.0, 25.0), (7.2, 25.4), (7.1, 24.8))),
      "D-ls0.2": ({"train.eps_ls": 0.2}, 5.47, 25.7, ((5.3, 29.0), (4.9, 30.3), (5.2, 29.8))),
      "C-N8": ({"model.n_layers": 8}, 4.88, 25.5, ((6.0, 27.0), (6.2, 27.2), (6.1, 26.9))),
      "E-learned": ({"model.positions": "learned"}, 4.92, 25.7, ((6.0, 29.0), (6.1, 29.4))),
      "B-dk16": ({"model.d_k": 16}, 5.16, 25.1, ((5.5, 28.0),)),
  }
  for row, (overrides, pp, pb, values) in rows.items():
    for seed, (p, b) in enumerate(values):
      _record(tmp_path, overrides, seed, p, b, GOOD, _t3(row, pp, pb), group=row)
  out = compare.compare([tmp_path], tmp_path / "report")
  by_row = {r[0]: dict(zip(out["header"], r)) for r in out["rows"]}
  assert [r[0] for r in out["rows"][:6]] == ["base", "B-dk16", "C-N2", "C-N8", "D-ls0.2",
                                             "E-learned"]  # Table 3 order
  assert by_row["A-h1"]["seeds"] == "missing" and by_row["A-h1"]["PPL (paper)"] == "5.29"
  assert by_row["C-N2"]["ΔPPL (paper)"] == "+1.19" and by_row["C-N2"]["PPL verdict"] == "worse"
  ppl = {row: by_row[row]["PPL against the paper"] for row in rows}
  bleu = {row: by_row[row]["BLEU against the paper"] for row in rows}
  # C-N2 is worse in both, as in the paper; C-N8's PPL is worse where the paper's is 0.04 lower;
  # E-learned's PPL differs beyond noise where the paper has none (4.92 = base's 4.92).
  assert ppl == {"C-N2": "reproduced", "D-ls0.2": "unresolved (same direction)",
                 "C-N8": "contradicted", "E-learned": "contradicted (paper: no change)",
                 "B-dk16": "unresolved (one seed)"}
  # BLEU: C-N8 -2.8 against the paper's -0.3; E-learned -0.6 (interval holds 0) against -0.1.
  assert bleu == {"C-N2": "reproduced", "D-ls0.2": "unresolved (same direction)",
                  "C-N8": "reproduced", "E-learned": "unresolved (same direction)",
                  "B-dk16": "unresolved (one seed)"}
  counts = compare_report.finding_counts(out["reference"], out["groups"])
  assert counts == {
      "PPL": {"reproduced": 1, "contradicted": 2, "unresolved": 2, "same direction": 1},
      "BLEU": {"reproduced": 2, "contradicted": 0, "unresolved": 3, "same direction": 2}}
  md = out["markdown"].read_text()
  assert ("PPL: 1 reproduced, 2 contradicted, 2 unresolved (1 of them pointing the paper's "
          "way); BLEU: 2 reproduced, 0 contradicted, 3 unresolved (2 of them pointing the "
          "paper's way). 14 of Table 3's rows have no runs yet.") in md


def test_committed_records_without_a_run_key_still_compare(tmp_path):
  runs = tmp_path / "runs"
  for row in ("base", "B-dk16", "D-ls0.2"):
    shutil.copytree(COMMITTED / row, runs / row)
  out = compare.compare([runs], tmp_path / "report")
  ref, groups = out["reference"], {g.name: g for g in out["groups"]}
  assert ref.name == "base" and set(groups) == {"B-dk16", "D-ls0.2"}
  assert groups["B-dk16"].overrides == {"model.d_k": 16}
  assert groups["B-dk16"].metadata["paper_params_m"] == 58
  assert groups["D-ls0.2"].metadata["paper_params_m"] is None  # -1 in the record
  # The records keep dev.hyp only; the references are found through the run's config (the
  # embedded Multi30k val.de), checked by sha256. Our BLEU from the bootstrap's sentence
  # statistics is the record's, and the one-seed p-value is sacrebleu's own paired test's.
  refs = compare._references(ref.runs[0])
  assert refs is not None and len(refs) == 1014
  hyps = {n: (pathlib.Path(g.runs[0]["_dir"]) / "dev.hyp").read_text().splitlines()
          for n, g in [("base", ref), *groups.items()]}
  for name, g in [("base", ref), *groups.items()]:
    score = bootstrap.corpus_bleu(bootstrap.sentence_stats(hyps[name], refs).sum(0))
    assert score == pytest.approx(g.runs[0]["dev_bleu"], abs=1e-9)
  for name in ("B-dk16", "D-ls0.2"):
    test = significance.PairedTest([("base", hyps["base"]), (name, hyps[name])],
                                   {"BLEU": BLEU()}, [refs], test_type="bs", n_samples=1000)
    _, results = test()
    assert groups[name].bleu.p_bootstrap == pytest.approx(results["BLEU"][1].p_value)
  assert groups["D-ls0.2"].bleu.verdict == "within noise (bootstrap)"  # p = 0.126


def test_html_is_self_contained(tmp_path):
  for seed in (0, 1):
    _record(tmp_path, {}, seed, 5.0 + seed / 10, 30.0 + seed / 3, GOOD)
    _record(tmp_path, {"model.h": 4}, seed, 6.0 + seed / 10, 28.0 - seed, BAD)
  out = compare.compare([tmp_path], tmp_path / "out" / "report")
  page = out["html"].read_text()
  assert page.count('src="data:image/png;base64,') == 2
  assert not re.search(r'(src|href)="(?!data:)', page)  # nothing fetched from elsewhere
  assert "<b>Noise.</b>" in page and "<td>h=4</td>" in page
  assert (tmp_path / "out" / "report_deltas.png").stat().st_size > 1000
  again = compare.compare([tmp_path], tmp_path / "out2" / "report")
  assert again["markdown"].read_text() == out["markdown"].read_text()  # same records, same report
