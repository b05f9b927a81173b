"""Tests for transformer_jax.train and checkpoint averaging, on tiny real-data runs.

References are independent of the code under test: the learning rate against Eq. 3 written out
here, a resumed run against an uninterrupted one, the checkpoint average against numpy's mean.
"""

from __future__ import annotations

import functools
import json
import math
import pathlib
import shutil

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from conftest import N_TEST, TINY_STEPS, copy_run, tiny_config
from transformer_jax import bleu
from transformer_jax import checkpoint as ckpt_lib
from transformer_jax import config as config_lib
from transformer_jax import optim
from transformer_jax import train as train_lib
from transformer_jax.model import Transformer
from transformer_jax.tokenizer import EOS_ID, Tokenizer

TRAIN_KEYS = ("step", "loss", "learning_rate", "tokens_per_sec", "grad_norm",
              "input_wait_fraction")


def _records(workdir, kind: str) -> list[dict]:
  lines = (workdir / "metrics.jsonl").read_text().splitlines()
  return [r for r in map(json.loads, lines) if r["kind"] == kind]


def _abstract_state(config: ml_collections.ConfigDict):
  """Shapes and dtypes of the TrainState `train` saves for `config` (no arrays allocated)."""
  model = Transformer(config_lib.model_config(config))
  tx, _ = optim.make_optimizer(config)
  dummy = {"src": jnp.ones((1, 8), jnp.int32), "tgt_in": jnp.ones((1, 8), jnp.int32)}
  return jax.eval_shape(lambda: train_lib.create_state(model, tx, jax.random.PRNGKey(0), dummy))


def _restore_params(workdir, config, step: int):
  ckpts = ckpt_lib.Checkpoints(workdir / "checkpoints")
  try:
    state, _ = ckpts.restore(step, _abstract_state(config))
  finally:
    ckpts.close()
  return jax.tree_util.tree_map(np.asarray, state.params)


def _assert_trees_equal(a, b, **tol):
  leaves_a, tree_a = jax.tree_util.tree_flatten(a)
  leaves_b, tree_b = jax.tree_util.tree_flatten(b)
  assert tree_a == tree_b
  for x, y in zip(leaves_a, leaves_b):
    if tol:
      np.testing.assert_allclose(np.asarray(x), np.asarray(y), **tol)
    else:
      np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


# -- one finished run -----------------------------------------------------------------------------

def test_tiny_run_lowers_loss_and_logs_every_metric(trained_run):
  workdir, config, result = trained_run
  train = _records(workdir, "train")
  t = config.train
  assert [r["step"] for r in train] == list(range(t.log_every, TINY_STEPS + 1, t.log_every))
  for r in train:
    assert set(TRAIN_KEYS) <= set(r), r
    assert all(math.isfinite(r[k]) for k in TRAIN_KEYS), r
    assert r["tokens_per_sec"] > 0 and r["grad_norm"] > 0, r
    assert 0 <= r["input_wait_fraction"] < 1, r
  # Label-smoothed loss per token: about ln(256) = 5.5 at the start; the unigram plateau is ~4.1.
  assert train[-1]["loss"] < train[0]["loss"] - 1.0, (train[0], train[-1])
  assert train[-1]["loss"] < 3.8, train[-1]
  assert result["step"] == TINY_STEPS
  assert 0 <= result["input_wait_seconds"] < result["train_seconds"], result


def test_learning_rate_follows_eq3(trained_run):
  workdir, config, _ = trained_run
  t, d_model = config.train, config.model.d_model
  for r in _records(workdir, "train"):
    s = r["step"]  # the rate used by step s (1-based), Eq. 3
    want = t.lr_scale * d_model ** -0.5 * min(s ** -0.5, s * t.warmup_steps ** -1.5)
    assert r["learning_rate"] == pytest.approx(want, rel=1e-5), r


