"""The `transformer-jax` command line.

  transformer-jax train     --config=configs/multi30k.py --workdir=DIR [--config.train.steps=200]
                            [--allow_config_change]
  transformer-jax translate --workdir=DIR [--input=FILE] [--output=FILE] [--beam_size=4]
  transformer-jax evaluate  --workdir=DIR --src=FILE --ref=FILE
  transformer-jax params    --config=configs/base.py [--config.data.vocab_size=37000]
  transformer-jax average   --workdir=DIR [--last=5] [--step=S] [--output=DIR/average_last5]
  transformer-jax rows      (the Table 3 rows of configs/table3.py, with the paper's numbers)
  transformer-jax run       --config=configs/table3.py:ROW[,scale=mini][,seed=K] --workdir=DIR
  transformer-jax sweep     --config=FILE[:ARG] --root=DIR [--seeds=1] [--only=NAME,GLOB,...]
                            [--dry-run] [--launcher=local|ray] [--parallel=N] [--nopin_cpus]
                            [--ray_address=auto] [--run_resources='{"GPU": 1}'] [--config.K=V]
  transformer-jax compare   DIR [DIR...] [--output=DIR/report] [--reference=NAME]

Configs are ml-collections files; any field can be overridden with --config.SECTION.KEY=VALUE.
`translate` and `evaluate` read the config, vocabulary and parameters saved in the workdir: the
final (checkpoint-averaged) parameters if training finished, else the latest checkpoint, or
the checkpoint given by --step, or the parameters saved in --params (e.g. by `average`).
A `train` stopped by SIGTERM or SIGINT saves a checkpoint and exits with status 128 + signal.
`run` is `train` followed by dev-set scoring into WORKDIR/result.json; `sweep` runs the
get_sweep(ARG) of a config file (points x seeds) under --root, here or on Ray, skipping
finished runs and resuming interrupted ones (transformer_jax/experiments/); `compare`
groups the result.json files under DIRs by their overrides (seeds pooled) and writes a report
(Markdown, HTML, plots) of each group against the reference group (the one without overrides,
or --reference), with the paper's columns for a Table 3 sweep.
Bad input (config file, key or value, data file, workdir) ends with one "error: ..." line naming
the key, file (and line) or path, and status 1. A workdir has one writer: `train` or `run` on a
workdir that a live process is training in stops at once with "error: workdir DIR is in use by
pid P on host H ..." and status 75 (EX_TEMPFAIL), leaving that run alone; a lock left by a dead
process is ignored (workdir.hold). A sweep reports such a run as claimed, not failed.
"""

from __future__ import annotations

import json
import os
import pathlib
import sys

import ml_collections
from absl import flags
from ml_collections import config_flags

from transformer_jax import config_file

COMMANDS = ("train", "translate", "evaluate", "params", "average", "rows", "run", "sweep",
            "compare")
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
flags.DEFINE_float("word_reward", None, "Nats per output token added to a finished beam "
                   "hypothesis's score, >= 0 (default: the config's decode.word_reward, 0 = "
                   "the paper).")
flags.DEFINE_integer("step", None, "Use this checkpoint step instead of the final parameters; "
                     "average: the newest checkpoint to include (default: the latest).")
flags.DEFINE_string("params", None, "Use the parameters saved in this directory (by `average` "
                    "or training's final_params) instead of the final parameters.")
flags.DEFINE_string("only", "", "sweep: names or shell globs of the points to run, e.g. "
                    "'A-*,C-N8' or 'h=4,p_drop=0.3' (the reference point without overrides, if "
                    "any, is always kept).")
flags.DEFINE_string("rows", "", "sweep: the same as --only (kept for Table 3's old commands).")
flags.DEFINE_string("root", None, "sweep: directory holding one workdir per run (NAME/seedK).")
flags.DEFINE_integer("seeds", 1, "sweep: seeds per point (0..seeds-1).")
flags.DEFINE_enum("scale", None, ["paper", "mini"], "sweep: adds scale=SCALE to the config "
                  "argument (kept for Table 3's old commands: configs/table3.py:scale=mini).")
flags.DEFINE_integer("parallel", None, "sweep: runs at a time (local: default 1; ray: in "
                     "flight at once, default as many as the cluster fits; a local Ray "
                     "instance gets this many runs' CPUs).")
