"""Device mesh, named sharding rule sets, batch placement and multi-host start-up.

The model names every parameter dimension with a logical axis ('vocab', 'embed', 'heads', 'd_k',
'd_v', 'mlp', 'length'; see model.py and attention.py) and batches have 'batch' and 'length'.
This module alone maps those names to the axes of a `jax.sharding.Mesh`:

  data    pure data parallelism: batch rows split, parameters replicated.
  fsdp    fully sharded data parallelism: batch rows split, and parameters and Adam moments
          split along 'embed' (each device holds 1/fsdp of every matrix; XLA gathers a layer's
          weights just before use and reduce-scatters its gradients).
  tensor  tensor (Megatron-style) parallelism: attention heads, the d_ff dimension of the
          feed-forward network and the vocabulary split; batch rows replicated over it.

`config.mesh` gives the size of each axis (-1: all devices the others leave) and
`config.sharding.rules` names one of `RULE_SETS`. Batch rows are always split over
('data', 'fsdp'), so every rule set is data parallel over those two axes. Multi-host: with
`config.distributed.enabled`, `initialize_distributed` starts jax's multi-controller runtime; each
process then places only the rows its own devices hold (`process_rows`, `global_batch`).
"""

from __future__ import annotations

import contextlib
import math
from typing import Any, Iterator, Sequence

import flax.linen as nn
import jax
import ml_collections
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from transformer_jax.config import ConfigError

MESH_AXES = ("data", "fsdp", "tensor")
BATCH_AXES = ("data", "fsdp")  # batch rows are split over both

_BATCH_RULES = (("batch", BATCH_AXES), ("length", None))
_FSDP_RULES = (("embed", "fsdp"),)
_TENSOR_RULES = (("heads", "tensor"), ("mlp", "tensor"), ("vocab", "tensor"))

# Logical axis -> mesh axis (or tuple of axes, or None = replicated), in flax's rule format.
# A dimension whose logical name has no rule is replicated.
RULE_SETS: dict[str, tuple[tuple[str, Any], ...]] = {
    "data_parallel": _BATCH_RULES,
    "fsdp": _BATCH_RULES + _FSDP_RULES,
    "tensor_parallel": _BATCH_RULES + _TENSOR_RULES,
    "fsdp_tensor": _BATCH_RULES + _FSDP_RULES + _TENSOR_RULES,
}


def rules(config: ml_collections.ConfigDict) -> tuple[tuple[str, Any], ...]:
  """The rule set `config.sharding.rules` names.

  Raises:
    ConfigError: unknown name, or a mesh axis of size > 1 that the rule set never uses (its
      devices would all compute the same thing).
  """
  name = config.sharding.rules
  if name not in RULE_SETS:
    raise ConfigError(f"config.sharding.rules must be one of {sorted(RULE_SETS)}, got {name!r}")
  used = set()
  for _, axes in RULE_SETS[name]:
    used.update((axes,) if isinstance(axes, str) else axes or ())
  for axis in MESH_AXES:
    if config.mesh[axis] not in (1, -1) and axis not in used:
      raise ConfigError(f"config.mesh.{axis}={config.mesh[axis]} but config.sharding.rules="
                        f"{name!r} shards nothing over '{axis}'; set config.mesh.{axis}=1 or "
                        f"choose a rule set that uses it ({_users(axis)})")
  return RULE_SETS[name]


def _users(axis: str) -> str:
  return ", ".join(n for n, r in RULE_SETS.items()
                   if any(axis == a or (isinstance(a, tuple) and axis in a) for _, a in r))


