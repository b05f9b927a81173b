"""Tests for Table 3: the row configs, their parameter counts and the sweep runner.

The rows are checked against ../shared/paper/table3.csv (skipped without it); every row builds,
locks and takes one training step at the mini scale; a two-row sweep runs end to end through the
CLI on a slice of Multi30k (about a minute), is skipped when finished, resumes an interrupted
run, each run leaves its HParams summary in its own TensorBoard directory, and compare reads
the records (compare itself: tests/test_compare.py).
"""

from __future__ import annotations

import csv
import functools
import json
import math
import os
import pathlib
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from transformer_jax import config as config_lib
from transformer_jax import optim
from transformer_jax import train as train_lib
from transformer_jax.experiments import spec
from transformer_jax.experiments import table3
from transformer_jax import workdir as workdir_lib
from transformer_jax.model import Transformer, count_params, param_shapes

ROOT = pathlib.Path(__file__).resolve().parents[1]
PAPER_CSV = ROOT.parent / "shared" / "paper" / "table3.csv"
MODEL_KEYS = ("n_layers", "d_model", "d_ff", "h", "d_k", "d_v", "p_drop", "positions")


def _name(csv_row: dict) -> str:
  return csv_row["row"] if csv_row["row"] in ("base", "big") else (
      f"{csv_row['row']}-{csv_row['variant']}")


def test_rows_are_the_papers_rows_with_its_numbers():
  if not PAPER_CSV.exists():
    pytest.skip(f"{PAPER_CSV} absent (no ../shared)")
  with PAPER_CSV.open() as f:
    rows = list(csv.DictReader(f))
  assert [_name(r) for r in rows] == list(table3.ROWS)
  for r in rows:
    c = table3.get_config(_name(r))
    m = c.model
    assert (m.n_layers, m.d_model, m.d_ff, m.h, m.d_k, m.d_v) == tuple(
        int(r[k]) for k in ("N", "d_model", "d_ff", "h", "d_k", "d_v")), _name(r)
    assert (m.p_drop, c.train.eps_ls, m.positions, c.train.steps) == (
        float(r["P_drop"]), float(r["eps_ls"]), r["positions"], int(r["train_steps"])), _name(r)
    assert (c.table3.paper_ppl_dev, c.table3.paper_bleu_dev) == (float(r["ppl_dev"]),
                                                                 float(r["bleu_dev"]))
    assert c.table3.paper_params_m == (float(r["params_M"]) if r["params_M"] else -1.0)
    assert c.train.average_last == 1  # Table 3 uses no checkpoint averaging


def test_bad_row_scale_and_option_are_named():
  with pytest.raises(config_lib.ConfigError, match="unknown row 'B-dk8'.*B-dk16"):
    table3.get_config("B-dk8")
  with pytest.raises(config_lib.ConfigError, match="scale must be one of"):
    table3.get_config("base,scale=tiny")
  with pytest.raises(config_lib.ConfigError, match=r"unknown option\(s\) \['seeds'\]"):
    table3.get_config("base,seeds=2")


def test_configs_are_locked_and_seeded():
  c = table3.get_config("A-h4,scale=mini,seed=3")
  with pytest.raises((AttributeError, KeyError)):
    c.model.not_a_key = 1
  assert (c.train.seed, c.data.seed, c.table3.seed, c.table3.row) == (3, 3, 3, "A-h4")


def _numeric(c) -> dict:
  values = {f"model.{k}": c.model[k] for k in MODEL_KEYS}
  values.update({"train.eps_ls": c.train.eps_ls, "train.steps": c.train.steps})
  return values


@pytest.mark.parametrize("row", [r for r in table3.ROWS if r != "base"])
def test_mini_scale_keeps_each_rows_relation_to_base(row):
  """What changes from base at the paper's scale changes at the mini scale, by the same ratio
  (so h * d_k = d_model in A, only d_k in B, 3x steps for big, ...)."""
  paper, paper_base = _numeric(table3.get_config(row)), _numeric(table3.get_config("base"))
  mini = _numeric(table3.get_config(f"{row},scale=mini"))
  mini_base = _numeric(table3.get_config("base,scale=mini"))
  changed = {k for k in paper if paper[k] != paper_base[k]}
  assert changed and changed == {k for k in mini if mini[k] != mini_base[k]}
  for k in changed:
    if isinstance(paper[k], str) or k in ("model.p_drop", "train.eps_ls"):
      assert mini[k] == paper[k], k  # categorical values and rates are kept as they are
    else:
      assert mini[k] / mini_base[k] == pytest.approx(paper[k] / paper_base[k]), k
  m = table3.get_config(f"{row},scale=mini").model
  if row.startswith("A-") or row.startswith("C-dmodel"):
    assert m.h * m.d_k == m.d_model and m.d_v == m.d_k