def test_dev_perplexity_recorded_and_falls(trained_run):
  workdir, config, _ = trained_run
  val = _records(workdir, "val")
  assert [r["step"] for r in val] == list(range(config.train.eval_every, TINY_STEPS + 1,
                                                config.train.eval_every))
  assert all(math.isfinite(r["ppl"]) and r["ppl"] == pytest.approx(math.exp(r["nll"]))
             for r in val)
  assert val[-1]["ppl"] < 0.8 * val[0]["ppl"], val
  assert val[-1]["ppl"] < config.data.vocab_size / 2  # far better than uniform over the vocab


def test_run_writes_its_files(trained_run):
  workdir, config, result = trained_run
  events = list((workdir / "tb").glob("events.out.tfevents.*"))
  assert events and all(e.stat().st_size > 0 for e in events)
  saved = ml_collections.ConfigDict(json.loads((workdir / "config.json").read_text()))
  assert json.loads(saved.to_json()) == json.loads(config.to_json_best_effort())
  assert config_lib.model_config(saved) == config_lib.model_config(config)
  assert Tokenizer.load(workdir / "spm.model").vocab_size == config.data.vocab_size
  final = json.loads((workdir / "final.json").read_text())
  assert final["test_bleu"] == pytest.approx(result["test_bleu"])
  assert final["averaged_steps"] == [200, 250, 300]
  assert final["bleu_signature"].startswith("nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|")
  hyps = (workdir / "test.hyp").read_text(encoding="utf-8").splitlines()
  assert len(hyps) == N_TEST and sum(map(bool, hyps)) > N_TEST // 2, hyps[:5]
  refs = pathlib.Path(final["test_ref"]).read_text(encoding="utf-8").splitlines()
  lc = bleu.bleu_lc_moses(hyps, refs)  # beside sacreBLEU, recomputed from what was written
  assert final["test_bleu_lc_moses"] == pytest.approx(lc["bleu"], abs=1e-9)
  assert final["test_bleu_lc_moses_signature"] == lc["signature"]
  assert (workdir / "final_params").is_dir()


# -- resuming ------------------------------------------------------------------------------------

@pytest.mark.parametrize("bpe_dropout", [0.0, 0.1])
def test_resume_matches_uninterrupted_run(tiny_data, tmp_path, bpe_dropout):
  # Big batches make an epoch ~12 steps, so the resumed run crosses into epoch 1; pairs of
  # <= 64 tokens give one batch shape, so each run compiles the step once. With BPE-dropout
  # each epoch is segmented anew, from (data.seed, epoch) only, so resuming sees the same batches.
  n1, n2 = 8, 20
  over = {"data.tokens_per_batch": 2048, "data.max_len": 64, "train.log_every": 1,
          "train.eval_every": 1000, "train.checkpoint_every": 1000,
          "data.bpe_dropout": bpe_dropout}
  logs = []
  split, whole = tmp_path / "split", tmp_path / "whole"
  first = train_lib.train(tiny_config(tiny_data, **over, **{"train.steps": n1}), split,
                          log=lambda *_: None)
  second = train_lib.train(tiny_config(tiny_data, **over, **{"train.steps": n2}), split,
                           log=logs.append)
  train_lib.train(tiny_config(tiny_data, **over, **{"train.steps": n2}), whole,
                  log=lambda *_: None)
  epoch = json.loads((split / "data_stats.json").read_text())["train_batches"]["num_batches"]
  assert n1 < epoch < n2
  assert _records(split, "train")[epoch - 1]["epoch"] == 1.0

  assert (first["step"], second["step"]) == (n1, n2)
  assert any(f"at step {n1}" in line for line in logs), logs
  assert [r["step"] for r in _records(split, "info")] == [0, n1]
  resumed = _records(split, "train")
  assert [r["step"] for r in resumed] == list(range(1, n2 + 1))  # no gap, no repeat
  straight = _records(whole, "train")
  for a, b in zip(resumed, straight):
    # Same step, same batch, same dropout mask (the step is folded into the rng): bit-equal.
    assert (a["step"], a["loss"], a["grad_norm"]) == (b["step"], b["loss"], b["grad_norm"])
  config = tiny_config(tiny_data, **over)
  _assert_trees_equal(_restore_params(split, config, n2), _restore_params(whole, config, n2))