def mesh_shape(config: ml_collections.ConfigDict, num_devices: int) -> dict[str, int]:
  """{'data': ., 'fsdp': ., 'tensor': .} of `config.mesh` for `num_devices` devices.

  One axis may be -1: it takes every device the others leave.

  Raises:
    ConfigError: a size is 0 or below -1, more than one is -1, or the sizes do not multiply
      to the number of devices (the message names config.mesh and the device count).
  """
  sizes = {a: int(config.mesh[a]) for a in MESH_AXES}
  for axis, size in sizes.items():
    if size == 0 or size < -1:
      raise ConfigError(f"config.mesh.{axis} must be a positive integer or -1, got {size}")
  free = [a for a, s in sizes.items() if s == -1]
  if len(free) > 1:
    raise ConfigError(f"only one of config.mesh.{{data,fsdp,tensor}} may be -1, got {sizes}")
  fixed = math.prod(s for s in sizes.values() if s != -1)
  if free:
    if num_devices % fixed:
      raise ConfigError(f"config.mesh {sizes}: {num_devices} devices are not a multiple of "
                        f"the fixed axes' product {fixed}")
    sizes[free[0]] = num_devices // fixed
  if math.prod(sizes.values()) != num_devices:
    raise ConfigError(f"config.mesh {sizes} has {math.prod(sizes.values())} devices but there "
                      f"are {num_devices}; set one axis to -1 or make the product match")
  return sizes


def make_mesh(config: ml_collections.ConfigDict,
              devices: Sequence[jax.Device] | None = None) -> Mesh:
  """The ('data', 'fsdp', 'tensor') mesh of `config.mesh` (see `mesh_shape`) over `devices`
  (default: all devices of all processes).

  Axes are `Auto`: XLA's partitioner propagates the parameter and batch shardings through the
  model (helped by the model's logical activation constraints).
  """
  devices = list(jax.devices() if devices is None else devices)
  sizes = mesh_shape(config, len(devices))
  return jax.make_mesh(tuple(sizes.values()), MESH_AXES,
                       axis_types=(jax.sharding.AxisType.Auto,) * len(MESH_AXES), devices=devices)


def _fit(spec: P, shape: Sequence[int], mesh: Mesh) -> P:
  """`spec` with every dimension that its mesh axes do not divide evenly replicated instead."""
  fitted = []
  for dim, axes in zip(shape, tuple(spec) + (None,) * (len(shape) - len(spec))):
    names = (axes,) if isinstance(axes, str) else tuple(axes or ())
    fitted.append(axes if dim % math.prod(mesh.shape[a] for a in names) == 0 else None)
  return P(*fitted)


def state_shardings(boxed_abstract: Any, mesh: Mesh, rule_set) -> Any:
  """NamedShardings for a tree whose parameters carry flax logical axis names.

  Args:
    boxed_abstract: `jax.eval_shape` of a tree holding `nn.Partitioned` leaves (e.g. a
      TrainState whose params and Adam moments are still boxed); other leaves are replicated.
    mesh: from `make_mesh`.
    rule_set: one of `RULE_SETS`' values.

  Returns:
    The unboxed tree's structure with a NamedSharding per leaf. A dimension whose size the
    mesh axes do not divide (e.g. an odd vocabulary over 'tensor') is replicated rather than
    failing.
  """
  logical = nn.get_partition_spec(boxed_abstract)
  shapes = nn.meta.unbox(boxed_abstract)
  specs = jax.tree_util.tree_map(lambda s: nn.logical_to_mesh_axes(s, rule_set), logical,
                                 is_leaf=lambda x: isinstance(x, P))
  return jax.tree_util.tree_map(lambda s, x: NamedSharding(mesh, _fit(s, x.shape, mesh)),
                                specs, shapes, is_leaf=lambda x: isinstance(x, P))


def with_shardings(abstract: Any, shardings: Any) -> Any:
  """ShapeDtypeStructs of `abstract` carrying `shardings` (an orbax restore target)."""
  return jax.tree_util.tree_map(
      lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), abstract, shardings)


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def replicated_like(tree: Any) -> Any:
  """ShapeDtypeStructs of a tree of jax.Arrays on one mesh, fully replicated on that mesh: a
  restore target whose arrays every process can read whole."""
  mesh = jax.tree_util.tree_leaves(tree)[0].sharding.mesh
  return jax.tree_util.tree_map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=replicated(mesh)), tree)


