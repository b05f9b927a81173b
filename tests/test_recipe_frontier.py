"""experiments/multi30k_recipe/collect.py: issue 16's frontier of val BLEU against training
compute, from hand-made records (no training): the step parsed from each scored average's
file name, compute in the default's loops from the measured step-cost ratios, and the run's
own end taken from its row."""

import importlib.util
import json
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
SPEC = importlib.util.spec_from_file_location(
    "collect", ROOT / "experiments/multi30k_recipe/collect.py")
collect = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(collect)


def test_frontier_points_from_hand_made_records(tmp_path):
  run = tmp_path / "p37_tiny_literature"
  run.mkdir()
  (run / "eval_val_step4030.json").write_text(json.dumps({"bleu_lc_moses": 40.6, "bleu": 40.5}))
  (tmp_path / "p17_main_drop02_x2").mkdir()
  (tmp_path / "p17_main_drop02_x2" / "eval_val_avg5_step5100.json").write_text(
      json.dumps({"bleu_lc_moses": 40.5, "bleu": 40.4}))
  rows = [{"name": "p37_tiny_literature", "step": 8000, "val_bleu_lc_moses": 41.8,
           "val_sacrebleu": 41.7},
          {"name": "p17_main_drop02_x2", "step": 6800, "val_bleu_lc_moses": 40.9,
           "val_sacrebleu": 40.7},
          {"name": "p99_not_a_probe", "step": 3400, "val_bleu_lc_moses": 50.0,
           "val_sacrebleu": 50.0}]
  points = collect.frontier(tmp_path, rows)
  got = [(p["run"], p["step"], round(p["compute"], 4), p["val_bleu_lc_moses"]) for p in points]
  tiny = collect.STEP_COST["tiny8192_accum4"]
  assert got == [("p17_main_drop02_x2", 5100, 1.5, 40.5), ("p17_main_drop02_x2", 6800, 2.0, 40.9),
                 ("p37_tiny_literature", 4030, round(4030 * tiny / 3400, 4), 40.6),
                 ("p37_tiny_literature", 8000, round(8000 * tiny / 3400, 4), 41.8)]
  assert points[-1]["series"] == "p37: Wu et al.'s Tiny at their recipe"
  pytest.importorskip("matplotlib")
  png = collect.plot_frontier(points, tmp_path / "frontier.png")
  assert png.stat().st_size > 1000