@functools.lru_cache(maxsize=None)
def _count(row: str) -> int:
  """Parameters of a row at the paper's scale (37000-piece vocabulary), from shapes only."""
  return count_params(param_shapes(config_lib.model_config(table3.get_config(row))))


@pytest.mark.parametrize("row", [r for r, (_, (_, _, p)) in table3.ROWS.items()
                                 if p is not None and r != "base"])
def test_parameter_count_difference_from_base_matches_the_paper(row):
  """Within 1M where d_model stays 512, within 5M where it changes (the paper's counts depend
  on its vocabulary, "about 37000")."""
  assert table3.get_config(row).data.vocab_size == 37000
  ours = (_count(row) - _count("base")) / 1e6
  paper = table3.ROWS[row][1][2] - table3.ROWS["base"][1][2]
  tolerance = 1.0 if table3.get_config(row).model.d_model == 512 else 5.0
  assert abs(ours - paper) <= tolerance, f"{row}: ours {ours:+.2f}M, paper {paper:+}M"


@pytest.mark.parametrize("row", list(table3.ROWS))
def test_every_row_takes_a_training_step_at_the_mini_scale(row):
  c = table3.get_config(f"{row},scale=mini")
  c.data.vocab_size = 64  # the model only needs the size; no vocabulary is trained here
  model = Transformer(config_lib.model_config(c))
  tx, _ = optim.make_optimizer(c)
  rng = np.random.default_rng(0)
  tokens = jnp.asarray(rng.integers(4, 64, (2, 8)), jnp.int32)
  batch = {"src": tokens, "tgt_in": tokens, "tgt_out": tokens}
  # Parameters drawn in numpy from the init's shapes: one compile per row (the step), not two.
  shapes = jax.eval_shape(lambda: train_lib.create_state(model, tx, jax.random.PRNGKey(0), batch))
  params = jax.tree_util.tree_map(
      lambda s: jnp.asarray(rng.normal(0.0, 0.05, s.shape), s.dtype), shapes.params)
  state = train_lib.TrainState(jnp.int32(0), params, tx.init(params))
  step = jax.jit(lambda s, b: train_lib.train_step(s, b, jax.random.key(1, impl="rbg"),
                                                   model=model, tx=tx, eps_ls=c.train.eps_ls))
  new, metrics = step(state, batch)
  assert int(new.step) == 1 and np.isfinite(float(metrics["loss"]))
  moved = jax.tree_util.tree_map(lambda a, b: bool(jnp.any(a != b)), state.params, new.params)
  assert all(jax.tree_util.tree_leaves(moved))


def test_table3_sweep_is_the_rows_with_the_papers_numbers_and_only_selects_them():
  points = table3.get_sweep("scale=mini")
  assert [p.label for p in points] == list(table3.ROWS)
  for p in points:
    overrides, (ppl, bleu, params_m) = table3.ROWS[p.label]
    assert dict(p.overrides) == overrides and p.arg == f"{p.label},scale=mini"
    assert dict(p.metadata) == {"paper_ppl_dev": ppl, "paper_bleu_dev": bleu,
                                "paper_params_m": params_m,
                                "table3_group": table3.group(p.label)}
  assert [p.label for p in spec.select(points, "B,big")] == ["base", "B-dk16", "B-dk32", "big"]
  assert [p.label for p in spec.select(points, "A-h1*")] == ["base", "A-h1", "A-h16"]
  assert spec.select(points, "") == points
  with pytest.raises(spec.SpecError, match="'F' matches no run"):
    spec.select(points, "A,F")
  with pytest.raises(config_lib.ConfigError, match="expected \\[scale=paper\\|mini\\]"):
    table3.get_sweep("scale=tiny")


# --- a two-row sweep, end to end through the CLI ------------------------------------------------

def _cli(*args, cwd=ROOT) -> subprocess.CompletedProcess:
  env = dict(os.environ, TRANSFORMER_JAX_HUGE_PAGES="0")
  return subprocess.run([sys.executable, "-m", "transformer_jax.main", *args], cwd=cwd, env=env,
                        capture_output=True, text=True, timeout=600)


