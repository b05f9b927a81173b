"""Training (paper Section 5): pure jitted steps and the loop that logs, evaluates and checkpoints.

`train_step(state, batch, rng)` and `eval_step(params, batch)` are pure; `train(config, workdir)`
owns all side effects: vocabulary, data, checkpoints, metrics.jsonl, TensorBoard events and the
progress bar. Starting `train` again with the same workdir resumes from the latest checkpoint at
the same step and the same position in the data.
"""

from __future__ import annotations

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

from transformer_jax import budget
from transformer_jax import checkpoint as ckpt_lib
from transformer_jax import config as config_lib
from transformer_jax import data as data_lib
from transformer_jax import evaluate
from transformer_jax import metrics_writer
from transformer_jax import optim
from transformer_jax import workdir as workdir_lib
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
               tx: optax.GradientTransformation, eps_ls: float) -> tuple[TrainState, dict]:
  """One Adam step on the label-smoothed loss per non-PAD target token (Section 5.3, 5.4).

  Args:
    state: current TrainState.
    batch: int32 'src' [B, S], 'tgt_in' [B, T], 'tgt_out' [B, T].
    rng: base PRNG key; the step number is folded in, so dropout differs per step and a
      resumed run draws the same masks.

  Returns:
    (new state, metrics of float32 scalars: loss, nll and tokens as sums; grad_norm).
  """
  dropout_rng = jax.random.fold_in(rng, state.step)

  def loss_fn(params):
    logits = model.apply({"params": params}, batch["src"], batch["tgt_in"], deterministic=False,
                         rngs={"dropout": dropout_rng})
    loss, nll, tokens = label_smoothed_cross_entropy(logits, batch["tgt_out"], eps_ls)
    return loss / jnp.maximum(tokens, 1.0), (loss, nll, tokens)

  grads, (loss, nll, tokens) = jax.grad(loss_fn, has_aux=True)(state.params)
  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  metrics = {"loss": loss, "nll": nll, "tokens": tokens, "grad_norm": optax.tree.norm(grads)}
  return TrainState(state.step + 1, params, opt_state), metrics


def create_state(model: Transformer, tx: optax.GradientTransformation, rng: jax.Array,
                 batch: Batch) -> TrainState:
  """Initial TrainState (Glorot weights, embeddings N(0, d_model^-0.5)), unboxed."""
  variables = model.init(rng, batch["src"], batch["tgt_in"])
  params = nn.meta.unbox(variables["params"])
  return TrainState(jnp.int32(0), params, tx.init(params))