flags.DEFINE_bool("pin_cpus", True, "sweep --launcher=local --parallel=N>1: pin each run to "
                  "its own 1/N of this machine's CPUs (--nopin_cpus: all runs share them all).")
flags.DEFINE_bool("dry_run", False, "sweep: print one command per unfinished run; run nothing. "
                  "Also spelled --dry-run.")
flags.DEFINE_enum("launcher", "local", ["local", "ray"], "sweep: a process pool on this "
                  "machine, or one Ray task per run.")
flags.DEFINE_string("ray_address", None, "sweep --launcher=ray: the cluster to use ('auto' = "
                    "the one this node belongs to, or HOST:PORT); default a local Ray instance.")
flags.DEFINE_string("run_resources", '{"CPU": 1}', "sweep --launcher=ray: the resources each "
                    'run\'s task declares, as JSON, e.g. \'{"TPU": 4}\' or \'{"GPU": 1}\'.')
flags.DEFINE_integer("max_retries", 3, "sweep --launcher=ray: retries of a run whose process, "
                     "worker or node died; it resumes from its checkpoint.")
flags.DEFINE_bool("allow_config_change", False, "train: resume a workdir whose saved config "
                  "differs in model.* or data.* keys, as long as no parameter changes shape.")
flags.DEFINE_string("reference", None, "compare: the group to compare against (default: the "
                    "group without overrides, e.g. Table 3's base).")
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
  from transformer_jax import train as train_lib
  return train_lib.abstract_state(config, model)


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
  """The config's decode options with --beam_size, --alpha and --word_reward applied."""
  from transformer_jax import evaluate
  if FLAGS.word_reward is not None and not 0 <= FLAGS.word_reward < float("inf"):
    raise SystemExit(f"error: --word_reward must be a finite number >= 0, got {FLAGS.word_reward}")
  options = evaluate.decode_options(config)
  flags_given = {"beam_size": FLAGS.beam_size or None, "alpha": FLAGS.alpha,
                 "word_reward": FLAGS.word_reward}
  options.update({k: v for k, v in flags_given.items() if v is not None})
  return options


def _require(name: str) -> str:
  value = getattr(FLAGS, name)
  if not value:
    raise SystemExit(f"error: --{name} is required for this command\n{_usage()}")
  return value


def cmd_train() -> None:
  from transformer_jax import train as train_lib
  if FLAGS.config is None:
    raise SystemExit(f"error: --config is required\n{_usage()}")
  result = train_lib.train(FLAGS.config, pathlib.Path(_require("workdir")),
                           allow_config_change=FLAGS.allow_config_change)
  print(json.dumps(result, indent=2))
  if "stopped_by" in result:
    import signal
    raise SystemExit(128 + signal.Signals[result["stopped_by"]].value)


