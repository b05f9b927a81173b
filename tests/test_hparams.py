"""Tests for the HParams summaries (transformer_jax/experiments/hparams.py), read back with
TensorBoard's own event reader and HParams plugin handlers (the code behind the dashboard).

A three-run sweep (two seeds of base, one of h=4) with training scalars written the way
training writes them; each run gets its hyperparameters and final metrics; TensorBoard must see
exactly one run per workdir (no stray sub-run), one HParams row per run with its overrides,
seed and metrics, and the columns of every run (not only the first one's).
"""

from __future__ import annotations

import pathlib

import pytest
from tensorboard import context
from tensorboard.backend.event_processing import data_provider, plugin_event_multiplexer
from tensorboard.plugins import base_plugin
from tensorboard.plugins.hparams import api_pb2, backend_context, get_experiment
from tensorboard.plugins.hparams import list_session_groups, metadata

from transformer_jax import metrics_writer
from transformer_jax.experiments import hparams

RUNS = {  # workdir -> record fields
    "base/seed0": {"group": "base", "overrides": {}, "seed": 0, "dev_ppl": 5.1, "dev_bleu": 30.5},
    "base/seed1": {"group": "base", "overrides": {}, "seed": 1, "dev_ppl": 5.3, "dev_bleu": 29.9},
    "h=4,p_drop=0.3/seed0": {"group": "h=4,p_drop=0.3", "seed": 0, "dev_ppl": 6.0,
                             "dev_bleu": 27.25,
                             "overrides": {"model.h": 4, "model.p_drop": 0.3,
                                           "model.positions": "learned"}},
}


def _sweep(root: pathlib.Path) -> None:
  for name, r in RUNS.items():
    workdir = root / name
    workdir.mkdir(parents=True)
    writer = metrics_writer.MetricsWriter(workdir)  # training's own scalars, into WORKDIR/tb
    writer.write(10, {"loss": 3.0, "lr": 1e-3}, kind="train")
    writer.write(20, {"ppl": r["dev_ppl"]}, kind="val")
    writer.close()
    record = {"run": {"name": name, "sweep": "configs/sweep.py", "metadata": {},
                      **{k: r[k] for k in ("group", "overrides", "seed")}},
              "steps": 20, "dev_ppl": r["dev_ppl"], "dev_bleu": r["dev_bleu"]}
    hparams.write_record(workdir, record)
    if name == "base/seed1":  # a rerun of the same workdir replaces its hparams file
      hparams.write_record(workdir, record)


def _tensorboard(root: pathlib.Path):
  multiplexer = plugin_event_multiplexer.EventMultiplexer()
  multiplexer.AddRunsFromDirectory(str(root))
  multiplexer.Reload()
  provider = data_provider.MultiplexerDataProvider(multiplexer, str(root))
  ctx = backend_context.Context(base_plugin.TBContext(logdir=str(root), data_provider=provider))
  return multiplexer, ctx


def test_each_run_carries_its_hparams_and_metrics_in_its_own_run(tmp_path):
  _sweep(tmp_path)
  multiplexer, ctx = _tensorboard(tmp_path)
  expected_runs = {f"{name}/tb" for name in RUNS}
  assert set(multiplexer.Runs()) == expected_runs  # no stray sub-run directories
  event_dirs = {str(p.parent.relative_to(tmp_path)) for p in tmp_path.rglob("*tfevents*")}
  assert event_dirs == expected_runs
  assert len(list((tmp_path / "base/seed1/tb").glob("*.hparams"))) == 1

  # The session start info of each run, parsed with the plugin's own metadata reader.
  content = multiplexer.PluginRunToTagToContent(metadata.PLUGIN_NAME)
  assert set(content) == expected_runs
  for name, r in RUNS.items():
    tags = content[f"{name}/tb"]
    assert metadata.EXPERIMENT_TAG not in tags  # so TensorBoard builds columns from all runs
    start = metadata.parse_session_start_info_plugin_data(tags[metadata.SESSION_START_INFO_TAG])
    got = {k: v.WhichOneof("kind") and getattr(v, v.WhichOneof("kind"))
           for k, v in start.hparams.items()}
    assert got == {**r["overrides"], "seed": r["seed"], "group": r["group"]}

  # What the HParams dashboard asks for: the experiment's columns and one row per run.
  request_ctx = context.RequestContext()
  experiment = get_experiment.Handler(request_ctx, ctx, "", api_pb2.GetExperimentRequest()).run()
  assert {h.name for h in experiment.hparam_infos} == {
      "seed", "group", "model.h", "model.p_drop", "model.positions"}
  assert {"hparams/dev_ppl", "hparams/dev_bleu"} <= {m.name.tag for m in experiment.metric_infos}
  request = api_pb2.ListSessionGroupsRequest(
      allowed_statuses=[api_pb2.STATUS_SUCCESS], start_index=0, slice_size=100,
      col_params=[api_pb2.ColParams(metric=api_pb2.MetricName(tag=t))
                  for t in hparams.METRICS])
  response = list_session_groups.Handler(request_ctx, ctx, "", request).run()
  assert response.total_size == len(RUNS)
  for group in response.session_groups:
    r = RUNS[group.name.removesuffix("/tb")]
    (session,) = group.sessions
    assert session.status == api_pb2.STATUS_SUCCESS
    metrics = {m.name.tag: (m.value, m.training_step) for m in session.metric_values}
    assert metrics["hparams/dev_ppl"] == (pytest.approx(r["dev_ppl"]), 20)
    assert metrics["hparams/dev_bleu"] == (pytest.approx(r["dev_bleu"]), 20)
    assert group.hparams["seed"].number_value == r["seed"]


def test_values_tensorboard_cannot_show_become_json_strings():
  run = {"group": "g", "seed": 2, "overrides": {"data.bucket_boundaries": [12, 16],
                                                "train.resume": None, "model.bias": True}}
  assert hparams.hparams_of(run) == {"data.bucket_boundaries": "[12, 16]", "train.resume": "null",
                                     "model.bias": True, "seed": 2, "group": "g"}