def test_workdir_of_another_model_is_refused(trained_run, tiny_data, tmp_path):
  workdir, _, _ = trained_run
  copy = tmp_path / "run"
  copy.mkdir()
  shutil.copy(workdir / "config.json", copy / "config.json")
  shutil.copytree(workdir / "checkpoints", copy / "checkpoints")
  saved = (copy / "config.json").read_text()
  wider = tiny_config(tiny_data, **{"model.d_model": 64})
  with pytest.raises(config_lib.ConfigError, match=r"model\.d_model: saved 32, requested 64") as e:
    train_lib.train(wider, copy, log=lambda *_: None)
  assert "model.d_ff" not in str(e.value)
  assert (copy / "config.json").read_text() == saved  # refused before touching the workdir


# -- the step function ----------------------------------------------------------------------------

def test_train_step_is_pure(tiny_data):
  config = tiny_config(tiny_data)
  model = Transformer(config_lib.model_config(config))
  tx, _ = optim.make_optimizer(config)
  ids = np.random.default_rng(0).integers(4, config.data.vocab_size, size=(2, 8), dtype=np.int32)
  ids[:, -1] = EOS_ID
  batch = {"src": ids, "tgt_in": np.roll(ids, 1, axis=1), "tgt_out": ids}
  state = train_lib.create_state(model, tx, jax.random.PRNGKey(0), batch)
  step = jax.jit(functools.partial(train_lib.train_step, model=model, tx=tx, eps_ls=0.1))
  rng = jax.random.key(1, impl="rbg")

  new1, m1 = step(state, batch, rng)
  new2, m2 = step(state, batch, rng)
  _assert_trees_equal(m1, m2)
  _assert_trees_equal(new1, new2)
  assert int(new1.step) == 1
  # The metrics do depend on the rng and on the step folded into it (dropout is on), so the
  # equalities above are not vacuous.
  _, other_rng = step(state, batch, jax.random.key(2, impl="rbg"))
  _, other_step = step(state.replace(step=jnp.int32(5)), batch, rng)
  assert float(other_rng["loss"]) != float(m1["loss"])
  assert float(other_step["loss"]) != float(m1["loss"])


# -- checkpoint averaging (Section 6.1) -----------------------------------------------------------

def test_average_params_is_the_mean_of_the_checkpoints(trained_run):
  workdir, config, _ = trained_run
  ckpts = ckpt_lib.Checkpoints(workdir / "checkpoints", keep=config.train.keep_checkpoints)
  try:
    steps = ckpts.steps()
    assert steps == [200, 250, 300]
    average = ckpt_lib.average_params(ckpts, steps, _abstract_state(config))
  finally:
    ckpts.close()
  each = [_restore_params(workdir, config, s) for s in steps]
  mean = jax.tree_util.tree_map(lambda *x: np.mean(np.stack(x), axis=0), *each)
  _assert_trees_equal(average, mean, rtol=1e-6, atol=1e-7)
  assert all(leaf.dtype == np.float32 for leaf in jax.tree_util.tree_leaves(average))
  assert not all(np.array_equal(a, b) for a, b in zip(jax.tree_util.tree_leaves(average),
                                                       jax.tree_util.tree_leaves(each[-1])))
  # The final model training wrote is this average.
  final = ckpt_lib.load_params(workdir / "final_params", _abstract_state(config).params)
  _assert_trees_equal(final, average)


def test_val_only_final_evaluation_writes_strict_json(trained_run, tiny_data, tmp_path):
  copy = copy_run(trained_run, tmp_path)
  config = tiny_config(tiny_data, **{"train.final_eval": True,
                                     "train.final_eval_splits": ("val",)})
  result = train_lib.train(config, copy, log=lambda *_: None)  # nothing left to train
  assert "val" in result["bleu"] and "test_bleu" not in result
  lines = (copy / "metrics.jsonl").read_text().splitlines()
  final = [json.loads(x, parse_constant=lambda c: pytest.fail(f"{c} in metrics.jsonl"))
           for x in lines if '"final"' in x]
  assert len(final) == 1 and final[0]["ppl"] > 1 and "bleu" not in final[0]