def cmd_translate() -> None:
  from transformer_jax import data as data_lib
  from transformer_jax import evaluate
  config, model, tokenizer, params, source = _load_run(pathlib.Path(_require("workdir")))
  if FLAGS.input:
    lines = data_lib.read_lines(FLAGS.input, allow_empty=True)
  else:  # decoded as strictly as a file, so bad UTF-8 is reported with its line number
    raw = sys.stdin.buffer.read() if hasattr(sys.stdin, "buffer") else sys.stdin.read().encode()
    lines = data_lib.decode_lines(raw, "<stdin>")
  print(f"translating {len(lines)} lines with {source}", file=sys.stderr)
  options = _decode_options(config)
  hyps = evaluate.translate_lines(model, params, tokenizer, lines, **options)
  _report_truncated(hyps.truncated, options)
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
  # Perplexity is of the text the model was trained on; BLEU's references stay as written.
  enc = data_lib.encode_parallel(data_lib.model_text(config, text), tokenizer, 0)
  batches = data_lib.BucketedBatches(enc, tokens_per_batch=config.data.tokens_per_batch,
                                     boundaries=sorted(set(config.data.bucket_boundaries) |
                                                       {max(map(len, enc.src + enc.tgt))}),
                                     seed=0, shuffle=False)
  ppl = evaluate.perplexity(model, params, batches.epoch(0))
  options = _decode_options(config)
  hyps = evaluate.translate_lines(model, params, tokenizer, text.src, **options)
  _report_truncated(hyps.truncated, options)
  scores = evaluate.score_translations(hyps, text.tgt, lang=config.data.tgt_lang,
                                      paper_bleu=config.train.get("paper_bleu", False))
  score, signature = scores["sacrebleu"], scores["sacrebleu_signature"]
  tokenized = {k: v for k, v in scores.items() if k.startswith(("bleu_lc_moses", "bleu_tok"))}
  result = {"src": str(FLAGS.src), "ref": str(FLAGS.ref), "params": source, "bleu": score,
            "bleu_signature": signature, **tokenized,
            "brevity_penalty": scores["brevity_penalty"],
            "hyp_ref_length_ratio": scores["hyp_ref_length_ratio"],
            "ppl": ppl["ppl"], "nll": ppl["nll"],
            "target_tokens": ppl["tokens"], "pairs": len(text.src),
            "blank_dropped": text.n_blank_dropped, "src_truncated": hyps.truncated, **options}
  out = workdir / f"eval_{pathlib.Path(FLAGS.src).name}.json"
  out.write_text(json.dumps(result, indent=2) + "\n")
  hyp_out = out.with_suffix(".hyp")  # the translations scored, one per source line
  hyp_out.write_text("".join(h + "\n" for h in hyps), encoding="utf-8")
  for key, label in evaluate.SCORE_LABELS.items():  # each metric on its own labelled line
    if key in scores:
      print(f"{label} = {scores[key]:.2f}  {scores[key + '_signature']}")
  print(f"brevity penalty = {scores['brevity_penalty']:.3f}  (output/reference length "
        f"{scores['hyp_ref_length_ratio']:.3f}, sacreBLEU's 13a tokens)")
  print(f"perplexity per wordpiece = {ppl['ppl']:.3f}  ({ppl['tokens']} target tokens)")
  print(f"written to {out}")
  print(f"translations written to {hyp_out}")


def _report_truncated(n: int, options: dict) -> None:
  if n:
    print(f"warning: {n} input line(s) longer than {options['max_src_len']} tokens (EOS "
          "included) were cut to that length before translating: config.data.max_len is the "
          "longest source the model was trained on (see config.source_limit)", file=sys.stderr)


def cmd_params() -> None:
  from transformer_jax import config as config_lib
  from transformer_jax.model import count_params, param_shapes
  if FLAGS.config is None:
    raise SystemExit(f"error: --config is required\n{_usage()}")
  config_lib.validate(FLAGS.config)
  mcfg = config_lib.model_config(FLAGS.config)
  n = count_params(param_shapes(mcfg))
  print(f"{n:,} parameters ({n / 1e6:.2f}M) with vocab_size={mcfg.vocab_size}, "
        f"N={mcfg.n_layers}, d_model={mcfg.d_model}, d_ff={mcfg.d_ff}, h={mcfg.h}, "
        f"d_k={mcfg.d_k}, d_v={mcfg.d_v}")


_MALLOC_TUNABLE = "glibc.malloc.hugetlb=1"


def _reexec_with_huge_pages(argv: list[str] | None = None) -> None:
  """Restarts this command with glibc's malloc backed by transparent huge pages (Linux only).

  XLA on CPU allocates its large buffers afresh every step; with 4 KiB pages each allocation
  costs tens of thousands of page faults. `glibc.malloc.hugetlb=1` (glibc >= 2.35; ignored by
  older ones) cuts them about 10x and made the Multi30k train step about 15% faster here
  (benchmarks/RESULTS.md). The tunable must be set before the process starts, hence the
  re-exec. TRANSFORMER_JAX_HUGE_PAGES=0 turns this off.

  Args:
    argv: the command line to restart, program first (default: `python -m transformer_jax.main`
      with this process's arguments); benchmarks pass their own script's.
  """
  tunables = os.environ.get("GLIBC_TUNABLES", "")
  if (not sys.platform.startswith("linux") or "glibc.malloc.hugetlb" in tunables
      or os.environ.get("TRANSFORMER_JAX_HUGE_PAGES", "1") == "0"):
    return
  env = dict(os.environ, GLIBC_TUNABLES=f"{tunables}:{_MALLOC_TUNABLE}".lstrip(":"))
  if argv is None:
    argv = [sys.executable, "-m", "transformer_jax.main", *sys.argv[1:]]
  os.execve(argv[0], argv, env)


