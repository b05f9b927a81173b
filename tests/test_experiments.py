"""The experiment layer: sweeps declared as data (spec.py) and run by the launchers (launch.py).

Spec: product, zip and chain give the runs and stable names a reader can predict; each kind of
bad declaration ends in one error naming the file and line, the key or the flag. Launchers: one
tiny sweep on one local Ray instance (shared by the module) holds two runs that train the same
model (they differ only in the beam width used to score them) and one run with a missing data
file. The test kills the second run's process in the middle of training; Ray retries it, it
resumes from its checkpoint and ends with the per-step losses of the first run. The failing run
is reported and the others finish; a second sweep on the same root reruns nothing finished.
"""

from __future__ import annotations

import json
import os
import pathlib
import re
import signal
import threading
import time

import pytest

from conftest import ROOT, tiny_config
from test_run_safety import _per_process, _train_steps
from transformer_jax import config as config_lib
from transformer_jax.experiments import launch, record, spec
from transformer_jax.experiments.spec import chain, point, product, sweep, zip as zip_

TESTS = pathlib.Path(__file__).resolve().parent


def test_product_zip_and_chain_give_the_runs_in_order_with_readable_names():
  grid = product(sweep("model.h", [1, 4]), sweep("model.p_drop", [0.1, 0.3]))
  assert [p.label for p in grid] == ["h=1,p_drop=0.1", "h=1,p_drop=0.3", "h=4,p_drop=0.1",
                                     "h=4,p_drop=0.3"]
  assert dict(grid[3].overrides) == {"model.h": 4, "model.p_drop": 0.3}
  paired = zip_(sweep("model.d_model", [128, 256]), sweep("model.d_k", [16, 32]))
  assert [dict(p.overrides) for p in paired] == [{"model.d_model": 128, "model.d_k": 16},
                                                 {"model.d_model": 256, "model.d_k": 32}]
  table = chain(point(), point("deep", {"model.n_layers": 8}, metadata={"paper": 4.88}), paired)
  assert [p.label for p in table] == ["base", "deep", "d_model=128,d_k=16", "d_model=256,d_k=32"]
  assert dict(table[1].metadata) == {"paper": 4.88}
  assert spec.name_of({"model.max_len": 64, "data.max_len": 32, "train.eps_ls": 0.0}) == (
      "model.max_len=64,data.max_len=32,eps_ls=0.0")


def _sweep_file(tmp_path: pathlib.Path, body: str, data: dict | None = None,
                overrides: dict | None = None) -> pathlib.Path:
  """A config file with the tiny test config as get_config and `body` as get_sweep's."""
  path = tmp_path / "sweep_config.py"
  path.write_text(
      "import sys\n"
      f"sys.path.insert(0, {str(TESTS)!r})\n"
      "from conftest import tiny_config\n"
      "from transformer_jax.experiments.spec import chain, point, product, sweep, zip\n\n"
      "def get_config(arg=None):\n"
      f"  return tiny_config({data or {}!r}, **{overrides or {}!r})\n\n"
      "def get_sweep(arg=None):\n"
      f"  return {body}\n")
  return path


def test_names_and_commands_are_stable(tmp_path):
  path = _sweep_file(tmp_path, 'product(sweep("model.h", [2, 4]), sweep("model.p_drop", [0.1]))')
  first = spec.plan(str(path), root=tmp_path / "r", seeds=2, extra_args=["--config.train.steps=5"])
  again = spec.plan(str(path), root=tmp_path / "r", seeds=2, extra_args=["--config.train.steps=5"])
  assert [r.name for r in first] == ["h=2,p_drop=0.1/seed0", "h=2,p_drop=0.1/seed1",
                                     "h=4,p_drop=0.1/seed0", "h=4,p_drop=0.1/seed1"]
  assert [r.command() for r in first] == [r.command() for r in again]
  r = first[3]
  assert r.workdir == tmp_path / "r" / "h=4,p_drop=0.1" / "seed1"
  assert r.argv == ("run", f"--config={path}", f"--workdir={r.workdir}", "--config.model.h=4",
                    "--config.model.p_drop=0.1", "--config.train.seed=1", "--config.data.seed=1",
                    "--config.train.steps=5")
  assert r.spec() == {"name": "h=4,p_drop=0.1/seed1", "group": "h=4,p_drop=0.1",
                      "overrides": {"model.h": 4, "model.p_drop": 0.1}, "seed": 1,
                      "sweep": str(path), "metadata": {}}
  only = spec.plan(str(path), root=tmp_path / "r", only="h=4,p_drop=0.1")
  assert [r.name for r in only] == ["h=4,p_drop=0.1/seed0"]


