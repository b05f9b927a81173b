"""config.train.profile_steps: a jax.profiler trace of the chosen steps under WORKDIR/tb."""

from __future__ import annotations

import gzip
import json

import pytest
from conftest import tiny_config

from transformer_jax import config as config_lib
from transformer_jax import profiling
from transformer_jax import train as train_lib


def test_profile_steps_write_a_trace_tensorboard_and_perfetto_read(tiny_data, tmp_path):
  config = tiny_config(tiny_data, **{"train.steps": 3, "train.profile_steps": "2-3",
                                     "train.log_every": 3, "train.checkpoint_every": 3})
  lines = []
  train_lib.train(config, tmp_path, log=lines.append)
  runs = list((tmp_path / "tb" / "plugins" / "profile").iterdir())
  assert len(runs) == 1  # one trace, of steps 2-3
  assert list(runs[0].glob("*.xplane.pb")), sorted(p.name for p in runs[0].iterdir())
  trace = json.loads(gzip.decompress((runs[0] / "perfetto_trace.json.gz").read_bytes()))
  names = {e.get("name", "") for e in trace["traceEvents"]}
  assert any("train_step" in n for n in names), sorted(names)[:20]  # the jitted step ran inside
  assert any("profile of steps 2-3 written under" in line for line in lines)


@pytest.mark.parametrize("spec,want", [("", None), ("7", (7, 7)), ("10-12", (10, 12)),
                                       (" 3 - 4 ", (3, 4))])
def test_parse_steps(spec, want):
  assert profiling.parse_steps(spec) == want


@pytest.mark.parametrize("spec", ["0", "5-4", "a-b", "3,4", "-2"])
def test_bad_profile_steps_are_refused_by_validate(spec):
  config = config_lib.default_config()
  config.train.profile_steps = spec
  with pytest.raises(config_lib.ConfigError, match=r"config.train.profile_steps must be"):
    config_lib.validate(config)
