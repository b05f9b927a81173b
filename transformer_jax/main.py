"""The `transformer-jax` command line.

  transformer-jax train     --config=configs/multi30k.py --workdir=DIR [--config.train.steps=200]
  transformer-jax translate --workdir=DIR [--input=FILE] [--output=FILE] [--beam_size=4]
  transformer-jax evaluate  --workdir=DIR --src=FILE --ref=FILE
  transformer-jax params    --config=configs/base.py [--config.data.vocab_size=37000]
  transformer-jax average   --workdir=DIR [--last=5] [--output=DIR/average_last5]

Configs are ml-collections files; any field can be overridden with --config.SECTION.KEY=VALUE.
`translate` and `evaluate` read the config, vocabulary and parameters saved in the workdir: the
final (checkpoint-averaged) parameters if training finished, else the latest checkpoint, or
the checkpoint given by --step, or the parameters saved in --params (e.g. by `average`).
A `train` stopped by SIGTERM or SIGINT saves a checkpoint and exits with status 128 + signal.
"""

from __future__ import annotations

import json
import os
import pathlib
import sys

import jax
import ml_collections
from absl import flags
from ml_collections import config_flags

COMMANDS = ("train", "translate", "evaluate", "params", "average")
FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Config file (ml-collections), e.g. "
                                "configs/multi30k.py.", lock_config=True)
flags.DEFINE_string("workdir", None, "Run directory: vocabulary, checkpoints, logs.")
flags.DEFINE_string("input", None, "translate: source sentences, one per line (default stdin).")
flags.DEFINE_string("output", None, "translate: where translations go (default stdout); "
                    "average: where the parameters go (default WORKDIR/average_lastN).")
flags.DEFINE_string("src", None, "evaluate: source sentences, one per line.")
flags.DEFINE_string("ref", None, "evaluate: reference translations, line-aligned with --src.")
flags.DEFINE_integer("beam_size", None, "Beam size (default: the config's, 4); 1 is greedy.")
flags.DEFINE_float("alpha", None, "Length penalty (default: the config's, 0.6).")
flags.DEFINE_integer("step", None, "Use this checkpoint step instead of the final parameters.")
flags.DEFINE_string("params", None, "Use the parameters saved in this directory (by `average` "
                    "or training's final_params) instead of the final parameters.")
flags.DEFINE_integer("last", 5, "average: how many of the newest checkpoints to average "
                     "(Section 6.1: 5 for base, 20 for big).")


def _usage() -> str:
  return __doc__.split("\n\n")[1]


def _load_workdir(workdir: pathlib.Path):
  """(config, model, tokenizer) of a training workdir."""
  from transformer_jax import config as config_lib
  from transformer_jax.model import Transformer
  from transformer_jax.tokenizer import Tokenizer

  config_path = workdir / "config.json"
  if not config_path.exists():
    raise SystemExit(f"error: {config_path} not found; is --workdir={workdir} a training run?")
  config = ml_collections.ConfigDict(json.loads(config_path.read_text()))
  model = Transformer(config_lib.model_config(config))
  return config, model, Tokenizer.load(workdir / "spm.model")


def _abstract_state(config, model):
  """Shapes and dtypes of the TrainState that training writes, without computing it, placed
  whole on this process's first device: a checkpoint from any mesh restores onto it."""
  from transformer_jax import optim
  from transformer_jax import train as train_lib
  tx, _ = optim.make_optimizer(config)
  dummy = {"src": jax.numpy.ones((1, 8), "int32"), "tgt_in": jax.numpy.ones((1, 8), "int32")}
  shapes = jax.eval_shape(lambda: train_lib.create_state(model, tx, jax.random.PRNGKey(0), dummy))
  device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  return jax.tree_util.tree_map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=device),
                                shapes)