@pytest.mark.parametrize("body, message", [
    ('sweep("model.h", [])', r":10: sweep\('model.h', \[\]\): empty value list"),
    ('sweep("h", [1])', r":10: sweep key 'h' must be 'section.key'"),
    ('[{"model.h": 1}]', r"must return a non-empty list of points"),
    ('product(sweep("model.h", [1]), sweep("model.h", [2]))', r"key 'model.h' appears in two"),
    ('zip(sweep("model.h", [1, 2]), sweep("model.d_k", [8]))', r"different lengths \[2, 1\]"),
    ('chain(sweep("model.h", [4]), point(None, {"model.h": 4}))', r"two runs named 'h=4'"),
    ('sweep("model.heads", [4])', r"run 'heads=4': unknown config key 'model.heads'; "
                                  r"config.model has \[.*'h',"),
    ('sweep("model.p_drop", [1.5])', r"run 'p_drop=1.5': config.model.p_drop must be in"),
    ('sweep("data.train_src", ["a/b"])', r"'train_src=a/b' is not one directory name"),
])
def test_a_bad_sweep_is_one_clear_error(tmp_path, body, message):
  path = _sweep_file(tmp_path, body)
  with pytest.raises(spec.SpecError, match=message) as e:
    spec.plan(str(path), root=tmp_path)
  assert str(e.value).startswith(str(path)) and "\n" not in str(e.value)


def test_bad_sweep_flags_are_named(tmp_path, cli):
  path = _sweep_file(tmp_path, 'sweep("model.h", [2])')
  with pytest.raises(spec.SpecError, match=r"unknown config key 'train.stepz'"):
    spec.plan(str(path), root=tmp_path, extra_args=["--config.train.stepz=3"])
  with pytest.raises(spec.SpecError, match=r"--only: 'h=3' matches no run"):
    spec.plan(str(path), root=tmp_path, only="h=3")
  with pytest.raises(spec.SpecError, match="--seeds must be >= 1"):
    spec.plan(str(path), root=tmp_path, seeds=0)
  no_sweep = tmp_path / "plain.py"
  no_sweep.write_text("def get_config():\n  return None\n")
  with pytest.raises(SystemExit, match=r"^error: .*plain.py defines no get_sweep"):
    cli("sweep", f"--config={no_sweep}", f"--root={tmp_path}", "--dry-run")
  with pytest.raises(SystemExit, match=r"^error: --run_resources='GPU' must be a JSON object"):
    cli("sweep", f"--config={path}", f"--root={tmp_path}", "--run_resources=GPU")
  with pytest.raises(spec.SpecError, match="--run_resources: TPU must be a number"):
    launch.task_options({"TPU": "4"}, 3)
  assert launch.task_options({"GPU": 1, "TPU": 4}, 2) == {
      "num_cpus": 0, "num_gpus": 1, "resources": {"TPU": 4}, "max_retries": 2,
      "retry_exceptions": [launch.RunInterrupted]}


def test_cpu_slots_split_the_cpus_into_disjoint_consecutive_shares():
  assert launch.cpu_slots([0, 1, 2, 3, 4], 2) == [(0, 1, 2), (3, 4)]
  assert launch.cpu_slots({3, 1}, 2) == [(1,), (3,)]
  assert launch.cpu_slots(range(8), 3) == [(0, 1, 2), (3, 4, 5), (6, 7)]
  assert launch.cpu_slots([0], 2) is None  # fewer CPUs than slots: no pinning
  assert launch.cpu_slots(range(8), 1) is None


# Stands in for a run's process: writes the CPUs it may use as its record, after a pause long
# enough for the sweep to start the next run beside it.
_RECORD_CPUS = ("-c", "import json, os, sys, time; time.sleep(0.3); "
                "open(os.path.join(sys.argv[1], 'result.json'), 'w')"
                ".write(json.dumps(sorted(os.sched_getaffinity(0))))")


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity") or len(os.sched_getaffinity(0)) < 2,
                    reason="CPU affinity needs Linux and 2 CPUs")
