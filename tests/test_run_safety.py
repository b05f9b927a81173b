"""A run that is stopped or diverges loses nothing: SIGKILL at a random step and a restart give
the losses of an uninterrupted run (which a second `train` on its workdir cannot disturb), SIGTERM checkpoints and exits, a NaN stops the run without
saving the bad state, and `average` writes the exact mean of checkpoints."""

from __future__ import annotations

import json
import os
import pathlib
import random
import signal
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from conftest import ROOT, tiny_config
from transformer_jax import checkpoint as ckpt_lib
from transformer_jax import train as train_lib
from transformer_jax import workdir as workdir_lib

TESTS = pathlib.Path(__file__).resolve().parent


def _config_file(tmp_path: pathlib.Path, data: dict, overrides: dict) -> pathlib.Path:
  """A config file the CLI can load: the tiny test config with `overrides`."""
  path = tmp_path / "tiny_config.py"
  path.write_text(
      "import sys\n"
      f"sys.path.insert(0, {str(TESTS)!r})\n"
      "from conftest import tiny_config\n\n"
      "def get_config():\n"
      f"  return tiny_config({data!r}, **{overrides!r})\n")
  return path


def _cli(*args: str, **kwargs) -> subprocess.Popen:
  return subprocess.Popen([sys.executable, "-m", "transformer_jax.main", *args], cwd=ROOT,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kwargs)


def _records(workdir: pathlib.Path) -> list[dict]:
  path = workdir / "metrics.jsonl"
  if not path.exists():
    return []
  return [json.loads(line) for line in path.read_text().splitlines()]


def _train_steps(workdir: pathlib.Path) -> list[int]:
  return [r["step"] for r in _records(workdir) if r["kind"] == "train"]


def _per_process(workdir: pathlib.Path) -> list[dict[int, dict]]:
  """The 'train' records of metrics.jsonl by the process that wrote them ({step: record} each);
  every start of `train` writes one 'info' record first."""
  runs = []
  for r in _records(workdir):
    if r["kind"] == "info":
      runs.append({})
    elif r["kind"] == "train":
      runs[-1][r["step"]] = r
  return runs


KILL_SEED = "TRANSFORMER_JAX_KILL_SEED"  # set to replay the kill step of a failed run


