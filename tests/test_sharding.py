"""Sharded training on 8 fake CPU devices equals training on one device (sharding.py).

The 8-device runs happen in one subprocess (tests/multidevice_helper.py), because the device
count must be set before jax is imported. For each rule set on a 2x4 or 4x2 (or 2x2x2) mesh,
three Adam steps must give the one-device losses and parameters, every parameter and Adam
moment must be split exactly as the table below (written here, independently of the rules in
sharding.py) says, and the one-device checkpoint must restore onto the mesh unchanged. Dropout is on (p_drop 0.1, 'rbg' masks): the masks turn out not to depend
on the sharding, so the comparison needs no p_drop = 0.
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import jax
import numpy as np
import pytest

from conftest import ROOT
from transformer_jax import config as config_lib
from transformer_jax import sharding

HELPER = pathlib.Path(__file__).resolve().parent / "multidevice_helper.py"
# O0 LLVM codegen roughly halves the compile time of these tiny programs.
FAKE_8 = "--xla_force_host_platform_device_count=8 --xla_backend_optimization_level=0"

# Mesh axis per dimension for each parameter kind, by rule set: D d_model, H heads, K d_k,
# V d_v, F d_ff, C vocabulary.
_DP, _FSDP, _TP, _BOTH = "data_parallel", "fsdp", "tensor_parallel", "fsdp_tensor"
EXPECTED = {  # kind -> {rule set: spec}
    "W_QKV": {_DP: (None, None, None), _FSDP: ("fsdp", None, None),  # [D, H, K]
              _TP: (None, "tensor", None), _BOTH: ("fsdp", "tensor", None)},
    "W_O": {_DP: (None, None, None), _FSDP: (None, None, "fsdp"),  # [H, V, D]
            _TP: ("tensor", None, None), _BOTH: ("tensor", None, "fsdp")},
    "W_1": {_DP: (None, None), _FSDP: ("fsdp", None), _TP: (None, "tensor"),  # [D, F]
            _BOTH: ("fsdp", "tensor")},
    "b_1": {_DP: (None,), _FSDP: (None,), _TP: ("tensor",), _BOTH: ("tensor",)},  # [F]
    "W_2": {_DP: (None, None), _FSDP: (None, "fsdp"), _TP: ("tensor", None),  # [F, D]
            _BOTH: ("tensor", "fsdp")},
    "D": {_DP: (None,), _FSDP: ("fsdp",), _TP: (None,), _BOTH: ("fsdp",)},  # [D]: b_2, norms
    "embed": {_DP: (None, None), _FSDP: (None, "fsdp"), _TP: ("tensor", None),  # [C, D]
              _BOTH: ("tensor", "fsdp")},
}
MESH = {_DP: {"data": 8}, _FSDP: {"data": 2, "fsdp": 4}, _TP: {"data": 4, "tensor": 2},
        _BOTH: {"data": 2, "fsdp": 2, "tensor": 2}}


def _kind(path: str) -> str:
  name = path.split("/", 1)[1]
  if name.endswith(("W_Q", "W_K", "W_V")):
    return "W_QKV"
  for suffix, kind in (("W_O", "W_O"), ("W_1/kernel", "W_1"), ("W_1/bias", "b_1"),
                       ("W_2/kernel", "W_2"), ("embedding", "embed")):
    if name.endswith(suffix):
      return kind
  assert name.endswith(("W_2/bias", "norm/scale", "norm/bias")), name
  return "D"


def _run_helper(out: pathlib.Path) -> None:
  env = dict(os.environ, XLA_FLAGS=FAKE_8, PYTHONPATH=str(ROOT), JAX_PLATFORMS="cpu")
  proc = subprocess.run([sys.executable, str(HELPER), "rule_sets", str(out), "rbg"], env=env,
                        capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]


def _check(one, got, rules: str) -> None:
  np.testing.assert_allclose(got["losses"], one["losses"], rtol=2e-6, err_msg=rules)
  names = [k for k in one.files if k.startswith("params/")]
  assert len(names) == 31  # encoder layer 12, decoder layer 18, embedding 1
  for name in names:
    np.testing.assert_allclose(got[name], one[name], rtol=1e-4, atol=5e-5,
                               err_msg=f"{rules} {name}")
    want = EXPECTED[_kind(name)][rules]
    shape = one[name].shape
    shard = [n // (MESH[rules].get(axis, 1) if axis else 1) for n, axis in zip(shape, want)]
    for tree in ("params", "mu"):  # the parameter and its Adam moment
      key = name.replace("params/", f"{tree}/", 1)
      assert str(got[f"spec:{key}"]) == str(want), (rules, key, got[f"spec:{key}"], want)
      assert list(got[f"shard:{key}"]) == shard, (rules, key, got[f"shard:{key}"], shard)
    # One device holds everything; the sharded runs really split what the table splits.
    assert list(one[f"shard:{name}"]) == list(shape)
  # The one-device checkpoint restores onto this mesh, exactly, in this rule set's shardings.
  assert float(got["restore_max_diff"]) == 0.0 and bool(got["restore_same_shardings"]), rules


def test_sharded_steps_match_one_device_and_split_as_the_rules_say(tmp_path):
  # One test, not one per rule set: under pytest-xdist each worker would rerun the helper.
  _run_helper(tmp_path)
  one = np.load(tmp_path / "one_device.npz")
  assert len(set(np.round(one["losses"], 3))) == len(one["losses"])  # the steps did train
  for rules in (_DP, _FSDP, _TP, _BOTH):
    _check(one, np.load(tmp_path / f"{rules}.npz"), rules)


# -- config checks (no compiles) ------------------------------------------------------------------

def _config(**mesh):
  c = config_lib.default_config()
  c.mesh.update(mesh)
  return c


def test_mesh_takes_the_remaining_devices_and_names_bad_sizes():
  assert sharding.mesh_shape(_config(fsdp=2), 8) == {"data": 4, "fsdp": 2, "tensor": 1}
  assert sharding.mesh_shape(_config(data=2, fsdp=-1, tensor=2), 8)["fsdp"] == 2
  with pytest.raises(config_lib.ConfigError, match=r"config.mesh .* 8 devices .* product 3"):
    sharding.mesh_shape(_config(data=-1, fsdp=3), 8)
  with pytest.raises(config_lib.ConfigError, match=r"has 4 devices but there are 8"):
    sharding.mesh_shape(_config(data=2, fsdp=2), 8)
  with pytest.raises(config_lib.ConfigError, match=r"only one of config.mesh"):
    sharding.mesh_shape(_config(data=-1, fsdp=-1), 8)
  with pytest.raises(config_lib.ConfigError, match=r"config.mesh.tensor must be"):
    sharding.mesh_shape(_config(tensor=0), 8)
  mesh = sharding.make_mesh(_config(), jax.devices()[:1])
  assert dict(mesh.shape) == {"data": 1, "fsdp": 1, "tensor": 1}


def test_rule_set_must_exist_and_use_every_split_axis():
  c = _config(data=-1, tensor=2)
  c.sharding.rules = "fsdp"
  with pytest.raises(config_lib.ConfigError, match=r"config.mesh.tensor=2 but config.sharding"
                     r".rules='fsdp' shards nothing over 'tensor'.*tensor_parallel"):
    sharding.rules(c)
  c.sharding.rules = "zero3"
  with pytest.raises(config_lib.ConfigError, match=r"config.sharding.rules must be one of"):
    sharding.rules(c)
  c.sharding.rules = "fsdp_tensor"
  assert dict(sharding.rules(c))["heads"] == "tensor"


def test_dimension_the_axis_does_not_divide_is_replicated():
  mesh = jax.sharding.Mesh(np.array(jax.devices()[:1]).reshape(1, 1, 1), sharding.MESH_AXES)
  spec = jax.sharding.PartitionSpec("tensor", "fsdp")
  assert sharding._fit(spec, (37, 512), mesh) == spec  # axes of size 1 divide everything
  big = type("FakeMesh", (), {"shape": {"data": 1, "fsdp": 4, "tensor": 2}})()
  assert sharding._fit(spec, (37, 512), big) == jax.sharding.PartitionSpec(None, "fsdp")
  assert sharding._fit(spec, (38, 510), big) == jax.sharding.PartitionSpec("tensor", None)