def abstract_state(config: ml_collections.ConfigDict, model: Transformer) -> TrainState:
  """Shapes and dtypes (jax.ShapeDtypeStruct leaves) of the TrainState that `train` writes for
  `config`, without computing it: the target structure for restoring a checkpoint."""
  tx, _ = optim.make_optimizer(config)
  dummy = {"src": jnp.ones((1, 8), jnp.int32), "tgt_in": jnp.ones((1, 8), jnp.int32)}
  return jax.eval_shape(lambda: create_state(model, tx, jax.random.PRNGKey(0), dummy))


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
  step (what a preempted VM or Ctrl-C sends); a second one interrupts at once."""

  def __init__(self):
    self.signal: signal.Signals | None = None
    self._previous = {}

  def _handle(self, signum, frame):
    if self.signal is not None:
      raise KeyboardInterrupt
    self.signal = signal.Signals(signum)

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
    ConfigError: data.vocab_size does not fit the data or the vocabulary already in `workdir`.
  """
  d = config.data
  splits = ["train", "val"]
  if config.train.final_eval and "test" in config.train.get("final_eval_splits", ("test",)):
    splits.append("test")
  texts = {split: data_lib.read_split(config, split, log) for split in splits}
  train_text = texts["train"]
  in_memory = train_text.src_path.startswith("tfds:")  # TFDS text has no file to train on
  try:
    tokenizer = Tokenizer.load_or_train(
        workdir / "spm.model", [train_text.src_path, train_text.tgt_path], d.vocab_size,
        max_sentences=d.vocab_sample, seed=d.seed,
        sentences=train_text.src + train_text.tgt if in_memory else None)
  except ValueError as e:  # the vocabulary size does not fit the data or the saved vocabulary
    raise config_lib.ConfigError(f"config.{e}" if str(e).startswith("data.") else str(e)) from e
  stats = {}
  encoded = {}
  for split in ("train", "val"):
    text = texts[split]
    enc = data_lib.encode_parallel(text, tokenizer, d.max_len)
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
  """
  config_lib.validate(config)
  workdir = workdir_lib.prepare(workdir)
  workdir_lib.check_config(workdir, config, allow_change=allow_config_change, log=log)
  (workdir / "config.json").write_text(config.to_json_best_effort(indent=2) + "\n")
  t = config.train
  d = config.data

  tokenizer, train_data, val_data, stats = load_data(config, workdir, log)
  mcfg = config_lib.model_config(config)
  model = Transformer(mcfg)
  tx, schedule = optim.make_optimizer(config)
  train_batches = data_lib.BucketedBatches(train_data, tokens_per_batch=d.tokens_per_batch,
                                           boundaries=d.bucket_boundaries, seed=d.seed,
                                           batch_multiple=d.batch_multiple)
  val_batches = data_lib.BucketedBatches(val_data, tokens_per_batch=d.tokens_per_batch,
                                         boundaries=d.bucket_boundaries, seed=d.seed,
                                         shuffle=False)
  stats["train_batches"] = train_batches.padding_stats()
  (workdir / "data_stats.json").write_text(json.dumps(stats, indent=2) + "\n")
  pad = stats["train_batches"]
  log(f"train batches: {pad['num_batches']} per epoch in {pad['num_shapes']} shapes; padding "
      f"{pad['tgt_pad_fraction']:.1%} of target and {pad['src_pad_fraction']:.1%} of source "
      "positions")

  init_rng = jax.random.PRNGKey(t.seed)
  # Dropout masks are most of the random bits; the XLA RngBitGenerator ('rbg') makes them
  # several times faster than threefry on CPU.
  dropout_rng = jax.random.key(t.seed + 1, impl=t.dropout_prng)
  first = next(train_batches.epoch(0))
  state = jax.jit(functools.partial(create_state, model, tx))(init_rng, first)
  n_params = count_params(state.params)
  log(f"model: {n_params:,} parameters ({n_params / 1e6:.2f}M)")

  ckpts = ckpt_lib.Checkpoints(workdir / "checkpoints", keep=t.keep_checkpoints)
  start, state, meta = ckpts.restore_latest(state, log)
  start = start or 0
  if start:
    if meta.get("data_seed") != d.seed:
      log(f"warning: checkpoint {start} was trained with data.seed={meta.get('data_seed')}, "
          f"resuming with data.seed={d.seed}: the batch order changes from here on")
    log(f"resumed from {ckpts.directory / str(start)} at step {start}")
  step_fn = jax.jit(functools.partial(train_step, model=model, tx=tx, eps_ls=t.eps_ls),
                    donate_argnums=(0,))
  writer = metrics_writer.MetricsWriter(workdir)
  writer.write(start, {"params": n_params, **{f"pad_{k}": v for k, v in pad.items()}}, kind="info")

  pending: list[dict] = []
  tokens_since, time_since = 0.0, time.perf_counter()
  loop_start, total_tokens, total_train_s = time.perf_counter(), 0.0, 0.0
  interval_step_s: list[float] = []  # seconds per step in each log interval
  bar = tqdm.tqdm(total=t.steps, initial=start, desc="train", unit="step", dynamic_ncols=True,
                  mininterval=2.0)
  step = start
  recent: list[tuple[int, dict]] = []  # (step, metrics) not yet checked for NaN/Inf
  batches = _prefetch(train_batches.iterate(start))
  with _StopRequest() as stop:
    try:
      for step in range(start + 1, t.steps + 1):
        batch = next(batches)
        tokens_since += float(np.count_nonzero(batch["tgt_out"]))
        state, metrics = step_fn(state, batch, dropout_rng)
        pending.append(metrics)
        recent.append((step, metrics))
        bar.update(1)
        if step % t.log_every == 0 or step == t.steps:
          _check_finite(recent, ckpts)
          recent = []
          summed = jax.tree_util.tree_map(lambda *x: float(np.sum(x)), *jax.device_get(pending))
          elapsed = time.perf_counter() - time_since
          record = {"loss": summed["loss"] / summed["tokens"],
                    "nll": summed["nll"] / summed["tokens"],
                    "grad_norm": summed["grad_norm"] / len(pending),
                    "learning_rate": float(schedule(step - 1)),
                    "tokens_per_sec": tokens_since / elapsed,
                    "epoch": step / train_batches.num_batches}
          writer.write(step, record, kind="train")
          total_tokens, total_train_s = total_tokens + tokens_since, total_train_s + elapsed
          interval_step_s.append(elapsed / len(pending))
          bar.set_postfix(loss=f"{record['loss']:.3f}", tok_s=f"{record['tokens_per_sec']:.0f}")
          pending, tokens_since, time_since = [], 0.0, time.perf_counter()
        if step % t.eval_every == 0 or step == t.steps:
          val = evaluate.perplexity(model, state.params, val_batches.epoch(0))
          writer.write(step, {"ppl": val["ppl"], "nll": val["nll"]}, kind="val")
          bar.write(f"step {step}: dev perplexity {val['ppl']:.2f}")
          time_since = time.perf_counter()  # evaluation time is not training throughput
        if step % t.checkpoint_every == 0 or step == t.steps or stop.signal:
          _check_finite(recent, ckpts)
          recent = []
          ckpts.save(step, state, {"step": step, "data_seed": d.seed})
        if stop.signal:
          break
    finally:
      batches.close()
      bar.close()
      ckpts.wait()
      writer.flush()

  if stop.signal:
    writer.write(step, {"signal": stop.signal.name}, kind="stopped")
    writer.close()
    ckpts.close()
    log(f"{stop.signal.name}: stopped at step {step} of {t.steps}; checkpoint saved in "
        f"{ckpts.directory / str(step)}. Run the same command again (same --workdir) to resume.")
    return {"step": step, "params": n_params, "stopped_by": stop.signal.name}

  result = {"step": step, "params": n_params,
            "loop_seconds": time.perf_counter() - loop_start,
            "tokens_per_sec_mean": total_tokens / max(total_train_s, 1e-9),
            "target_tokens_seen": total_tokens, "train_seconds": total_train_s,
            "steps_run": step - start}
  if t.get("paper_model") and interval_step_s:  # median: compiles and evals excluded
    result["budget"] = budget.budget_report(
        t.paper_model, step_seconds=float(np.median(interval_step_s)), steps=t.steps,
        n_devices=jax.device_count(), peak_flops_per_device=t.peak_flops_per_device)
    log(budget.summary(result["budget"]))
  if t.final_eval and step >= t.steps:
    result.update(final_evaluation(config, workdir, model, ckpts, state, tokenizer, val_batches,
                                   writer, log, run_info=dict(result)))
  writer.close()
  ckpts.close()
  return result


def final_evaluation(config, workdir, model, ckpts, state, tokenizer, val_batches, writer, log,
                     run_info=None):
  """Averages the last checkpoints (Section 6.1), then dev perplexity and BLEU of the splits
  in config.train.final_eval_splits (sacreBLEU; also the paper's tokenized BLEU if
  config.train.paper_bleu), each translated into WORKDIR/{split}.hyp."""
  t, dc = config.train, config.decode
  steps = ckpts.steps()[-t.average_last:] if t.average_last > 1 else [ckpts.steps()[-1]]
  params = ckpt_lib.average_params(ckpts, steps, state) if len(steps) > 1 else state.params
  ckpt_lib.save_params(workdir / "final_params", params)
  log(f"final model: average of checkpoints {steps}" if len(steps) > 1 else
      f"final model: checkpoint {steps[0]}")
  val = evaluate.perplexity(model, params, val_batches.epoch(0))
  result = {**(run_info or {}), "averaged_steps": steps,
            "params_path": str(workdir / "final_params"), "val_ppl": val["ppl"],
            "beam_size": dc.beam_size, "alpha": dc.alpha}
  result.update(evaluate.final_bleu(config, model, params, tokenizer, workdir, log))
  writer.write(steps[-1], {"ppl": val["ppl"], "bleu": result.get("test_bleu", float("nan"))},
               kind="final")
  (workdir / "final.json").write_text(json.dumps(result, indent=2) + "\n")
  log(f"dev perplexity {val['ppl']:.2f}")
  return result