def _load_run(workdir: pathlib.Path):
  """(config, model, tokenizer, params, description) of a trained workdir."""
  from transformer_jax import checkpoint as ckpt_lib

  config, model, tokenizer = _load_workdir(workdir)
  abstract = _abstract_state(config, model)
  if FLAGS.params:
    path = pathlib.Path(FLAGS.params)
    if not path.is_dir():
      raise SystemExit(f"error: --params={path} is not a directory of saved parameters")
    return config, model, tokenizer, ckpt_lib.load_params(path, abstract.params), str(path)
  final = workdir / "final_params"
  if FLAGS.step is None and final.exists():
    return config, model, tokenizer, ckpt_lib.load_params(final, abstract.params), str(final)
  ckpts = ckpt_lib.Checkpoints(workdir / "checkpoints")
  step = FLAGS.step if FLAGS.step is not None else ckpts.latest_step()
  if step is None or step not in ckpts.steps():
    raise SystemExit(f"error: no checkpoint {'' if step is None else step} in "
                     f"{ckpts.directory} (have {ckpts.steps()})")
  state, _ = ckpts.restore(step, abstract)
  return config, model, tokenizer, state.params, f"{ckpts.directory}/{step}"


def _decode_options(config) -> dict:
  dc = config.decode
  return {"beam_size": FLAGS.beam_size or dc.beam_size,
          "alpha": dc.alpha if FLAGS.alpha is None else FLAGS.alpha,
          "max_extra_len": dc.max_extra_len, "batch_size": dc.batch_size,
          "max_src_len": config.model.max_len if config.model.positions == "learned" else 0}


def _require(name: str) -> str:
  value = getattr(FLAGS, name)
  if not value:
    raise SystemExit(f"error: --{name} is required for this command\n{_usage()}")
  return value


def cmd_train() -> None:
  from transformer_jax import train as train_lib
  if FLAGS.config is None:
    raise SystemExit(f"error: --config is required\n{_usage()}")
  result = train_lib.train(FLAGS.config, pathlib.Path(_require("workdir")))
  print(json.dumps(result, indent=2))
  if "stopped_by" in result:
    import signal
    raise SystemExit(128 + signal.Signals[result["stopped_by"]].value)


def cmd_translate() -> None:
  from transformer_jax import evaluate
  config, model, tokenizer, params, source = _load_run(pathlib.Path(_require("workdir")))
  if FLAGS.input:
    lines = pathlib.Path(FLAGS.input).read_text(encoding="utf-8").splitlines()
  else:
    lines = sys.stdin.read().splitlines()
  print(f"translating {len(lines)} lines with {source}", file=sys.stderr)
  hyps = evaluate.translate_lines(model, params, tokenizer, lines, **_decode_options(config))
  text = "".join(h + "\n" for h in hyps)
  if FLAGS.output:
    pathlib.Path(FLAGS.output).write_text(text, encoding="utf-8")
  else:
    sys.stdout.write(text)


def cmd_evaluate() -> None:
  from transformer_jax import data as data_lib
  from transformer_jax import evaluate
  workdir = pathlib.Path(_require("workdir"))
  config, model, tokenizer, params, source = _load_run(workdir)
  text = data_lib.read_parallel(_require("src"), _require("ref"))
  enc = data_lib.encode_parallel(text, tokenizer, 0)
  batches = data_lib.BucketedBatches(enc, tokens_per_batch=config.data.tokens_per_batch,
                                     boundaries=sorted(set(config.data.bucket_boundaries) |
                                                       {max(map(len, enc.src + enc.tgt))}),
                                     seed=0, shuffle=False)
  ppl = evaluate.perplexity(model, params, batches.epoch(0))
  options = _decode_options(config)
  hyps = evaluate.translate_lines(model, params, tokenizer, text.src, **options)
  score, signature = evaluate.bleu(hyps, text.tgt)
  result = {"src": str(FLAGS.src), "ref": str(FLAGS.ref), "params": source, "bleu": score,
            "bleu_signature": signature, "ppl": ppl["ppl"], "nll": ppl["nll"],
            "target_tokens": ppl["tokens"], "pairs": len(text.src),
            "blank_dropped": text.n_blank_dropped, **options}
  out = workdir / f"eval_{pathlib.Path(FLAGS.src).name}.json"
  out.write_text(json.dumps(result, indent=2) + "\n")
  print(f"BLEU = {score:.2f}  {signature}")
  print(f"perplexity per wordpiece = {ppl['ppl']:.3f}  ({ppl['tokens']} target tokens)")
  print(f"written to {out}")


