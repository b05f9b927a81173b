"""Work for tests/test_sharding.py that needs 8 fake CPU devices or several processes.

XLA_FLAGS=--xla_force_host_platform_device_count=N must be set before jax is first imported,
and the pytest process has imported it already, so the tests run this file in a subprocess:

  python tests/multidevice_helper.py rule_sets OUT_DIR DROPOUT_PRNG
      For one device and each case of CASES: a few train steps on the same batches. Writes
      OUT_DIR/<case>.npz (losses, parameters, and each parameter's and Adam moment's partition
      spec and first shard shape). The one-device state is also saved as a checkpoint, and each
      case restores it onto its own mesh (restore_max_diff, restore_same_shardings).
  python tests/multidevice_helper.py train CONFIG_JSON WORKDIR
      `train.train` with the config in CONFIG_JSON (a ConfigDict as JSON), e.g. as one of the
      processes of a jax.distributed job.
"""

from __future__ import annotations

import json
import pathlib
import sys

import numpy as np

# (name, config.mesh sizes (data, fsdp, tensor), config.sharding.rules)
CASES = (("one_device", (1, 1, 1), "data_parallel"),
         ("data_parallel", (8, 1, 1), "data_parallel"),
         ("fsdp", (2, 4, 1), "fsdp"),
         ("tensor_parallel", (4, 1, 2), "tensor_parallel"),
         ("fsdp_tensor", (2, 2, 2), "fsdp_tensor"))
STEPS, ROWS, LENGTH, VOCAB = 3, 8, 16, 64


def step_config(dropout_prng: str):
  from transformer_jax import config as config_lib
  c = config_lib.default_config()
  c.model.update(d_model=32, d_ff=64, h=4, d_k=8, d_v=8, n_layers=1, p_drop=0.1)
  c.data.vocab_size = VOCAB
  c.train.update(warmup_steps=2, dropout_prng=dropout_prng, eps_ls=0.1)
  return c


def batches(seed: int = 0) -> list[dict[str, np.ndarray]]:
  """STEPS batches of random ids [ROWS, LENGTH], rows of random lengths, PAD after EOS."""
  rng = np.random.default_rng(seed)
  out = []
  for _ in range(STEPS):
    ids = rng.integers(4, VOCAB, size=(ROWS, LENGTH), dtype=np.int32)
    lengths = rng.integers(3, LENGTH + 1, size=ROWS)
    ids[np.arange(LENGTH)[None, :] >= lengths[:, None]] = 0
    ids[np.arange(ROWS), lengths - 1] = 3  # EOS
    tgt_in = np.concatenate([np.full((ROWS, 1), 2, np.int32), ids[:, :-1]], axis=1)
    out.append({"src": ids, "tgt_in": np.where(ids > 0, tgt_in, 0), "tgt_out": ids})  # copy task
  return out


def rule_sets(out_dir: str, dropout_prng: str) -> None:
  import jax
  from transformer_jax import checkpoint as ckpt_lib
  from transformer_jax import optim, sharding
  from transformer_jax import train as train_lib
  from transformer_jax.config import model_config
  from transformer_jax.model import Transformer

  config = step_config(dropout_prng)
  model = Transformer(model_config(config))
  tx, _ = optim.make_optimizer(config)
  for name, (data, fsdp, tensor), rules in CASES:
    config.mesh.update(data=data, fsdp=fsdp, tensor=tensor)
    config.sharding.rules = rules
    mesh = sharding.make_mesh(config, jax.devices()[:data * fsdp * tensor])
    rule_set = sharding.rules(config)
    init, step, _ = train_lib.sharded_functions(config, model, tx, mesh, rule_set)
    state = init(0)
    rng = jax.jit(lambda: jax.random.key(1, impl=dropout_prng),
                  out_shardings=sharding.replicated(mesh))()
    losses = []
    for batch in batches():
      placed = sharding.global_batch(batch, sharding.batch_sharding(mesh, rule_set), ROWS)
      state, metrics = step(state, placed, rng)
      losses.append(float(metrics["loss"]) / float(metrics["tokens"]))
    arrays = {"losses": np.asarray(losses)}
    ckpts = ckpt_lib.Checkpoints(pathlib.Path(out_dir) / "checkpoints")
    if name == "one_device":
      ckpts.save(STEPS, state, {"step": STEPS})
      ckpts.wait()
      saved = jax.tree_util.tree_leaves(jax.device_get(state))
    else:  # the one-device checkpoint, restored onto this mesh
      restored, _ = ckpts.restore(STEPS, state)
      leaves = jax.tree_util.tree_leaves(restored)
      arrays["restore_max_diff"] = np.asarray(max(
          float(np.max(np.abs(np.asarray(a, np.float64) - b))) for a, b in zip(leaves, saved)))
      arrays["restore_same_shardings"] = np.asarray(all(
          a.sharding == b.sharding for a, b in zip(leaves, jax.tree_util.tree_leaves(state))))
    ckpts.close()
    tree = {"params": state.params, "mu": state.opt_state[0].mu}
    for path, x in jax.tree_util.tree_leaves_with_path(tree):
      key = jax.tree_util.keystr(path, simple=True, separator="/")
      if key.startswith("params/"):
        arrays[key] = np.asarray(x)
      arrays[f"spec:{key}"] = np.asarray(str(tuple(x.sharding.spec)))
      arrays[f"shard:{key}"] = np.asarray(x.addressable_shards[0].data.shape)
    np.savez(pathlib.Path(out_dir) / f"{name}.npz", **arrays)


def train(config_json: str, workdir: str) -> None:
  import ml_collections
  from transformer_jax import train as train_lib
  config = ml_collections.ConfigDict(json.loads(pathlib.Path(config_json).read_text()))
  print(json.dumps(train_lib.train(config, workdir, log=print)))


if __name__ == "__main__":
  sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
  {"rule_sets": rule_sets, "train": train}[sys.argv[1]](*sys.argv[2:])