def test_sigkill_at_a_random_step_then_restart_gives_the_uninterrupted_losses(tiny_data,
                                                                               tmp_path):
  seed = int(os.environ.get(KILL_SEED, random.SystemRandom().randrange(2 ** 31)))
  steps, every = 30, 7
  kill_at = random.Random(seed).randint(1, steps - 8)
  note = f"kill_at={kill_at}; replay with {KILL_SEED}={seed}"
  print(note)
  # One batch shape (pairs <= 64 tokens), ~12 steps per epoch: the runs cross two epochs.
  cfg = _config_file(tmp_path, tiny_data, {
      "train.steps": steps, "train.log_every": 1, "train.checkpoint_every": every,
      "train.eval_every": 100000, "data.tokens_per_batch": 2048, "data.max_len": 64})
  killed, whole = tmp_path / "killed", tmp_path / "whole"

  proc = _cli("train", f"--config={cfg}", f"--workdir={killed}")
  deadline = time.time() + 240
  while max(_train_steps(killed), default=0) < kill_at:
    assert proc.poll() is None, (note, proc.stdout.read())
    assert time.time() < deadline, (note, "training did not reach the kill step in time")
    time.sleep(0.005)
  proc.kill()  # SIGKILL: no handler runs, whatever was being written stays half-written
  out, _ = proc.communicate(timeout=60)
  assert proc.returncode == -signal.SIGKILL, (note, out)
  died_at = max(_train_steps(killed))
  assert kill_at <= died_at < steps, (note, died_at)

  # The killed run's lock record stays behind, but the kernel dropped its lock with it.
  assert workdir_lib.read_holder(killed).pid == proc.pid, note
  proc = _cli("train", f"--config={cfg}", f"--workdir={killed}")  # the same command again
  out, _ = proc.communicate(timeout=240)
  assert proc.returncode == 0, (note, out)

  # The undisturbed run, paused (still alive, still holding its workdir) while a second
  # `train` on the same workdir is refused; then it finishes as if nothing had happened.
  proc = _cli("train", f"--config={cfg}", f"--workdir={whole}")
  while not _train_steps(whole):
    assert proc.poll() is None, (note, proc.stdout.read())
    assert time.time() < deadline + 240, (note, "training did not start logging in time")
    time.sleep(0.05)
  proc.send_signal(signal.SIGSTOP)
  try:
    second = subprocess.run([sys.executable, "-m", "transformer_jax.main", "train",
                             f"--config={cfg}", f"--workdir={whole}"], cwd=ROOT, text=True,
                            capture_output=True, timeout=240)
  finally:
    proc.send_signal(signal.SIGCONT)
  out_whole, _ = proc.communicate(timeout=240)
  assert proc.returncode == 0, (note, out_whole)
  assert second.returncode == workdir_lib.EX_TEMPFAIL, second
  assert second.stderr.startswith(f"error: workdir {whole} is in use by pid {proc.pid} on "
                                  f"host {socket.gethostname()} (since "), second.stderr
  assert second.stderr.count("\n") == 1 and "Traceback" not in second.stderr, second.stderr
  assert second.stdout == "", second.stdout

  first, resumed = _per_process(killed)
  start = min(resumed) - 1  # the checkpoint the restart resumed from
  print(f"killed after step {died_at}, resumed from step {start}")
  assert start % every == 0 and start <= died_at, (note, start, died_at)
  assert (f"resumed from {killed / 'checkpoints' / str(start)} at step {start}" in out
          if start else "resumed from" not in out), (note, out)
  assert sorted(first) == list(range(1, died_at + 1)), note
  assert sorted(resumed) == list(range(start + 1, steps + 1)), note
  # Steps start+1..died_at were logged twice; the second lines were computed by the restart.
  assert min(r["time"] for r in resumed.values()) > max(r["time"] for r in first.values())
  straight, = _per_process(whole)
  last_written = {**first, **resumed}
  assert sorted(last_written) == sorted(straight) == list(range(1, steps + 1))
  for step in range(1, steps + 1):
    got, want = last_written[step], straight[step]
    assert (got["loss"], got["grad_norm"]) == (want["loss"], want["grad_norm"]), (note, step)
  for step in set(first) & set(resumed):
    assert first[step]["loss"] == resumed[step]["loss"], (note, step)
  config = tiny_config(tiny_data, **{"data.max_len": 64})
  abstract = jax.eval_shape(lambda: _state(config))
  final = [ckpt_lib.Checkpoints(d / "checkpoints").restore(steps, abstract)[0] for d in
           (killed, whole)]
  for a, b in zip(jax.tree_util.tree_leaves(final[0]), jax.tree_util.tree_leaves(final[1])):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=note)


def test_sigterm_checkpoints_at_current_step_and_resumes(tiny_data, tmp_path):
  # Checkpoints are due only every 10000 steps, so any checkpoint found was written by SIGTERM.
  cfg = _config_file(tmp_path, tiny_data, {"train.steps": 100000, "train.log_every": 5,
                                           "train.checkpoint_every": 10000,
                                           "train.eval_every": 100000})
  workdir = tmp_path / "run"
  proc = _cli("train", f"--config={cfg}", f"--workdir={workdir}")
  deadline = time.time() + 240
  while not _train_steps(workdir):
    assert proc.poll() is None, proc.stdout.read()
    assert time.time() < deadline, "training did not start logging in time"
    time.sleep(0.5)
  proc.send_signal(signal.SIGTERM)
  out, _ = proc.communicate(timeout=120)
  assert proc.returncode == 128 + signal.SIGTERM, out
  ckpts = ckpt_lib.Checkpoints(workdir / "checkpoints")
  steps = ckpts.steps()
  assert len(steps) == 1 and steps[0] >= 5, (steps, out)
  assert f"SIGTERM: stopped at step {steps[0]}" in out and "resume" in out, out
  # The checkpoint holds the state after exactly the step the run stopped at.
  stopped = [r for r in _records(workdir) if r["kind"] == "stopped"]
  assert [(r["step"], r["signal"]) for r in stopped] == [(steps[0], "SIGTERM")]
  config = tiny_config(tiny_data)
  state, meta = ckpts.restore(steps[0], jax.eval_shape(lambda: _state(config)))
  ckpts.close()
  assert int(state.step) == meta["step"] == steps[0]

  # The same command resumes from that checkpoint.
  proc = _cli("train", f"--config={cfg}", f"--workdir={workdir}",
              f"--config.train.steps={steps[0] + 3}")
  out, _ = proc.communicate(timeout=240)
  assert proc.returncode == 0, out
  assert f"at step {steps[0]}" in out, out
  assert _train_steps(workdir)[-1] == steps[0] + 3