def cmd_average() -> None:
  """Writes the mean parameters of the newest --last checkpoints up to --step (Section 6.1).

  Eq. 3 does not depend on train.steps, so with --step=S this is exactly the final model an
  S-step run would have averaged (same seed and batches): a shorter run, scored without
  training it.
  """
  from transformer_jax import checkpoint as ckpt_lib
  workdir = pathlib.Path(_require("workdir"))
  if FLAGS.last < 1:
    raise SystemExit(f"error: --last must be >= 1, got {FLAGS.last}")
  config, model, _ = _load_workdir(workdir)
  ckpts = ckpt_lib.Checkpoints(workdir / "checkpoints")
  steps = ckpts.steps()
  if FLAGS.step is not None:
    if FLAGS.step not in steps:
      raise SystemExit(f"error: --step={FLAGS.step} is not a checkpoint in {ckpts.directory} "
                       f"(it has {steps})")
    steps = [s for s in steps if s <= FLAGS.step]
  steps = steps[-FLAGS.last:]
  if len(steps) < FLAGS.last:
    raise SystemExit(f"error: --last={FLAGS.last} but {ckpts.directory} has only {len(steps)} "
                     f"checkpoints {steps}"
                     f"{'' if FLAGS.step is None else f' up to --step={FLAGS.step}'}; "
                     "config.train.keep_checkpoints decides how many stay")
  suffix = "" if FLAGS.step is None else f"_step{FLAGS.step}"
  out = pathlib.Path(FLAGS.output or workdir / f"average_last{FLAGS.last}{suffix}")
  ckpt_lib.save_params(out, ckpt_lib.average_params(ckpts, steps, _abstract_state(config, model)))
  print(f"averaged checkpoints {steps} into {out}; use it with "
        f"`transformer-jax translate --workdir={workdir} --params={out}`")


def cmd_rows() -> None:
  from transformer_jax.experiments import table3
  print(f"{'row':<14} {'PPL':>5} {'BLEU':>5} {'params M':>8}  overrides of base")
  for row, (overrides, (ppl, bleu, params)) in table3.ROWS.items():
    changes = ", ".join(f"{k.split('.')[1]}={v}" for k, v in overrides.items())
    print(f"{row:<14} {ppl:>5.2f} {bleu:>5.1f} {'' if params is None else params:>8}  {changes}")


def cmd_run(override_keys: list[str]) -> None:
  from transformer_jax.experiments import record
  if FLAGS.config is None:
    raise SystemExit(f"error: --config is required\n{_usage()}")
  workdir = pathlib.Path(_require("workdir"))
  spec = record.run_spec(workdir, FLAGS.config, override_keys)
  result = record.run(FLAGS.config, workdir, spec=spec)
  if "stopped_by" in result:
    import signal
    raise SystemExit(128 + signal.Signals[result["stopped_by"]].value)


def cmd_sweep(config: str | None, extra_args: list[str]) -> None:
  from transformer_jax.experiments import launch, spec
  if not config:
    raise SystemExit(f"error: --config=FILE[:ARG] is required (a config file with get_sweep)\n"
                     f"{_usage()}")
  if FLAGS.scale:
    file, _, arg = config.partition(":")
    config = f"{file}:{','.join(p for p in (arg, f'scale={FLAGS.scale}') if p)}"
  try:
    resources = json.loads(FLAGS.run_resources)
    if not isinstance(resources, dict):
      raise ValueError("not a JSON object")
  except ValueError as e:
    raise SystemExit(f"error: --run_resources={FLAGS.run_resources!r} must be a JSON object "
                     f"like '{{\"GPU\": 1}}' ({e})")
  try:
    runs = spec.plan(config, root=_require("root"), seeds=FLAGS.seeds,
                     only=",".join(o for o in (FLAGS.only, FLAGS.rows) if o), extra_args=extra_args)
    if FLAGS.dry_run:
      for r in runs:
        print(("# finished: " if r.finished else "") + r.command())
      return
    if FLAGS.launcher == "ray":
      out = launch.ray_sweep(runs, address=FLAGS.ray_address, resources=resources,
                             parallel=FLAGS.parallel, max_retries=FLAGS.max_retries)
    else:
      out = launch.local(runs, parallel=FLAGS.parallel or 1, pin_cpus=FLAGS.pin_cpus)
  except spec.SpecError as e:
    raise SystemExit(f"error: {e}")
  print(f"sweep: {len(out['done'])} done, {len(out['skipped'])} skipped (finished before), "
        f"{len(out['claimed'])} skipped (claimed by another process), "
        f"{len(out['failed'])} failed; compare with: transformer-jax compare {FLAGS.root}")
  for r in out["failed"]:
    print(f"failed: {r.name}: see {r.workdir / 'run.log'}")
  if out["failed"]:
    raise SystemExit(1)


