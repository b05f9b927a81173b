"""experiments/table3_mini/scale.py: issue 14's steps-against-seeds reading, from hand-made
records (no training): means, sample sds, the Welch interval and the growth of |diff| / sd."""

import importlib.util
import json
import math
import pathlib
import statistics

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
SPEC = importlib.util.spec_from_file_location("scale", ROOT / "experiments/table3_mini/scale.py")
scale = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(scale)

# (dev PPL at 500, at 1000, BLEU at 500, at 1000) per seed
BASE = [(40.0, 20.0, 10.0, 20.0), (42.0, 21.0, 11.0, 21.0), (44.0, 22.0, 12.0, 22.0)]
N8 = [(46.0, 19.0, 10.5, 23.0), (48.0, 20.0, 11.5, 24.0)]


def _write(root: pathlib.Path, row: str, runs, wall: float = 600.0) -> None:
  for seed, (p500, p1000, b500, b1000) in enumerate(runs):
    d = root / row / f"seed{seed}"
    d.mkdir(parents=True)
    (d / "result.json").write_text(json.dumps({"steps": 1000, "seed": seed, "dev_ppl": p1000,
                                               "dev_bleu": b1000, "train_wall_seconds": wall}))
    (d / "dev500.json").write_text(json.dumps({"ppl": p500, "bleu": b500}))


def test_scale_report_from_hand_made_records(tmp_path):
  _write(tmp_path, "base", BASE)
  _write(tmp_path, "C-N8", N8)
  (tmp_path / "C-N8" / "seed9").mkdir()  # a run without its records yet: left out
  rows = scale.load(tmp_path)
  assert list(rows) == ["base", "C-N8"] and [len(v) for v in rows.values()] == [3, 2]
  text = scale.report(rows)
  assert "| base | 3 | 42.00 ± 2.00 | 21.00 ± 1.00 | 11.00 ± 1.00 | 21.00 ± 1.00 |" in text
  assert "| C-N8 | 2 | 47.00 ± 1.41 | 19.50 ± 0.71 | 11.00 ± 0.71 | 23.50 ± 0.71 |" in text
  # BLEU at 1000: diff +2.50; Welch by hand (v = s^2 / n, Satterthwaite df, t quantile)
  v1, v2 = 0.5 / 2, 1.0 / 3
  df = (v1 + v2) ** 2 / (v1 ** 2 / 1 + v2 ** 2 / 2)
  from scipy import stats
  half = stats.t.ppf(0.975, df) * math.sqrt(v1 + v2)
  assert f"| C-N8 | BLEU | 1000 | +2.50 | [{2.5 - half:+.2f}, {2.5 + half:+.2f}] |" in text
  # The paper has N8 below base in BLEU (25.5 < 25.8): +2.50 disagrees; |diff| / base sd = 2.5.
  assert "| C-N8 | BLEU | 1000 | +2.50 |" in text and "| no | 2.50 |" in text
  # PPL: +5.00 at 500 (against the paper's lower PPL), -1.50 at 1000 (its way): a turn.
  assert "- C-N8 PPL: turns to the paper's direction between 500 and 1000 steps" in text
  # BLEU: +0.00 at 500 and +2.50 at 1000, both against the paper's lower BLEU: the ratios.
  assert "- C-N8 BLEU: against the paper at both scales; row / base 1.00 at 500, 1.12 at 1000" \
      in text
  assert f"Median train wall time of a 1000-step run: {statistics.median([600.0] * 5):.0f} s" in text


def test_scale_report_needs_two_base_runs(tmp_path):
  _write(tmp_path, "base", BASE[:1])
  with pytest.raises(SystemExit, match="at least 2 finished base runs"):
    scale.report(scale.load(tmp_path))