def test_divergence_stops_without_saving_the_bad_state(tiny_data, tmp_path):
  workdir = tmp_path / "run"
  good = tiny_config(tiny_data, **{"train.steps": 20, "train.checkpoint_every": 10,
                                   "train.log_every": 5})
  train_lib.train(good, workdir, log=lambda *_: None)
  # Resume with a learning rate 1e30 times the paper's: parameters overflow within 2 steps.
  # Logging only every 100 steps, so it is the check before the step-30 checkpoint that fires.
  bad = tiny_config(tiny_data, **{"train.steps": 40, "train.checkpoint_every": 10,
                                  "train.log_every": 100, "train.lr_scale": 1e30})
  with pytest.raises(train_lib.DivergenceError, match=r"diverged at step 2[1-5]\b"):
    train_lib.train(bad, workdir, log=lambda *_: None)
  ckpts = ckpt_lib.Checkpoints(workdir / "checkpoints")
  assert ckpts.steps()[-1] == 20  # nothing written after the last good checkpoint
  abstract = jax.eval_shape(lambda: _state(good))
  state, _ = ckpts.restore(20, abstract)
  assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree_util.tree_leaves(state.params))


def _state(config):
  from transformer_jax import config as config_lib
  from transformer_jax import optim
  from transformer_jax.model import Transformer
  model = Transformer(config_lib.model_config(config))
  tx, _ = optim.make_optimizer(config)
  dummy = {"src": jax.numpy.ones((1, 8), "int32"), "tgt_in": jax.numpy.ones((1, 8), "int32")}
  return train_lib.create_state(model, tx, jax.random.PRNGKey(0), dummy)


def test_average_command_writes_exact_mean_and_translate_uses_it(trained_run, tmp_path):
  workdir, config, _ = trained_run
  out_dir = tmp_path / "avg2"
  proc = _cli("average", f"--workdir={workdir}", "--last=2", f"--output={out_dir}")
  out, _ = proc.communicate(timeout=240)
  assert proc.returncode == 0, out
  ckpts = ckpt_lib.Checkpoints(workdir / "checkpoints")
  steps = ckpts.steps()[-2:]
  assert f"averaged checkpoints {steps}" in out
  abstract = jax.eval_shape(lambda: _state(config))
  restored = [ckpts.restore(s, abstract)[0].params for s in steps]
  expected = jax.tree_util.tree_map(lambda a, b: (np.asarray(a, np.float64) + b) / 2, *restored)
  averaged = ckpt_lib.load_params(out_dir, abstract.params)
  for got, want in zip(jax.tree_util.tree_leaves(averaged), jax.tree_util.tree_leaves(expected)):
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-6, atol=1e-7)

  proc = _cli("translate", f"--workdir={workdir}", f"--params={out_dir}", stdin=subprocess.PIPE)
  out, _ = proc.communicate("A man is riding a bike.\n\nTwo dogs play.\n", timeout=240)
  assert proc.returncode == 0, out
  assert f"with {out_dir}" in out

  proc = _cli("average", f"--workdir={workdir}", "--last=50")
  out, _ = proc.communicate(timeout=240)
  assert proc.returncode != 0 and "--last=50" in out and "keep_checkpoints" in out


def test_average_up_to_step_is_the_shorter_runs_average(trained_run, tmp_path, cli):
  workdir, config, _ = trained_run
  ckpts = ckpt_lib.Checkpoints(workdir / "checkpoints")
  first, middle, _ = ckpts.steps()  # keep_checkpoints 3
  out, _ = cli("average", f"--workdir={workdir}", "--last=2", f"--step={middle}")
  assert f"averaged checkpoints {[first, middle]}" in out, out
  abstract = jax.eval_shape(lambda: _state(config))
  restored = [ckpts.restore(s, abstract)[0].params for s in (first, middle)]
  expected = jax.tree_util.tree_map(lambda a, b: (np.asarray(a, np.float64) + b) / 2, *restored)
  averaged = ckpt_lib.load_params(workdir / f"average_last2_step{middle}", abstract.params)
  for got, want in zip(jax.tree_util.tree_leaves(averaged), jax.tree_util.tree_leaves(expected)):
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-6, atol=1e-7)
  with pytest.raises(SystemExit, match=f"--last=3 .* up to --step={middle}"):
    cli("average", f"--workdir={workdir}", "--last=3", f"--step={middle}")
  with pytest.raises(SystemExit, match=f"--step={middle + 1} is not a checkpoint"):
    cli("average", f"--workdir={workdir}", "--last=2", f"--step={middle + 1}")