def _take_config_args(argv: list[str]) -> tuple[list[str], str | None, list[str]]:
  """(argv without them, the --config value, the --config.* flags) for `sweep`, whose config
  file is read by spec.plan (get_sweep), not by the config flag (get_config)."""
  rest, config, overrides = [], None, []
  args = iter(argv)
  for a in args:
    if a.startswith("--config="):
      config = a.split("=", 1)[1]
    elif a == "--config":
      config = next(args, None)
    elif a.startswith("--config."):
      overrides.append(a)
    else:
      rest.append(a)
  return rest, config, overrides


def cmd_compare(dirs: list[str]) -> None:
  from transformer_jax.experiments import compare
  from transformer_jax.experiments import compare_plots
  if not dirs:
    raise SystemExit(f"error: compare needs at least one directory of runs\n{_usage()}")
  output = FLAGS.output or str(pathlib.Path(dirs[0]) / "report")
  try:
    out = compare.compare(dirs, output, reference=FLAGS.reference)
  except (compare.ReportError, compare_plots.PlotsUnavailable) as e:
    raise SystemExit(f"error: {e}")
  print(out["markdown"].read_text(encoding="utf-8"))
  print(f"written: {out['markdown']}, {out['html']}")


def main(argv: list[str] | None = None) -> None:
  if argv is None and len(sys.argv) > 1 and sys.argv[1] in ("train", "translate", "evaluate",
                                                                   "run"):
    _reexec_with_huge_pages()
  argv = list(sys.argv if argv is None else argv)
  if len(argv) < 2 or argv[1] not in COMMANDS:
    print(_usage(), file=sys.stderr)
    raise SystemExit(2)
  command = argv.pop(1)
  argv = ["--dry_run" if a == "--dry-run" else a for a in argv]
  sweep_config, sweep_overrides = None, []
  if command == "sweep":
    argv, sweep_config, sweep_overrides = _take_config_args(argv)
  sys.argv = list(argv)  # ml_collections reads --config.* overrides from sys.argv
  overrides = [a.split("=")[0] for a in argv if a.startswith("--config.")]
  spec = config_file.spec_from_argv(argv)
  try:
    positional = FLAGS(argv)[1:]
  except Exception as e:  # a config file that does not load: named with its line
    if message := spec and config_file.problem(e, spec):
      raise SystemExit(f"error: {message}")
    if isinstance(e, flags.Error):
      raise SystemExit(f"error: {e}\n{_usage()}")
    if not isinstance(e, (AttributeError, KeyError)):
      raise
    # ml_collections reports an override of a key the config does not have this way.
    key = str(e).strip("\"'")
    named = [o for o in overrides if o.endswith(f".{key}")] or overrides
    raise SystemExit(f"error: unknown config key '{key}' in {' '.join(named)}; see the "
                     "config file (or config.default_config()) for the keys it has")
  if message := spec and config_file.problem(None, spec, FLAGS.config):
    raise SystemExit(f"error: {message}")
  from transformer_jax.config import ConfigError
  from transformer_jax.data import DataError
  from transformer_jax.train import DivergenceError
  from transformer_jax.workdir import EX_TEMPFAIL, WorkdirBusy, WorkdirError
  try:
    if command == "compare":
      return cmd_compare(positional)
    if command == "sweep":
      # --config.* overrides are passed on to every run of the sweep.
      return cmd_sweep(sweep_config, sweep_overrides)
    if command == "run":
      return cmd_run([o[len("--config."):] for o in overrides])
    {"train": cmd_train, "translate": cmd_translate, "evaluate": cmd_evaluate,
     "params": cmd_params, "average": cmd_average, "rows": cmd_rows}[command]()
  except WorkdirBusy as e:  # claimed by another run, not broken: a sweep skips it
    print(f"error: {e}", file=sys.stderr)
    raise SystemExit(EX_TEMPFAIL)
  except (ConfigError, DataError, WorkdirError, DivergenceError) as e:
    raise SystemExit(f"error: {e}")


if __name__ == "__main__":
  main()
