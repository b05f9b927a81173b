"""One experiment run, recorded: train, score the dev set, write WORKDIR/result.json.

`run(config, workdir)` is what `transformer-jax run` and every run of a sweep do: train (or
resume) to config.train.steps, translate the dev set with the last checkpoint (Table 3 uses no
checkpoint averaging), and write result.json, the record `compare` reads. result.json is
written last and atomically, so its presence means the run finished.

result.json holds: the resolved config; provenance (git commit and whether the tree was dirty,
versions of python/jax/jaxlib/flax/optax/orbax/sacrebleu/sentencepiece, the devices); sha256
hashes of the training data files and of the vocabulary; parameter count; steps; wall time
(seconds, summed over resumed segments) and target tokens per second; final dev perplexity (per
wordpiece) and dev sacreBLEU with its signature, the lowercased Moses-tokenized BLEU of the
Multi30k literature (dev_bleu_lc_moses) and, when config.train.paper_bleu, the paper's
tokenized compound-split BLEU; the dev translations and references (dev.hyp, dev.ref); for
Table 3 rows, the paper's numbers ('row', 'paper'); and 'run', what the run is:
  {"name": "h=4,p_drop=0.3/seed1", "group": "h=4,p_drop=0.3",
   "overrides": {"model.h": 4, "model.p_drop": 0.3}, "seed": 1,
   "sweep": "experiments/example_sweep.py", "metadata": {...}}
copied from WORKDIR/run.json, which a launcher writes before it starts the run (spec.Run.spec);
a `transformer-jax run` outside a sweep records its own --config.* overrides the same way, with
"sweep": null (see `run_spec`).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import pathlib
import platform
import statistics
import subprocess
from typing import Any, Callable

import jax
import ml_collections

from transformer_jax import checkpoint as ckpt_lib
from transformer_jax import config as config_lib
from transformer_jax import data as data_lib
from transformer_jax import evaluate
from transformer_jax import train as train_lib
from transformer_jax.experiments import spec as spec_lib
from transformer_jax.model import Transformer
from transformer_jax.tokenizer import Tokenizer

RESULT = spec_lib.RESULT
DEV_HYP = "dev.hyp"
DEV_REF = "dev.ref"
_PACKAGES = ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "sacrebleu", "sentencepiece",
             "numpy")


def sha256(path: str | pathlib.Path) -> str:
  """Hex sha256 of a file's bytes."""
  digest = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      digest.update(block)
  return digest.hexdigest()


def provenance() -> dict[str, Any]:
  """Git commit of the source tree (None outside a git checkout), package versions, devices."""
  root = pathlib.Path(__file__).resolve().parents[1]
  commit, dirty = None, None
  try:
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                            text=True, check=True).stdout.strip()
    dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                                cwd=root, capture_output=True, text=True, check=True).stdout)
  except (OSError, subprocess.CalledProcessError):
    pass
  versions = {"python": platform.python_version()}
  for name in _PACKAGES:
    try:
      versions[name] = importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
      versions[name] = None
  devices = jax.devices()
  return {"git_commit": commit, "git_dirty": dirty, "versions": versions,
          "devices": {"platform": devices[0].platform, "kind": devices[0].device_kind,
                      "count": len(devices)}}


def _read_metrics(workdir: pathlib.Path) -> list[dict]:
  path = workdir / "metrics.jsonl"
  if not path.exists():
    return []
  return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def timing(records: list[dict]) -> dict[str, float]:
  """Wall time and throughput of a (possibly resumed) run from its metrics.jsonl records.

  Each training segment starts with an 'info' record; its wall time runs to the segment's last
  record. Returns {'train_wall_seconds', 'tokens_per_sec_median'} (the median over the 'train'
  records' tokens_per_sec, the steady rate; NaN without train records).
  """
  segments, start, last = 0.0, None, None
  for record in records:
    if record["kind"] == "info":
      if start is not None:
        segments += last - start
      start = last = record["time"]
    elif start is not None:
      last = record["time"]
  if start is not None:
    segments += last - start
  rates = [r["tokens_per_sec"] for r in records if r["kind"] == "train"]
  return {"train_wall_seconds": segments,
          "tokens_per_sec_median": statistics.median(rates) if rates else float("nan")}


def dev_loss_curve(records: list[dict]) -> list[tuple[int, float]]:
  """(step, dev NLL per wordpiece) of every 'val' record, the newest value for each step."""
  curve = {r["step"]: r["nll"] for r in records if r["kind"] == "val"}
  return sorted(curve.items())


def run_spec(workdir: str | pathlib.Path, config: ml_collections.ConfigDict,
             override_keys: list[str]) -> dict[str, Any]:
  """The 'run' entry of a record: WORKDIR/run.json if a launcher wrote one, else built from
  the command line's --config.KEY overrides (`override_keys`, values read from `config`;
  the seed keys are the seed, not overrides).

  Raises:
    ConfigError: run.json is not a JSON object.
  """
  path = pathlib.Path(workdir) / spec_lib.SPEC
  if path.exists():
    try:
      spec = json.loads(path.read_text())
    except json.JSONDecodeError as e:
      raise config_lib.ConfigError(f"{path} is not valid JSON ({e}); it holds the run's "
                                   "spec, written by the sweep that started it") from None
    if not isinstance(spec, dict):
      raise config_lib.ConfigError(f"{path} must hold a JSON object (the run's spec)")
    return spec
  overrides = {}
  for key in dict.fromkeys(override_keys):
    if key not in spec_lib.SEED_KEYS:
      section, name = key.split(".", 1)
      value = config[section][name]
      overrides[key] = list(value) if isinstance(value, tuple) else value
  group = spec_lib.name_of(overrides)
  seed = config.train.seed
  return {"name": f"{group}/seed{seed}", "group": group, "overrides": overrides, "seed": seed,
          "sweep": None, "metadata": {}}