def test_corrupted_latest_checkpoint_falls_back_to_previous(tiny_data, tmp_path):
  workdir = tmp_path / "run"
  overrides = {"train.checkpoint_every": 10, "train.log_every": 5}
  train_lib.train(tiny_config(tiny_data, **{"train.steps": 20, **overrides}), workdir,
                  log=lambda *_: None)
  first = {r["step"]: r["loss"] for r in _records(workdir) if r["kind"] == "train"}
  # Truncate every file of the newest checkpoint's state, as a crash mid-write might.
  damaged = [p for p in (workdir / "checkpoints" / "20").rglob("*") if p.is_file()]
  assert damaged
  for path in damaged:
    path.write_bytes(b"")
  messages = []
  train_lib.train(tiny_config(tiny_data, **{"train.steps": 25, **overrides}), workdir,
                  log=messages.append)
  text = "\n".join(messages)
  assert "checkpoints/20 cannot be read" in text and "at step 10" in text, text
  assert (workdir / "corrupt_checkpoints" / "20").is_dir()  # kept aside, not deleted
  records = [r for r in _records(workdir) if r["kind"] == "train"]
  replayed = {r["step"]: r["loss"] for r in records[len(first):]}
  assert sorted(replayed) == [15, 20, 25]
  assert replayed[15] == first[15] and replayed[20] == first[20]  # exact resume from step 10
  assert ckpt_lib.Checkpoints(workdir / "checkpoints").steps()[-1] == 25


def test_lock_record_tells_live_holders_from_stale_ones_without_a_shared_flock(tmp_path,
                                                                                monkeypatch):
  """Where flock is missing or reaches only this host (FUSE, e.g. gcsfuse), WORKDIR/.lock's
  record decides: a live pid here (not a reused one), a fresh heartbeat elsewhere."""
  lock, host = tmp_path / workdir_lib.LOCK_FILE, socket.gethostname()

  def record(host: str, pid: int, age: float = 0.0, **extra) -> None:
    lock.write_text(json.dumps({"host": host, "pid": pid, "since": "2026-01-01T00:00:00+00:00",
                                **extra}))
    os.utime(lock, (time.time() - age,) * 2)

  def takes() -> bool:
    try:
      with workdir_lib.hold(tmp_path):
        assert workdir_lib.read_holder(tmp_path).pid == os.getpid()
    except workdir_lib.WorkdirBusy as e:
      assert str(e).startswith(f"workdir {tmp_path} is in use by pid "), e
      return False
    assert lock.read_text() == ""  # released: nobody recorded
    return True

  sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
  dead = subprocess.Popen([sys.executable, "-c", ""])
  dead.wait()
  try:
    monkeypatch.setattr(workdir_lib, "fcntl", None)  # no flock at all
    record(host, sleeper.pid)
    assert not takes()
    record(host, sleeper.pid, proc_start=workdir_lib._proc_start(sleeper.pid) + 1)
    assert takes()  # the pid was reused by another process: stale
    record(host, dead.pid)
    assert takes()
    record("other-vm", 1, age=10)
    with pytest.raises(workdir_lib.WorkdirBusy, match=r"pid 1 on host other-vm .*last seen"):
      workdir_lib.hold(tmp_path).__enter__()
    record("other-vm", 1, age=workdir_lib.STALE_AFTER_SECONDS + 10)
    assert takes()
    monkeypatch.undo()
    monkeypatch.setattr(workdir_lib, "_fuse", lambda path: True)  # flock on this host only
    record("other-vm", 1, age=10)
    assert not takes()
    record(host, sleeper.pid)
    assert takes()  # this host's flock is free, so its recorded holder is gone
    monkeypatch.setattr(workdir_lib, "_fuse", lambda path: False)  # flock on every host
    record("other-vm", 1, age=10)
    assert takes()
  finally:
    sleeper.kill()
    sleeper.wait()
