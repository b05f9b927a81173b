"""Training (paper Section 5): pure jitted steps and the loop that logs, evaluates and checkpoints.

`train_step(state, batch, rng)` and `eval_step(params, batch)` are pure; `train(config, workdir)`
owns all side effects: vocabulary, data, checkpoints, metrics.jsonl, TensorBoard events and the
progress bar. Starting `train` again with the same workdir resumes from the latest checkpoint at
the same step and the same position in the data.

The state and the step are sharded over the mesh of `config.mesh` by the rule set
`config.sharding.rules` (sharding.py); with `config.distributed.enabled` the same program runs
as one of several processes, of which only process 0 writes files other than checkpoints.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import itertools
import json
import pathlib
import queue
import signal
import threading
import time
from typing import Any, Iterator

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import tqdm

from transformer_jax import attention as attention_lib
from transformer_jax import budget
from transformer_jax import checkpoint as ckpt_lib
from transformer_jax import config as config_lib
from transformer_jax import data as data_lib
from transformer_jax import evaluate
from transformer_jax import metrics_writer
from transformer_jax import optim
from transformer_jax import profiling
from transformer_jax import workdir as workdir_lib
from transformer_jax import sharding as sharding_lib
from transformer_jax.losses import label_smoothed_cross_entropy
from transformer_jax.model import Transformer, count_params
from transformer_jax.tokenizer import Tokenizer

Batch = dict[str, jax.Array]


@flax.struct.dataclass
class TrainState:
  """Everything a step changes: step count, parameters, Adam moments."""
  step: jax.Array
  params: Any
  opt_state: Any


def train_step(state: TrainState, batch: Batch, rng: jax.Array, *, model: Transformer,
               tx: optax.GradientTransformation, eps_ls: float,
               grad_accum_steps: int = 1) -> tuple[TrainState, dict]:
  """One Adam step on the label-smoothed loss per non-PAD target token (Section 5.3, 5.4).

  With grad_accum_steps = k > 1 the batch is cut into k micro-batches by rows (micro-batch j
  holds rows j, j + k, j + 2k, ..., so each device keeps its own rows), their loss sums, token
  counts and gradients are summed in a `lax.scan`, and the sum is divided once by the total
  number of target tokens: the same update as the whole batch at once, in 1/k of the
  activation memory.

  Args:
    state: current TrainState.
    batch: int32 'src' [B, S], 'tgt_in' [B, T], 'tgt_out' [B, T]; B a multiple of k.
    rng: base PRNG key; the step number is folded in, so dropout differs per step and a
      resumed run draws the same masks. Micro-batch j also folds in j (when k > 1).
    grad_accum_steps: k, micro-batches per step (static).

  Returns:
    (new state, metrics of float32 scalars: loss, nll and tokens as sums; grad_norm).

  Raises:
    ValueError: B is not a multiple of k (names config.train.grad_accum_steps).
  """
  k = grad_accum_steps
  rows = batch["tgt_out"].shape[0]
  if rows % k:
    raise ValueError(f"config.train.grad_accum_steps={k} must divide the batch rows, got {rows}")
  step_rng = jax.random.fold_in(rng, state.step)

  def loss_sums(params, micro, dropout_rng):
    logits = model.apply({"params": params}, micro["src"], micro["tgt_in"], deterministic=False,
                         rngs={"dropout": dropout_rng})
    loss, nll, tokens = label_smoothed_cross_entropy(logits, micro["tgt_out"], eps_ls)
    return loss, (nll, tokens)

  grad_fn = jax.value_and_grad(loss_sums, has_aux=True)
  if k == 1:
    (loss, (nll, tokens)), grads = grad_fn(state.params, batch, step_rng)
  else:
    # [B, L] -> [B/k, k, L] -> [k, B/k, L]: micro-batch j is rows j, j + k, ...
    micro = jax.tree_util.tree_map(
        lambda x: jnp.swapaxes(x.reshape(rows // k, k, *x.shape[1:]), 0, 1), batch)

    def accumulate(sums, inputs):
      j, micro_batch = inputs
      (loss, (nll, tokens)), grads = grad_fn(state.params, micro_batch,
                                             jax.random.fold_in(step_rng, j))
      return jax.tree_util.tree_map(jnp.add, sums, (grads, loss, nll, tokens)), None

    zeros = (jax.tree_util.tree_map(jnp.zeros_like, state.params), *[jnp.float32(0)] * 3)
    (grads, loss, nll, tokens), _ = jax.lax.scan(accumulate, zeros, (jnp.arange(k), micro))
  grads = jax.tree_util.tree_map(lambda g: g / jnp.maximum(tokens, 1.0), grads)
  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  metrics = {"loss": loss, "nll": nll, "tokens": tokens, "grad_norm": optax.tree.norm(grads)}
  return TrainState(state.step + 1, params, opt_state), metrics


def create_state(model: Transformer, tx: optax.GradientTransformation, rng: jax.Array,
                 batch: Batch, *, unbox: bool = True) -> TrainState:
  """Initial TrainState (Glorot weights, embeddings N(0, d_model^-0.5)).

  Only the shapes of `batch` ('src', 'tgt_in') matter, and not even those: the parameters
  depend on `rng` alone. With unbox=False the parameters and Adam moments stay wrapped in
  flax's `nn.Partitioned` (carrying their logical axis names), for `sharding.state_shardings`.
  """
  variables = model.init(rng, batch["src"], batch["tgt_in"])
  params = nn.meta.unbox(variables["params"]) if unbox else variables["params"]
  return TrainState(jnp.int32(0), params, tx.init(params))


def abstract_state(config: ml_collections.ConfigDict, model: Transformer) -> TrainState:
  """Shapes and dtypes (jax.ShapeDtypeStruct leaves) of the TrainState that `train` writes for
  `config`, without computing it, placed whole on this process's first device: the target
  for restoring a checkpoint written on any mesh (for decoding and evaluation)."""
  tx, _ = optim.make_optimizer(config)
  dummy = {"src": jnp.ones((1, 8), jnp.int32), "tgt_in": jnp.ones((1, 8), jnp.int32)}
  shapes = jax.eval_shape(lambda: create_state(model, tx, jax.random.PRNGKey(0), dummy))
  device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  return jax.tree_util.tree_map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=device), shapes)


def sharded_functions(config: ml_collections.ConfigDict, model: Transformer,
                      tx: optax.GradientTransformation, mesh: jax.sharding.Mesh, rule_set):
  """`create_state` and `train_step` compiled for `mesh` with the named rule set (sharding.py).

  Returns:
    (init, step, shardings). init(seed) -> TrainState with every array written straight into
    its shards (shapes and logical axis names come from `jax.eval_shape`; no device ever holds
    the whole state). step(state, batch, rng) -> (state, metrics): `train_step` with explicit
    in/out shardings, donating `state`; batch arrays must have `sharding.batch_sharding`.
    shardings: the TrainState's NamedShardings.
  """
  dummy = {"src": np.ones((1, 8), np.int32), "tgt_in": np.ones((1, 8), np.int32)}
  boxed = jax.eval_shape(lambda: create_state(model, tx, jax.random.PRNGKey(0), dummy,
                                              unbox=False))
  state_sh = sharding_lib.state_shardings(boxed, mesh, rule_set)
  replicated = sharding_lib.replicated(mesh)

  def init(seed: int) -> TrainState:
    return jax.jit(lambda: create_state(model, tx, jax.random.PRNGKey(seed), dummy),
                   out_shardings=state_sh)()

  compiled = jax.jit(functools.partial(train_step, model=model, tx=tx, eps_ls=config.train.eps_ls,
                                       grad_accum_steps=config.train.grad_accum_steps),
                     in_shardings=(state_sh, sharding_lib.batch_sharding(mesh, rule_set),
                                   replicated),
                     out_shardings=(state_sh, replicated), donate_argnums=(0,))

  def step(state: TrainState, batch: Batch, rng: jax.Array) -> tuple[TrainState, dict]:
    with jax.set_mesh(mesh), nn.logical_axis_rules(rule_set):  # for the model's constraints
      return compiled(state, batch, rng)

  return init, step, state_sh


def _prefetch(iterator: Iterator[dict[str, np.ndarray]], depth: int = 4) -> Iterator[dict]:
  """Runs the numpy batch iterator in a thread, `depth` batches ahead of the step.

  The thread ends when the iterator is exhausted or the consumer closes this generator.
  """
  q: queue.Queue = queue.Queue(maxsize=depth)
  done = threading.Event()
  end = object()

  def work():
    for item in itertools.chain(iterator, [end]):
      while not done.is_set():
        try:
          q.put(item, timeout=0.1)
          break
        except queue.Full:
          continue
      if done.is_set():
        return

  threading.Thread(target=work, daemon=True).start()
  try:
    while (item := q.get()) is not end:
      yield item
  finally:
    done.set()


class DivergenceError(FloatingPointError):
  """The loss or gradient norm became NaN or Inf; the message names the first such step."""


def _check_finite(recent: list[tuple[int, dict]], ckpts: ckpt_lib.Checkpoints) -> None:
  """Raises DivergenceError if any of the (step, metrics) in `recent` is not finite.

  Called before every checkpoint and log line, so a diverged state is never saved.
  """
  values = jax.device_get([{k: m[k] for k in ("loss", "grad_norm")} for _, m in recent])
  for (step, _), step_values in zip(recent, values):
    bad = {k: float(v) for k, v in step_values.items() if not np.isfinite(v)}
    if bad:
      last = ckpts.latest_step()
      raise DivergenceError(
          f"training diverged at step {step}: {bad} (stopped without saving this state; the "
          f"last good checkpoint is {ckpts.directory / str(last) if last else 'none'}). "
          "Lower config.train.lr_scale or raise config.train.warmup_steps, or check the data.")


class _StopRequest:
  """Turns the first SIGTERM or SIGINT into a request to checkpoint and stop after the current
  step (what a preempted VM or Ctrl-C sends); a second one interrupts at once.

  With several processes a checkpoint is a collective, so they must stop at the same step:
  `signal` is then set only by `agree()`, which every process calls at the same steps.
  """

  def __init__(self):
    self.signal: signal.Signals | None = None
    self._received: signal.Signals | None = None
    self._previous = {}

  def _handle(self, signum, frame):
    if self._received is not None:
      raise KeyboardInterrupt
    self._received = signal.Signals(signum)
    if jax.process_count() == 1:
      self.signal = self._received

  def agree(self) -> None:
    """Multi-process: sets `signal` on every process if any process received one."""
    if jax.process_count() > 1 and self.signal is None:
      got = sharding_lib.any_process(self._received.value if self._received else 0)
      self.signal = signal.Signals(got) if got else None

  def __enter__(self):
    for sig in (signal.SIGTERM, signal.SIGINT):
      try:
        self._previous[sig] = signal.signal(sig, self._handle)
      except ValueError:  # not the main thread: leave signals alone
        pass
    return self

  def __exit__(self, *exc):
    for sig, handler in self._previous.items():
      signal.signal(sig, handler)


def load_data(config: ml_collections.ConfigDict, workdir: pathlib.Path, log=print):
  """Vocabulary (trained once, kept in the workdir) and encoded train/val data.

  Every file is read (and the test files too, if config.train.final_eval) before the
  vocabulary is trained, so bad data is reported before any long work starts.

  Returns:
    (tokenizer, train Encoded, val Encoded, stats dict).

  Raises:
    DataError: a file is missing, a directory, empty, not UTF-8 or misaligned (named, with the
      line), or no pair is left after dropping those over data.max_len.
    ConfigError: data.vocab_size does not fit the data, or it or data.vocab_model differs from
      the vocabulary already in `workdir`.
  """
  d = config.data
  splits = ["train", "val"]
  if config.train.final_eval and "test" in config.train.get("final_eval_splits", ("test",)):
    splits.append("test")
  texts = {split: data_lib.read_split(config, split, log) for split in splits}
  # The test split is read only to check it: BLEU reads it again and keeps its references.
  texts.update({s: data_lib.model_text(config, texts[s]) for s in ("train", "val")})
  train_text = texts["train"]
  # TFDS text has no file to train the vocabulary on; lowercased text differs from its file
  in_memory = train_text.src_path.startswith("tfds:") or d.get("lowercase", False)
  try:
    with sharding_lib.lead_first("vocabulary"):  # the others then load what process 0 wrote
      tokenizer = Tokenizer.load_or_train(
          workdir / "spm.model", [train_text.src_path, train_text.tgt_path], d.vocab_size,
          model_type=d.vocab_model, max_sentences=d.vocab_sample, seed=d.seed,
          sentences=train_text.src + train_text.tgt if in_memory else None)
  except ValueError as e:  # the vocabulary size does not fit the data or the saved vocabulary
    raise config_lib.ConfigError(f"config.{e}" if str(e).startswith("data.") else str(e)) from e
  stats = {}
  encoded = {}
  for split in ("train", "val"):
    text = texts[split]
    enc = data_lib.encode_parallel(text, tokenizer, d.max_len)
    if split == "train" and d.bpe_dropout > 0:
      enc = dataclasses.replace(enc, text=text)  # re-segmented every epoch
    if not enc.src:
      raise data_lib.DataError(f"{text.src_path} / {text.tgt_path}: all {enc.n_too_long} pairs "
                               f"are longer than config.data.max_len={d.max_len} tokens")
    encoded[split] = enc
    stats[split] = {"pairs": len(enc.src), "blank_dropped": text.n_blank_dropped,
                    "too_long_dropped": enc.n_too_long, "src_path": text.src_path,
                    "tgt_path": text.tgt_path}
    log(f"{split}: {len(enc.src)} pairs from {text.src_path} / {text.tgt_path}; dropped "
        f"{text.n_blank_dropped} with a blank side and {enc.n_too_long} longer than "
        f"data.max_len={d.max_len} tokens")
  return tokenizer, encoded["train"], encoded["val"], stats


def train(config: ml_collections.ConfigDict, workdir: str | pathlib.Path, log=print,
          allow_config_change: bool = False) -> dict:
  """Trains (or resumes) a Transformer in `workdir`; returns the final metrics.

  Writes WORKDIR/config.json, spm.model, data_stats.json, metrics.jsonl, TensorBoard events under
  tb/, checkpoints/ and, if config.train.final_eval, translations and final.json.

  Raises:
    ConfigError: impossible config values, or a workdir holding a different model or data
      (allowed by `allow_config_change` if no parameter shape changes; workdir.check_config).
    DataError: unreadable or inconsistent data (names file and line).
    WorkdirError: the workdir is a file or not writable.
    WorkdirBusy: another live process is training in the workdir (see `claim`).
  """
  with claim(config, workdir) as workdir:
    return _train(config, workdir, log, allow_config_change)


@contextlib.contextmanager
def claim(config: ml_collections.ConfigDict,
          workdir: str | pathlib.Path) -> Iterator[pathlib.Path]:
  """Checks `config`, starts the multi-process runtime if configured, creates `workdir` and holds
  it for the block (workdir.hold), before anything is written into it.

  With several processes only process 0 takes the lock (the workdir is shared storage: one
  lock per run, not per host) and all of them raise if it could not. Reentrant: `run` claims
  around `train`, which claims again. Yields the workdir as a Path.

  Raises:
    ConfigError: impossible config values.
    WorkdirError: the workdir is a file or not writable.
    WorkdirBusy: another live process holds the workdir.
  """
  config_lib.validate(config)
  sharding_lib.initialize_distributed(config)
  lead = jax.process_index() == 0
  workdir = workdir_lib.prepare(workdir) if lead else pathlib.Path(workdir)
  with contextlib.ExitStack() as stack:
    busy = None
    if lead:
      try:
        stack.enter_context(workdir_lib.hold(workdir))
      except workdir_lib.WorkdirBusy as e:
        busy = e
    if sharding_lib.any_process(int(busy is not None)):  # every process stops together
      raise busy or workdir_lib.WorkdirBusy(workdir, workdir_lib.read_holder(workdir))
    yield workdir


def _train(config: ml_collections.ConfigDict, workdir: pathlib.Path, log,
           allow_config_change: bool) -> dict:
  """`train` in a claimed workdir."""
  lead = jax.process_index() == 0  # only process 0 writes logs, metrics and reports
  log = log if lead else (lambda *_: None)
  workdir_lib.check_config(workdir, config, allow_change=allow_config_change, log=log)
  t = config.train
  d = config.data
  if t.grad_accum_steps < 1:
    raise config_lib.ConfigError(
        f"config.train.grad_accum_steps must be an integer >= 1, got {t.grad_accum_steps}")
  mesh, rule_set = sharding_lib.make_mesh(config), sharding_lib.rules(config)
  # Checked now, before any data: 'cudnn' off a GPU is refused (choose_implementation).
  attention = attention_lib.describe(config_lib.model_config(config))
  batch_sh = sharding_lib.batch_sharding(mesh, rule_set)
  if lead:
    (workdir / "config.json").write_text(config.to_json_best_effort(indent=2) + "\n")

  tokenizer, train_data, val_data, stats = load_data(config, workdir, log)
  mcfg = config_lib.model_config(config)
  model = Transformer(mcfg)
  tx, schedule = optim.make_optimizer(config)
  bucketing = dict(tokens_per_batch=d.tokens_per_batch, boundaries=d.bucket_boundaries,
                   seed=d.seed, batch_multiple=sharding_lib.rows_multiple(config, mesh, rule_set))
  train_batches = data_lib.BucketedBatches(train_data, **bucketing)
  if d.bpe_dropout > 0:  # the same batch shapes, each epoch segmented anew
    train_batches = data_lib.BPEDropoutBatches(train_data.text, tokenizer,
                                               keys=train_batches.keys, bpe_dropout=d.bpe_dropout,
                                               sides=d.bpe_dropout_sides, max_len=d.max_len,
                                               **bucketing)
  val_batches = data_lib.BucketedBatches(val_data, tokens_per_batch=d.tokens_per_batch,
                                         boundaries=d.bucket_boundaries, seed=d.seed,
                                         shuffle=False)
  stats["train_batches"] = train_batches.padding_stats()
  if lead:
    (workdir / "data_stats.json").write_text(json.dumps(stats, indent=2) + "\n")
  pad = stats["train_batches"]
  log(f"train batches: {pad['num_batches']} per epoch in {pad['num_shapes']} shapes; padding "
      f"{pad['tgt_pad_fraction']:.1%} of target and {pad['src_pad_fraction']:.1%} of source "
      "positions" + (f" (epoch 0 of BPE-dropout {d.bpe_dropout} on {d.bpe_dropout_sides}: "
                     f"{pad['src_mean_len']:.1f} / {pad['tgt_mean_len']:.1f} pieces per source "
                     "/ target sentence)" if d.bpe_dropout > 0 else ""))

  # The key's impl only derives per-step and per-layer keys (fold_in); the masks themselves
  # are drawn by model.dropout_algorithm (dropout.py).
  dropout_rng = jax.jit(lambda: jax.random.key(t.seed + 1, impl=t.dropout_prng),
                        out_shardings=sharding_lib.replicated(mesh))()
  init_fn, step_fn, _ = sharded_functions(config, model, tx, mesh, rule_set)
  state = init_fn(t.seed)
  n_params = count_params(state.params)
  log(f"model: {n_params:,} parameters ({n_params / 1e6:.2f}M); mesh {dict(mesh.shape)}, "
      f"sharding rules {config.sharding.rules!r}, {jax.process_count()} process(es); "
      f"attention {attention}")

  ckpts = ckpt_lib.Checkpoints(workdir / "checkpoints", keep=t.keep_checkpoints)
  start, state, meta = ckpts.restore_latest(state, log)
  start = start or 0
  if start:
    if meta.get("data_seed") != d.seed:
      log(f"warning: checkpoint {start} was trained with data.seed={meta.get('data_seed')}, "
          f"resuming with data.seed={d.seed}: the batch order changes from here on")
    log(f"resumed from {ckpts.directory / str(start)} at step {start}")
  writer = metrics_writer.MetricsWriter(workdir) if lead else metrics_writer.NullWriter()
  try:
    writer.write(start, {"params": n_params, **{f"pad_{k}": v for k, v in pad.items()}},
                 kind="info")

    pending: list[dict] = []
    tokens_since, time_since = 0.0, time.perf_counter()
    loop_start, total_tokens, total_train_s = time.perf_counter(), 0.0, 0.0
    # Seconds the loop spent blocked on the input pipeline: an upper bound on the device's wait
    # for input, since with asynchronous dispatch the previous step may still be running.
    wait_since, total_wait_s = 0.0, 0.0
    interval_step_s: list[float] = []  # seconds per step in each log interval
    bar = tqdm.tqdm(total=t.steps, initial=start, desc="train", unit="step", dynamic_ncols=True,
                    mininterval=2.0, disable=not lead)
    step = start
    recent: list[tuple[int, dict]] = []  # (step, metrics) not yet checked for NaN/Inf
    # Each process pads only the rows its devices hold and places them (in the prefetch thread).
    trace = profiling.StepTrace(t.profile_steps, workdir / "tb", log)  # train.profile_steps
    local = train_batches.iterate(start, rows=lambda n: sharding_lib.process_rows(batch_sh, n))
    batches = _prefetch(sharding_lib.global_batch(b, batch_sh, train_batches.rows(
        b["tgt_out"].shape[1])) for b in local)
    with _StopRequest() as stop:
      try:
        for step in range(start + 1, t.steps + 1):
          before_input = time.perf_counter()
          batch = next(batches)
          wait_since += time.perf_counter() - before_input
          trace.before(step)
          state, metrics = step_fn(state, batch, dropout_rng)
          trace.after(step, metrics)
          pending.append(metrics)
          recent.append((step, metrics))
          bar.update(1)
          if step % t.log_every == 0 or step == t.steps:
            _check_finite(recent, ckpts)
            recent = []
            summed = jax.tree_util.tree_map(lambda *x: float(np.sum(x)), *jax.device_get(pending))
            elapsed, tokens_since = time.perf_counter() - time_since, summed["tokens"]
            record = {"loss": summed["loss"] / summed["tokens"],
                      "nll": summed["nll"] / summed["tokens"],
                      "grad_norm": summed["grad_norm"] / len(pending),
                      "learning_rate": float(schedule(step - 1)),
                      "tokens_per_sec": tokens_since / elapsed,
                      "input_wait_fraction": wait_since / elapsed,
                      "epoch": train_batches.epoch_at(step)}
            writer.write(step, record, kind="train")
            total_tokens, total_train_s = total_tokens + tokens_since, total_train_s + elapsed
            total_wait_s += wait_since
            interval_step_s.append(elapsed / len(pending))
            bar.set_postfix(loss=f"{record['loss']:.3f}", tok_s=f"{record['tokens_per_sec']:.0f}")
            pending, tokens_since, wait_since, time_since = [], 0.0, 0.0, time.perf_counter()
          if step % t.eval_every == 0 or step == t.steps:
            val = evaluate.perplexity(model, state.params, val_batches.epoch(0))
            writer.write(step, {"ppl": val["ppl"], "nll": val["nll"]}, kind="val")
            if lead:
              bar.write(f"step {step}: dev perplexity {val['ppl']:.2f}")
            # Evaluation time is not training throughput; an evaluation between log steps also
            # discards that interval's input wait, so the fraction stays a fraction of train time.
            time_since, wait_since = time.perf_counter(), 0.0
          if step % t.log_every == 0:  # several processes stop together, at a log step
            stop.agree()
          if step % t.checkpoint_every == 0 or step == t.steps or stop.signal:
            _check_finite(recent, ckpts)
            recent = []
            ckpts.save(step, state, {"step": step, "data_seed": d.seed})
          if stop.signal:
            break
      finally:
        trace.close()
        batches.close()
        bar.close()
        ckpts.wait()
        writer.flush()

    if stop.signal:
      writer.write(step, {"signal": stop.signal.name}, kind="stopped")
      log(f"{stop.signal.name}: stopped at step {step} of {t.steps}; checkpoint saved in "
          f"{ckpts.directory / str(step)}. Run the same command again (same --workdir) to resume.")
      return {"step": step, "params": n_params, "stopped_by": stop.signal.name}

    result = {"step": step, "params": n_params,
              "loop_seconds": time.perf_counter() - loop_start,
              "tokens_per_sec_mean": total_tokens / max(total_train_s, 1e-9),
              "target_tokens_seen": total_tokens, "train_seconds": total_train_s,
              "input_wait_seconds": total_wait_s,
              "steps_run": step - start}
    if t.get("paper_model") and interval_step_s:  # median: compiles and evals excluded
      result["budget"] = budget.budget_report(
          t.paper_model, step_seconds=float(np.median(interval_step_s)), steps=t.steps,
          n_devices=jax.device_count(), peak_flops_per_device=t.peak_flops_per_device)
      log(budget.summary(result["budget"]))
    if t.final_eval and step >= t.steps:
      result.update(final_evaluation(config, workdir, model, ckpts, state, tokenizer, val_batches,
                                     writer, log, run_info=dict(result)))
    return result
  finally:  # also when a step diverges or the final evaluation fails
    writer.close()
    ckpts.close()


def final_evaluation(config, workdir, model, ckpts, state, tokenizer, val_batches, writer, log,
                     run_info=None):
  """Averages the last checkpoints (Section 6.1), then dev perplexity and BLEU of the splits
  in config.train.final_eval_splits (sacreBLEU; also the paper's tokenized BLEU if
  config.train.paper_bleu), each translated into WORKDIR/{split}.hyp."""
  t = config.train
  lead = jax.process_index() == 0
  steps = ckpts.steps()[-t.average_last:] if t.average_last > 1 else [ckpts.steps()[-1]]
  # Every process gets the whole parameters (restored replicated), then decodes on its own
  # first device: simple, and the same on 1 device and on a pod.
  if len(steps) > 1:
    params = ckpt_lib.average_params(ckpts, steps, sharding_lib.replicated_like(state))
  else:
    params = sharding_lib.to_host(state.params)
  ckpt_lib.save_params(workdir / "final_params", params)
  params = jax.device_put(params, jax.local_devices()[0])
  log(f"final model: average of checkpoints {steps}" if len(steps) > 1 else
      f"final model: checkpoint {steps[0]}")
  val = evaluate.perplexity(model, params, val_batches.epoch(0))
  result = {**(run_info or {}), "averaged_steps": steps,
            "params_path": str(workdir / "final_params"), "val_ppl": val["ppl"],
            **{k: v for k, v in evaluate.decode_options(config).items()
               if k in ("beam_size", "alpha", "word_reward")}}
  # Every process decodes the same sentences; only process 0 writes translations and reports.
  result.update(evaluate.final_bleu(config, model, params, tokenizer,
                                    workdir if lead else None, log))
  # BLEU only where test was scored: a NaN would be invalid JSON and a TensorBoard warning.
  writer.write(steps[-1], {"ppl": val["ppl"], **({"bleu": result["test_bleu"]}
                                                 if "test_bleu" in result else {})}, kind="final")
  if lead:
    (workdir / "final.json").write_text(json.dumps(result, indent=2) + "\n")
  log(f"dev perplexity {val['ppl']:.2f}")
  return result