def test_a_local_sweep_pins_each_run_slot_to_its_own_cpus(tmp_path, monkeypatch):
  monkeypatch.setattr(launch, "_MAIN", _RECORD_CPUS)
  mine = sorted(os.sched_getaffinity(0))
  slots = [list(s) for s in launch.cpu_slots(mine, 2)]

  def sweep(root, n=3, **kwargs):
    runs = [spec.Run(group="g", overrides={}, seed=k, metadata={}, sweep="test",
                     workdir=root / f"g/seed{k}", argv=(str(root / f"g/seed{k}"),))
            for k in range(n)]
    lines = []
    out = launch.local(runs, log=lines.append, poll_seconds=0.05, **kwargs)
    assert sorted(r.name for r in out["done"]) == [r.name for r in runs]
    return [json.loads((r.workdir / "result.json").read_text()) for r in runs], lines

  cpus, lines = sweep(tmp_path / "pinned", parallel=2)
  assert cpus[:2] == slots and set(slots[0]).isdisjoint(slots[1])
  assert cpus[2] in slots  # the third run takes the slot the first to finish gave back
  assert f"start g/seed1 on CPUs {','.join(map(str, slots[1]))}: transformer-jax " in lines[1]
  assert sweep(tmp_path / "shared", parallel=2, pin_cpus=False)[0] == [mine] * 3
  assert sweep(tmp_path / "one", n=1, parallel=1)[0] == [mine]


def test_a_run_records_the_launchers_spec_or_its_own_overrides(tiny_data, tmp_path):
  config = tiny_config(tiny_data, **{"model.h": 2, "train.seed": 3, "data.seed": 3})
  alone = record.run_spec(tmp_path, config, ["model.h", "train.seed", "data.bucket_boundaries"])
  assert alone == {"name": "h=2,bucket_boundaries=64-128/seed3",
                   "group": "h=2,bucket_boundaries=64-128",
                   "overrides": {"model.h": 2, "data.bucket_boundaries": [64, 128]}, "seed": 3,
                   "sweep": None, "metadata": {}}
  assert record.run_spec(tmp_path, config, [])["group"] == "base"
  run = spec.plan(str(_sweep_file(tmp_path, 'sweep("model.h", [2])')), root=tmp_path)[0]
  launch.write_spec(tmp_path, run.spec())
  assert record.run_spec(tmp_path, config, ["model.h"]) == run.spec()  # the launcher's wins
  (tmp_path / spec.SPEC).write_text("{not json")
  with pytest.raises(config_lib.ConfigError, match=r"run.json is not valid JSON"):
    record.run_spec(tmp_path, config, [])


# --- one tiny sweep on a local Ray instance ---------------------------------------------------

# Train steps, checkpoint interval, the step seen before the kill (two checkpoints later, so
# the first one has been written whatever orbax's asynchronous save is doing).
STEPS, EVERY, KILL_AFTER = 40, 7, 16


@pytest.fixture(scope="module")
def ray_instance():
  """One local Ray instance for the module: 2 CPUs, bound to 127.0.0.1, no dashboard."""
  os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"  # one-node cluster on the loopback
  os.environ["TRANSFORMER_JAX_HUGE_PAGES"] = "0"  # the runs' processes keep their pid
  ray = pytest.importorskip("ray")
  launch.connect(None, num_cpus=2)
  assert ray.util.get_node_ip_address() == "127.0.0.1"
  yield ray
  ray.shutdown()


def _kill_once_in_training(workdir: pathlib.Path, stop: threading.Event, seen: dict) -> None:
  """SIGKILLs the `run` process of `workdir` once it has logged step KILL_AFTER."""
  while not stop.is_set() and max(_train_steps(workdir), default=0) < KILL_AFTER:
    time.sleep(0.005)
  flag = f"--workdir={workdir}".encode()
  for proc in pathlib.Path("/proc").iterdir():
    try:
      cmdline = (proc / "cmdline").read_bytes().split(b"\0")
    except OSError:
      continue
    if flag in cmdline and b"transformer_jax.main" in cmdline:
      seen["step"] = max(_train_steps(workdir))
      os.kill(int(proc.name), signal.SIGKILL)
      return