def cmd_params() -> None:
  from transformer_jax import config as config_lib
  from transformer_jax.model import Transformer, count_params
  if FLAGS.config is None:
    raise SystemExit(f"error: --config is required\n{_usage()}")
  mcfg = config_lib.model_config(FLAGS.config)
  dummy = jax.numpy.ones((1, 8), "int32")
  shapes = jax.eval_shape(lambda: Transformer(mcfg).init(jax.random.PRNGKey(0), dummy, dummy))
  n = count_params(shapes["params"])
  print(f"{n:,} parameters ({n / 1e6:.2f}M) with vocab_size={mcfg.vocab_size}, "
        f"N={mcfg.n_layers}, d_model={mcfg.d_model}, d_ff={mcfg.d_ff}, h={mcfg.h}, "
        f"d_k={mcfg.d_k}, d_v={mcfg.d_v}")


_MALLOC_TUNABLE = "glibc.malloc.hugetlb=1"


def _reexec_with_huge_pages() -> None:
  """Restarts this command with glibc's malloc backed by transparent huge pages (Linux only).

  XLA on CPU allocates its large buffers afresh every step; with 4 KiB pages each allocation
  costs tens of thousands of page faults. `glibc.malloc.hugetlb=1` (glibc >= 2.35; ignored by
  older ones) cuts them about 10x and made the Multi30k train step about 15% faster here
  (benchmarks/RESULTS.md). The tunable must be set before the process starts, hence the
  re-exec. TRANSFORMER_JAX_HUGE_PAGES=0 turns this off.
  """
  tunables = os.environ.get("GLIBC_TUNABLES", "")
  if (not sys.platform.startswith("linux") or "glibc.malloc.hugetlb" in tunables
      or os.environ.get("TRANSFORMER_JAX_HUGE_PAGES", "1") == "0"):
    return
  env = dict(os.environ, GLIBC_TUNABLES=f"{tunables}:{_MALLOC_TUNABLE}".lstrip(":"))
  os.execve(sys.executable, [sys.executable, "-m", "transformer_jax.main", *sys.argv[1:]], env)


def cmd_average() -> None:
  """Writes the mean parameters of the newest --last checkpoints (Section 6.1)."""
  from transformer_jax import checkpoint as ckpt_lib
  workdir = pathlib.Path(_require("workdir"))
  if FLAGS.last < 1:
    raise SystemExit(f"error: --last must be >= 1, got {FLAGS.last}")
  config, model, _ = _load_workdir(workdir)
  ckpts = ckpt_lib.Checkpoints(workdir / "checkpoints")
  steps = ckpts.steps()[-FLAGS.last:]
  if len(steps) < FLAGS.last:
    raise SystemExit(f"error: --last={FLAGS.last} but {ckpts.directory} has only {len(steps)} "
                     f"checkpoints {steps}; config.train.keep_checkpoints decides how many stay")
  out = pathlib.Path(FLAGS.output or workdir / f"average_last{FLAGS.last}")
  ckpt_lib.save_params(out, ckpt_lib.average_params(ckpts, steps, _abstract_state(config, model)))
  print(f"averaged checkpoints {steps} into {out}; use it with "
        f"`transformer-jax translate --workdir={workdir} --params={out}`")


def main(argv: list[str] | None = None) -> None:
  if argv is None and len(sys.argv) > 1 and sys.argv[1] in ("train", "translate", "evaluate"):
    _reexec_with_huge_pages()
  argv = list(sys.argv if argv is None else argv)
  if len(argv) < 2 or argv[1] not in COMMANDS:
    print(_usage(), file=sys.stderr)
    raise SystemExit(2)
  command = argv.pop(1)
  sys.argv = list(argv)  # ml_collections reads --config.* overrides from sys.argv
  overrides = [a.split("=")[0] for a in argv if a.startswith("--config.")]
  try:
    FLAGS(argv)
  except flags.Error as e:
    raise SystemExit(f"error: {e}\n{_usage()}")
  except (AttributeError, KeyError) as e:
    # ml_collections reports an override of a key the config does not have this way.
    key = str(e).strip("\"'")
    raise SystemExit(f"error: unknown config key '{key}' in {' '.join(overrides)}; see the "
                     "config file for the keys it has")
  {"train": cmd_train, "translate": cmd_translate, "evaluate": cmd_evaluate,
   "params": cmd_params, "average": cmd_average}[command]()


if __name__ == "__main__":
  main()