def test_sweep_runs_skips_finished_and_resumes_interrupted(tiny_data, tmp_path):
  tiny = [f"--config.data.{k}={v}" for k, v in tiny_data.items() if not k.startswith("test")]
  tiny += ["--config.data.vocab_size=256", "--config.data.bucket_boundaries=(64,128)",
           "--config.train.steps=6", "--config.train.checkpoint_every=3",
           "--config.train.eval_every=3", "--config.decode.beam_size=2",
           "--config.decode.max_extra_len=5", "--config.model.n_layers=1"]
  root = tmp_path / "sweep"
  config = f"--config={ROOT / 'configs' / 'table3.py'}"
  # An interrupted run: B-dk16 trained to a checkpoint at step 3, no result.json.
  partial = _cli("train", f"{config}:B-dk16,scale=mini,seed=0",
                 f"--workdir={root / 'B-dk16' / 'seed0'}", *tiny, "--config.train.steps=3")
  assert partial.returncode == 0, partial.stderr[-2000:]

  # The old spelling (--rows, --scale) and the new one (--only, the config argument) agree.
  dry = _cli("sweep", config, "--rows=B-dk16", "--scale=mini", f"--root={root}", "--dry-run",
             *tiny)
  assert dry.returncode == 0, dry.stderr[-2000:]
  commands = dry.stdout.strip().splitlines()
  assert len(commands) == 2 and all(c.startswith("transformer-jax run --config=") for c in commands)
  assert "B-dk16,scale=mini " in commands[1] and "--config.train.seed=0" in commands[1]
  assert "--config.train.steps=6" in commands[1]
  new = _cli("sweep", f"{config}:scale=mini", "--only=B-dk16", f"--root={root}", "--dry-run",
             *tiny)
  assert new.stdout == dry.stdout, new.stderr[-2000:]

  # While another process (here: this one) holds B-dk16's workdir, the sweep runs base and
  # skips B-dk16 as claimed; the next sweep resumes it.
  with workdir_lib.hold(root / "B-dk16" / "seed0"):
    first = _cli("sweep", f"{config}:scale=mini", "--only=B-dk16", f"--root={root}", *tiny)
  assert first.returncode == 0, first.stdout[-2000:] + first.stderr[-2000:]
  assert "start base/seed0" in first.stdout and "done base/seed0" in first.stdout
  assert "skip B-dk16/seed0: claimed by another process" in first.stdout, first.stdout
  assert "1 skipped (claimed by another process)" in first.stdout
  log = (root / "B-dk16" / "seed0" / "run.log").read_text()
  assert f"is in use by pid {os.getpid()}" in log and "Traceback" not in log, log
  assert not (root / "B-dk16" / "seed0" / "result.json").exists()

  done = _cli("sweep", f"{config}:scale=mini", "--only=B-dk16", f"--root={root}", *tiny)
  assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
  assert "skip base/seed0" in done.stdout and "resume B-dk16/seed0" in done.stdout
  log = (root / "B-dk16" / "seed0" / "run.log").read_text()
  assert "at step 3" in log  # resumed from the checkpoint, not retrained
  record = json.loads((root / "B-dk16" / "seed0" / "result.json").read_text())
  assert record["steps"] == 6 and record["config"]["model"]["d_k"] == 4
  assert record["paper"]["paper_bleu_dev"] == 25.1 and len(record["vocab_sha256"]) == 64
  assert record["row"] == "B-dk16" and record["run"] == {
      "name": "B-dk16/seed0", "group": "B-dk16", "overrides": {"model.d_k": 16}, "seed": 0,
      "sweep": f"{ROOT / 'configs' / 'table3.py'}:scale=mini",
      "metadata": {"paper_ppl_dev": 5.16, "paper_bleu_dev": 25.1, "paper_params_m": 58,
                   "table3_group": "B"}}
  base = json.loads((root / "base" / "seed0" / "result.json").read_text())
  assert (base["run"]["group"], base["run"]["overrides"]) == ("base", {})
  assert math.isfinite(record["dev_ppl"]) and record["versions"]["jax"] == jax.__version__
  mtime = (root / "base" / "seed0" / "result.json").stat().st_mtime_ns

  again = _cli("sweep", f"{config}:scale=mini", "--only=B-dk16", f"--root={root}", *tiny)
  assert again.returncode == 0 and again.stdout.count("skip ") == 2
  assert (root / "base" / "seed0" / "result.json").stat().st_mtime_ns == mtime

  compared = _cli("compare", str(root), f"--output={tmp_path / 'report'}")
  assert compared.returncode == 0, compared.stderr[-2000:]
  assert "| B-dk16 | 1 |" in compared.stdout and "| A-h1 | missing |" in compared.stdout
  assert "(one seed: no interval)" in compared.stdout
  assert (tmp_path / "report.html").exists()
  for run in ("base", "B-dk16"):  # HParams beside the run's training scalars, no sub-run
    tb = root / run / "seed0" / "tb"
    assert len(list(tb.glob("*tfevents*.hparams"))) == 1
    assert [p for p in tb.iterdir() if p.is_dir()] == []
