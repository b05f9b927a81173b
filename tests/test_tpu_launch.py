"""The Cloud TPU launcher prints the gcloud commands of the README guide; --dry-run runs none."""

from __future__ import annotations

import shlex
import subprocess

import pytest

from transformer_jax import tpu_launch

BASE = ["--tpu=t1", "--zone=us-central2-b", "--bucket=my-bucket", "--run=base1", "--dry-run"]


def _printed(capsys, argv: list[str]) -> dict[str, list[str]]:
  tpu_launch.main(argv)
  lines = capsys.readouterr().out.splitlines()
  steps = [line[2:] for line in lines[::2]]
  assert all(line.startswith("# ") for line in lines[::2]), lines
  return dict(zip(steps, (shlex.split(line) for line in lines[1::2])))


def test_dry_run_prints_every_step_and_runs_nothing(capsys, monkeypatch):
  monkeypatch.setattr(subprocess, "run", lambda *a, **k: pytest.fail(f"ran {a}"))
  out = {}
  for step in tpu_launch.STEPS:
    out.update(_printed(capsys, BASE + ["--accelerator=v4-32", f"--step={step}"]))
  assert out["bucket"] == ["gcloud", "storage", "buckets", "create", "gs://my-bucket",
                           "--location=us-central2", "--uniform-bucket-level-access",
                           "--enable-hierarchical-namespace"]
  assert out["create"] == ["gcloud", "compute", "tpus", "tpu-vm", "create", "t1",
                           "--zone=us-central2-b", "--accelerator-type=v4-32",
                           "--version=tpu-ubuntu2204-base"]
  assert out["copy"][:6] == ["gcloud", "compute", "tpus", "tpu-vm", "scp", "--recurse"]
  assert out["copy"][7:] == ["t1:~/transformer_jax", "--zone=us-central2-b", "--worker=all"]
  for step in ("setup", "train"):
    assert out[step][:8] == ["gcloud", "compute", "tpus", "tpu-vm", "ssh", "t1",
                             "--zone=us-central2-b", "--worker=all"]
    assert out[step][8].startswith("--command=") and len(out[step]) == 9
  assert "gcsfuse --implicit-dirs my-bucket /gcs" in out["setup"][8]
  assert 'python3 -m pip install -e "$HOME/transformer_jax[tpu]"' in out["setup"][8]


def test_train_command_runs_distributed_on_every_host_with_the_extra_overrides(capsys):
  out = _printed(capsys, BASE + ["--step=train", "--config=configs/multi30k.py", "--",
                                 "--config.train.steps=10", "--config.mesh.fsdp=4"])
  remote = out["train"][8][len("--command="):]
  # What the remote shell will run: mount, then the training command in the background.
  assert remote.endswith(" > ~/train_base1.log 2>&1 < /dev/null &)")
  assert remote.startswith("sudo mkdir -p /gcs") and "gcsfuse --implicit-dirs my-bucket" in remote
  train = shlex.split(remote.split("(nohup ", 1)[1].split(" > ")[0])
  assert train == ["python3", "-m", "transformer_jax.main", "train",
                   "--config=configs/multi30k.py", "--workdir=/gcs/runs/base1",
                   "--config.distributed.enabled=True", "--config.train.steps=10",
                   "--config.mesh.fsdp=4"]


@pytest.mark.parametrize("accelerator, runtime", [("v5litepod-16", "v2-alpha-tpuv5-lite"),
                                                  ("v5p-32", "v2-alpha-tpuv5"),
                                                  ("v4-8", "tpu-ubuntu2204-base")])
def test_runtime_follows_the_tpu_generation(capsys, accelerator, runtime):
  out = _printed(capsys, BASE + [f"--accelerator={accelerator}", "--step=create"])
  assert f"--version={runtime}" in out["create"]


def test_unknown_generation_is_refused():
  with pytest.raises(SystemExit, match=r"--accelerator='v9-8'"):
    tpu_launch.main(BASE + ["--accelerator=v9-8", "--step=create"])