def run(config: ml_collections.ConfigDict, workdir: str | pathlib.Path,
        log: Callable[[str], None] = print, spec: dict[str, Any] | None = None) -> dict[str, Any]:
  """Trains (or resumes) `config` in `workdir`, scores the dev set, writes result.json.

  Args:
    spec: the record's 'run' entry (see run_spec); None = run_spec(workdir, config, []).

  Returns:
    The result record, or train()'s result if training was stopped by a signal (no record is
    written then; running again resumes).

  Raises:
    ConfigError, DataError, DivergenceError, WorkdirError, WorkdirBusy: as train.train; the
      workdir stays held (train.claim) from training to result.json.
  """
  workdir = pathlib.Path(workdir)
  spec = run_spec(workdir, config, []) if spec is None else spec
  with train_lib.claim(config, workdir) as workdir:
    return _run(config, workdir, log, spec)


def _run(config: ml_collections.ConfigDict, workdir: pathlib.Path,
         log: Callable[[str], None], spec: dict[str, Any]) -> dict[str, Any]:
  trained = train_lib.train(config, workdir, log)
  if "stopped_by" in trained:
    return trained
  t = config.train
  model = Transformer(config_lib.model_config(config))
  tokenizer = Tokenizer.load(workdir / "spm.model")
  ckpts = ckpt_lib.Checkpoints(workdir / "checkpoints", keep=t.keep_checkpoints)
  step = ckpts.latest_step()
  state, _ = ckpts.restore(step, train_lib.abstract_state(config, model))
  ckpts.close()

  dev = data_lib.read_split(config, "val", log=log)
  hyps = evaluate.translate_lines(model, state.params, tokenizer, dev.src,
                                  **evaluate.decode_options(config))
  # The references are kept beside the translations, so `compare` can run its significance
  # test anywhere the run directories are copied to.
  (workdir / DEV_HYP).write_text("".join(h + "\n" for h in hyps), encoding="utf-8")
  (workdir / DEV_REF).write_text("".join(r + "\n" for r in dev.tgt), encoding="utf-8")
  bleu = evaluate.score_translations(hyps, dev.tgt, paper_bleu=t.get("paper_bleu", False),
                                     lang=config.data.tgt_lang)
  records = _read_metrics(workdir)
  val = [r for r in records if r["kind"] == "val" and r["step"] == step]
  if val:
    ppl = val[-1]["ppl"]
  else:  # the last evaluation is missing (e.g. metrics.jsonl was cut): compute it
    enc = data_lib.encode_parallel(dev, tokenizer, config.data.max_len)
    batches = data_lib.BucketedBatches(enc, tokens_per_batch=config.data.tokens_per_batch,
                                       boundaries=config.data.bucket_boundaries, seed=0,
                                       shuffle=False)
    ppl = evaluate.perplexity(model, state.params, batches.epoch(0))["ppl"]
  if config.data.get("source", "text") == "text":
    data_id = {"train_" + side: sha256(path) for side, path in
               zip(("src", "tgt"), config_lib.split_paths(config, "train"))}
  else:
    data_id = {"tfds_name": config.data.tfds_name, "tfds_data_dir": config.data.tfds_data_dir}
  data_id["dev_ref"] = sha256(workdir / DEV_REF)
  paper = config.get("table3")
  result = {
      "row": paper.row if paper else None,
      "seed": config.train.seed,
      "steps": step,
      "params": trained["params"],
      **timing(records),
      "dev_ppl": ppl,
      "dev_bleu": bleu["sacrebleu"],
      "dev_bleu_signature": bleu["sacrebleu_signature"],
      "dev_brevity_penalty": bleu["brevity_penalty"],
      **{f"dev_{k}": v for k, v in bleu.items() if k.startswith(("bleu_lc_moses", "bleu_tok"))},
      "dev_source": f"{dev.src_path} / {dev.tgt_path}", "dev_hyp": DEV_HYP, "dev_ref": DEV_REF,
      "dev_pairs": len(dev.src),
      "dev_loss_curve": dev_loss_curve(records),
      "data_sha256": data_id,
      "vocab_sha256": sha256(workdir / "spm.model"),
      "paper": paper.to_dict() if paper else None,
      "run": spec,
      **provenance(),
      "config": json.loads(config.to_json_best_effort()),
  }
  if jax.process_index() == 0:  # hyperparameters and final metrics for TensorBoard's HParams
    from transformer_jax.experiments import hparams
    hparams.write_record(workdir, result)
  tmp = workdir / (RESULT + ".tmp")
  tmp.write_text(json.dumps(result, indent=2) + "\n")
  tmp.replace(workdir / RESULT)
  log(f"{result['row'] or workdir}: dev perplexity {ppl:.2f}, dev sacreBLEU "
      f"{bleu['sacrebleu']:.2f} ({bleu['sacrebleu_signature']}); record in {workdir / RESULT}")
  return result