def to_host(tree: Any) -> Any:
  """numpy copy of a tree of (possibly sharded, multi-host) jax.Arrays on one mesh, on every
  process: gathered on the devices first, so it works where no process holds every shard."""
  mesh = jax.tree_util.tree_leaves(tree)[0].sharding.mesh
  return jax.device_get(jax.jit(lambda x: x, out_shardings=replicated(mesh))(tree))


def batch_sharding(mesh: Mesh, rule_set) -> NamedSharding:
  """Sharding of a [B, L] batch array: rows over the 'batch' rule's mesh axes."""
  return NamedSharding(mesh, nn.logical_to_mesh_axes(("batch", "length"), rule_set))


def batch_shards(mesh: Mesh, rule_set) -> int:
  """Number of pieces batch rows are split into; B must be a multiple of it."""
  axes = batch_sharding(mesh, rule_set).spec[0]
  names = (axes,) if isinstance(axes, str) else tuple(axes or ())
  return math.prod(mesh.shape[a] for a in names)


def rows_multiple(config: ml_collections.ConfigDict, mesh: Mesh, rule_set) -> int:
  """What every batch's row count must be a multiple of: `config.data.batch_multiple`, and
  grad_accum_steps x batch shards, so that each micro-batch splits evenly over the devices."""
  return math.lcm(config.data.batch_multiple,
                  config.train.grad_accum_steps * batch_shards(mesh, rule_set))


def process_rows(sharding: NamedSharding, num_rows: int) -> np.ndarray:
  """int64 [R] sorted indices of the batch rows this process's devices hold (all rows if the
  rows are not split). These are the rows `global_batch` wants from this process."""
  held = set()
  for index in sharding.addressable_devices_indices_map((num_rows, 1)).values():
    held.update(range(*index[0].indices(num_rows)))
  return np.asarray(sorted(held), dtype=np.int64)


def global_batch(local: dict[str, np.ndarray], sharding: NamedSharding, num_rows: int
                 ) -> dict[str, jax.Array]:
  """Global [num_rows, L] arrays from this process's rows (`process_rows`), for every key."""
  return {k: jax.make_array_from_process_local_data(sharding, v, (num_rows,) + v.shape[1:])
          for k, v in local.items()}


def initialize_distributed(config: ml_collections.ConfigDict) -> None:
  """Starts jax's multi-controller runtime if `config.distributed.enabled`.

  Must run before anything touches a device. Empty / 0 / -1 fields are left to jax's cluster
  auto-detection (Cloud TPU, SLURM, ...); CPU and GPU clusters without a scheduler set
  coordinator_address ('host:port' of process 0), num_processes and process_id.
  Calling it again in the same process is a no-op.
  """
  dc = config.distributed
  if not dc.enabled or jax.distributed.is_initialized():
    return
  kwargs = {}
  if dc.coordinator_address:
    kwargs["coordinator_address"] = dc.coordinator_address
  if dc.num_processes > 0:
    kwargs["num_processes"] = dc.num_processes
  if dc.process_id >= 0:
    kwargs["process_id"] = dc.process_id
  jax.distributed.initialize(**kwargs)


@contextlib.contextmanager
def lead_first(name: str) -> Iterator[None]:
  """Runs the block on process 0 first and on the others after it (e.g. process 0 trains and
  writes the vocabulary, the others load it). One process: just runs the block."""
  if jax.process_count() > 1 and jax.process_index() != 0:
    multihost_utils.sync_global_devices(name)
  yield
  if jax.process_count() > 1 and jax.process_index() == 0:
    multihost_utils.sync_global_devices(name)


def any_process(value: int) -> int:
  """The largest of `value` over all processes (a collective: every process must call it)."""
  if jax.process_count() == 1:
    return value
  return int(np.max(multihost_utils.process_allgather(np.int32(value))))