@pytest.fixture(scope="module")
def ray_sweep(ray_instance, tiny_data, tmp_path_factory):
  """(runs, summary, log lines, step the killed run had reached) of the module's sweep."""
  tmp = tmp_path_factory.mktemp("ray_sweep")
  path = _sweep_file(tmp, 'chain(sweep("decode.beam_size", [1, 2]), '
                          'point("bad-data", {"data.train_src": "/nonexistent/train.en"}))',
                     tiny_data, {"train.steps": STEPS, "train.log_every": 1,
                                 "train.checkpoint_every": EVERY, "train.eval_every": 100000,
                                 "data.tokens_per_batch": 2048, "data.max_len": 64,
                                 "decode.max_extra_len": 5})
  runs = spec.plan(str(path), root=tmp / "root")
  killed = runs[1].workdir
  stop, seen = threading.Event(), {}
  killer = threading.Thread(target=_kill_once_in_training, args=(killed, stop, seen))
  killer.start()
  lines: list[str] = []
  try:
    out = launch.ray_sweep(runs, resources={"CPU": 1}, max_retries=2, log=lines.append)
  finally:
    stop.set()
    killer.join()
  return runs, out, lines, seen.get("step")


def test_ray_sweep_runs_the_runs_and_reports_the_failing_one(ray_sweep):
  runs, out, lines, _ = ray_sweep
  assert sorted(r.name for r in out["done"]) == ["beam_size=1/seed0", "beam_size=2/seed0"]
  assert [r.name for r in out["failed"]] == ["bad-data/seed0"]
  bad = runs[2].workdir
  assert any(line.startswith("FAILED bad-data/seed0 (exit 1") and str(bad / "run.log") in line
             for line in lines), lines
  assert "/nonexistent/train.en" in (bad / "run.log").read_text()
  for r in runs[:2]:
    record = json.loads((r.workdir / "result.json").read_text())
    assert record["run"] == r.spec() and record["steps"] == STEPS
    assert json.loads((r.workdir / spec.SPEC).read_text()) == r.spec()


def test_a_killed_run_is_retried_and_resumes_with_the_uninterrupted_losses(ray_sweep):
  runs, _, _, died_at = ray_sweep
  straight_dir, killed_dir = runs[0].workdir, runs[1].workdir
  assert died_at is not None and KILL_AFTER <= died_at < STEPS, died_at
  log = (killed_dir / "run.log").read_text()
  assert len(re.findall(r"^== \d{4}-", log, re.M)) == 2, log[-3000:]  # two attempts
  first, resumed = _per_process(killed_dir)
  start = min(resumed) - 1
  assert start % EVERY == 0 and EVERY <= start <= died_at, (start, died_at)
  assert f"at step {start}" in log
  straight, = _per_process(straight_dir)
  last_written = {**first, **resumed}
  assert sorted(last_written) == sorted(straight) == list(range(1, STEPS + 1))
  for step in straight:
    assert last_written[step]["loss"] == straight[step]["loss"], step


def test_a_second_sweep_on_the_same_root_reruns_nothing_finished(ray_sweep):
  runs, _, _, _ = ray_sweep
  stamps = [(r.workdir / "result.json").stat().st_mtime_ns for r in runs[:2]]
  lines: list[str] = []
  out = launch.ray_sweep(runs, log=lines.append)
  assert sorted(r.name for r in out["skipped"]) == ["beam_size=1/seed0", "beam_size=2/seed0"]
  assert [r.name for r in out["failed"]] == ["bad-data/seed0"] and not out["done"]
  assert not any(line.startswith("submit beam_size") for line in lines), lines
  assert [(r.workdir / "result.json").stat().st_mtime_ns for r in runs[:2]] == stamps
  # A task that finds its run finished (another sweep got there first) starts nothing.
  r = runs[0]
  size = (r.workdir / "run.log").stat().st_size
  assert launch.run_task(r.argv, str(r.workdir), r.spec(), str(ROOT)) == (0, 0.0)
  assert (r.workdir / "run.log").stat().st_size == size
