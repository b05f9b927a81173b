"""Two processes joined by jax.distributed on 127.0.0.1, 4 fake CPU devices each, train like one
process on one device; the checkpoints their 8-device mesh wrote restore on one device and
decode the same translations.

Every training run is a subprocess with its own XLA_FLAGS, so the test does not depend on the
device count of the pytest process. Both runs use the same tiny real-data config (conftest.tiny_config) with dropout on, two
micro-batches per step and rows a multiple of 8, so they see the same batches. The two-process
run shards over a 2x2x2 (data, fsdp, tensor) mesh, so rows cross processes and every
parameter is split over both of them.
"""

from __future__ import annotations

import json
import os
import pathlib
import socket
import subprocess
import sys

import jax
import ml_collections
import numpy as np
import pytest

from conftest import ROOT, tiny_config
from transformer_jax import checkpoint as ckpt_lib
from transformer_jax import config as config_lib
from transformer_jax import data as data_lib
from transformer_jax import evaluate
from transformer_jax import main as main_lib
from transformer_jax.model import Transformer
from transformer_jax.tokenizer import Tokenizer

HELPER = pathlib.Path(__file__).resolve().parent / "multidevice_helper.py"
FAKE_4 = "--xla_force_host_platform_device_count=4 --xla_backend_optimization_level=0"
ONE_DEVICE = "--xla_force_host_platform_device_count=1"
STEPS = 4
OVER = {"train.steps": STEPS, "train.log_every": 1, "train.checkpoint_every": 2,
        "train.eval_every": 1000, "train.average_last": 2, "train.grad_accum_steps": 2,
        "data.batch_multiple": 8, "data.max_len": 64, "model.n_layers": 1,
        "decode.batch_size": 64}
MESH = {"mesh.data": 2, "mesh.fsdp": 2, "mesh.tensor": 2, "sharding.rules": "fsdp_tensor"}


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _records(workdir: pathlib.Path, kind: str) -> list[dict]:
  lines = (workdir / "metrics.jsonl").read_text().splitlines()
  return [r for r in map(json.loads, lines) if r["kind"] == kind]


def _train_process(config: ml_collections.ConfigDict, path: pathlib.Path, workdir: pathlib.Path,
                   xla_flags: str) -> subprocess.Popen:
  """`train` of `config` (written to `path`) in a process of its own with these XLA_FLAGS, so
  its device count is the test's, not whatever the caller of pytest exported."""
  path.write_text(config.to_json())
  env = dict(os.environ, XLA_FLAGS=xla_flags, PYTHONPATH=str(ROOT), JAX_PLATFORMS="cpu")
  return subprocess.Popen([sys.executable, str(HELPER), "train", str(path), str(workdir)],
                          env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _start_two_processes(tiny_data, tmp: pathlib.Path):
  """(workdir, the 2 running processes of a jax.distributed training job)."""
  workdir, port = tmp / "run", _free_port()
  procs = []
  for i in range(2):
    config = tiny_config(tiny_data, **OVER, **MESH, **{
        "train.final_eval": True, "distributed.enabled": True, "distributed.num_processes": 2,
        "distributed.coordinator_address": f"127.0.0.1:{port}", "distributed.process_id": i})
    procs.append(_train_process(config, tmp / f"config_{i}.json", workdir, FAKE_4))
  return workdir, procs


def _outputs(procs) -> list[str]:
  outs = []
  try:
    outs = [p.communicate(timeout=500)[0] for p in procs]
  finally:
    for p in procs:
      p.kill()
  for p, out in zip(procs, outs):
    assert p.returncode == 0, out[-4000:]
  return outs


def _start_one_process(tiny_data, tmp: pathlib.Path):
  """(workdir, the running process of the reference: one process on one device)."""
  workdir = tmp / "one_process"
  config = tiny_config(tiny_data, **OVER, **{"train.final_eval": False})
  return workdir, _train_process(config, tmp / "config_one.json", workdir, ONE_DEVICE)


def test_two_processes_train_like_one_and_their_checkpoints_restore_on_one_device(tiny_data,
                                                                                   tmp_path):
  # One test, not two sharing a fixture: under pytest-xdist each worker would rerun the jobs.
  workdir, procs = _start_two_processes(tiny_data, tmp_path)
  one_process, reference = _start_one_process(tiny_data, tmp_path)  # meanwhile
  two_processes = workdir, _outputs(procs)
  _outputs([reference])
  _check_same_losses(two_processes, one_process)
  _check_restore_and_decode_on_one_device(two_processes, one_process)


def _check_same_losses(two_processes, one_process):
  workdir, (out_0, out_1) = two_processes
  assert "mesh {'data': 2, 'fsdp': 2, 'tensor': 2}" in out_0 and "2 process(es)" in out_0
  assert "model:" not in out_1  # only process 0 logs ...
  two, one = _records(workdir, "train"), _records(one_process, "train")
  assert [r["step"] for r in two] == list(range(1, STEPS + 1))  # ... and writes metrics
  for a, b in zip(two, one):
    assert a["loss"] == pytest.approx(b["loss"], rel=1e-5), (a, b)
    assert a["grad_norm"] == pytest.approx(b["grad_norm"], rel=1e-4), (a, b)
  assert two[0]["loss"] - two[-1]["loss"] > 0.1  # it trained


def _check_restore_and_decode_on_one_device(two_processes, one_process):
  """The checkpoints of the 8-device (2 x 4) mesh restore on this process's one device."""
  workdir, _ = two_processes
  config = ml_collections.ConfigDict(json.loads((workdir / "config.json").read_text()))
  model = Transformer(config_lib.model_config(config))
  abstract = main_lib._abstract_state(config, model)  # what `translate --step` restores into
  ckpts = ckpt_lib.Checkpoints(workdir / "checkpoints")
  try:
    assert ckpts.steps() == [2, STEPS]
    state, meta = ckpts.restore(STEPS, abstract)
    average = ckpt_lib.average_params(ckpts, [2, STEPS], abstract)
  finally:
    ckpts.close()
  assert meta["step"] == STEPS and int(state.step) == STEPS
  device = jax.local_devices()[0]
  for leaf in jax.tree_util.tree_leaves(state):
    assert leaf.sharding.device_set == {device}
  # The same parameters the single-process run reached (up to float32 reduction order).
  reference = ckpt_lib.Checkpoints(one_process / "checkpoints")
  try:
    ref_state, _ = reference.restore(STEPS, abstract)
  finally:
    reference.close()
  for a, b in zip(jax.tree_util.tree_leaves(state), jax.tree_util.tree_leaves(ref_state)):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=5e-5)

  # The 2-process job decoded the test set with the average of its last 2 checkpoints; so does
  # this process, on one device, from the restored checkpoints.
  final = ckpt_lib.load_params(workdir / "final_params", abstract.params)
  for a, b in zip(jax.tree_util.tree_leaves(final), jax.tree_util.tree_leaves(average)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  dc = config.decode
  test = data_lib.read_parallel(*config_lib.split_paths(config, "test"))
  hyps = evaluate.translate_lines(model, average, Tokenizer.load(workdir / "spm.model"), test.src,
                                  beam_size=dc.beam_size, alpha=dc.alpha,
                                  max_extra_len=dc.max_extra_len, batch_size=dc.batch_size,
                                  max_src_len=config_lib.source_limit(config))
  written = (workdir / "test.hyp").read_text(encoding="utf-8").splitlines()
  assert len(written) == len(test.src) and sum(map(bool, written)) > len(written) // 2
  assert list(hyps) == written
