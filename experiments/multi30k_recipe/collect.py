"""Collects the recipe search's runs into a Markdown table (val only).

  python experiments/multi30k_recipe/collect.py ROOT [--out=ROOT/results.md]

For each ROOT/NAME with a val.hyp (written by the final evaluation, or by `translate` for a run
stopped early): the model sizes, data and train settings from config.json, the step reached,
the training loop's mean target tokens/s from metrics.jsonl (steps after the first 100, so the
XLA compiles of the first batch shapes are left out), val perplexity (final.json: of the
averaged model; else the last dev evaluation), and both val BLEUs recomputed here from val.hyp:
cased detokenized sacreBLEU and lowercased Moses-tokenized BLEU (transformer_jax.bleu), both
against the cased reference (a run trained on lowercased text, data.lowercase, loses its
capitals in the cased score; its vocab column says so).

A second table compares learning curves across vocabularies: val NLL per sentence (nats; the
per-wordpiece NLL of each dev evaluation times the val target wordpieces, EOS included, / 1014
sentences), by epoch, for each run and for the search's baseline, the main job as of commit
d38a3aa (benchmarks/multi30k_main_d38a3aa/, whose val target wordpiece count comes from its
eval_val_beam4.json).

A third table, and ROOT/frontier.png when matplotlib is installed (the `report` extra), put
val lc Moses BLEU against training compute for the runs that probed longer budgets (each
average of checkpoints up to step S scored on val: ROOT/NAME/eval_val*_stepS.json, and the
run's own end), with the default's two seeds at 1x. Compute is counted in the default's
training loops: S steps x the run's step time / (3400 x the default's step time), step times
measured side by side by benchmarks/train_step.py (STEP_COST); the target's val level is an
estimate (TARGET_VAL_LC).
"""

from __future__ import annotations

import argparse
import json
import pathlib

from transformer_jax import evaluate

REPO = pathlib.Path(__file__).resolve().parents[2]
VAL_REF = REPO / "transformer_jax/assets/multi30k/val.de"
MAIN_JOB = REPO / "benchmarks/multi30k_main_d38a3aa"

# A training step's time relative to the default's (beb7515: N 3+3, d_model 256, vocab 6000,
# 2048-token batches), by benchmarks/train_step.py size: means of two medians, the three sizes
# alternated in one run at commit 875d22f (benchmarks/RESULTS.md, "Compute of the budget
# probes"). The default's loop is DEFAULT_STEPS of them.
STEP_COST = {"small6k": 1.0, "small6k_1024": 0.505, "tiny8192_accum4": 1.677}
DEFAULT_STEPS = 3400
# The frontier's runs: the benchmark size of their step, and the curve each belongs to (p14x2
# continued p14).
FRONTIER = {
    "p12_main_vocab6k": ("small6k", "p12: the default, two seeds"),
    "p12_main_vocab6k_seed1": ("small6k", "p12: the default, two seeds"),
    "p14_main_batch1024": ("small6k_1024", "p14, p14x2: 1024-token batches"),
    "p14x2_main_batch1024": ("small6k_1024", "p14, p14x2: 1024-token batches"),
    "p17_main_drop02_x2": ("small6k", "p17: P_drop 0.2"),
    "p33_main_drop03_x265": ("small6k", "p33: P_drop 0.3"),
    "p37_tiny_literature": ("tiny8192_accum4", "p37: Wu et al.'s Tiny at their recipe"),
}
# 41.0 on test2016 plus the default's val-to-test2016 gap in lc Moses BLEU (p12's val 40.62,
# beb7515's fresh-clone test2016 38.96): an estimate of the val level the target needs.
TARGET_VAL_LC = 41.0 + (40.62 - 38.96)


def _records(path: pathlib.Path) -> list[dict]:
  if not path.exists():
    return []
  return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def row(run: pathlib.Path) -> dict:
  config = json.loads((run / "config.json").read_text())
  m, d, t, dc = config["model"], config["data"], config["train"], config["decode"]
  records = _records(run / "metrics.jsonl")
  train = [r for r in records if r.get("kind") == "train"]
  val = [r for r in records if r.get("kind") == "val"]
  final = json.loads((run / "final.json").read_text()) if (run / "final.json").exists() else {}
  tps = [r["tokens_per_sec"] for r in train if r["step"] > 100]
  hyps = (run / "val.hyp").read_text(encoding="utf-8").splitlines()
  refs = VAL_REF.read_text(encoding="utf-8").splitlines()
  scores = evaluate.score_translations(hyps, refs)
  vocab = (f"{d['vocab_size']}, BPE-dropout {d['bpe_dropout']} ({d['bpe_dropout_sides']})"
           if d.get("bpe_dropout") else d["vocab_size"])
  return {
      "name": run.name,
      "model": (f"N{m['n_layers']} d{m['d_model']} ff{m['d_ff']} h{m['h']} p{m['p_drop']}"
                + (f" attn{m['p_drop_attn']}" if m.get("p_drop_attn") else "")),
      "vocab": vocab if not d.get("lowercase") else f"{vocab}, lowercased text",
      "batch_tokens": d["tokens_per_batch"],
      "lr": f"{t['lr_scale']} x Eq.3, warmup {t['warmup_steps']}",
      "step": final.get("step", train[-1]["step"] if train else 0),
      "epoch": train[-1]["epoch"] if train else 0.0,
      "averaged": len(final.get("averaged_steps", [])) or None,
      "loop_seconds": final.get("loop_seconds"),
      # a resumed run's final.json times only its last process's steps
      "loop_steps": final.get("steps_run"),
      "tokens_per_sec": sum(tps) / len(tps) if tps else None,
      "val_ppl": final.get("val_ppl", val[-1]["ppl"] if val else None),
      "beam": f"{dc['beam_size']}/{dc['alpha']}",
      "val_sacrebleu": scores["sacrebleu"], "val_bleu_lc_moses": scores["bleu_lc_moses"],
      "sacrebleu_signature": scores["sacrebleu_signature"],
      "bleu_lc_moses_signature": scores["bleu_lc_moses_signature"],
  }


def curve(run: pathlib.Path, val_tokens: int) -> dict[int, tuple[float, float]]:
  """{step: (epoch, val NLL per sentence in nats)} of the dev evaluations in metrics.jsonl."""
  records = _records(run / "metrics.jsonl")
  epoch = {r["step"]: r["epoch"] for r in records if r.get("kind") == "train"}
  sentences = len(VAL_REF.read_text(encoding="utf-8").splitlines())
  return {r["step"]: (epoch.get(r["step"], float("nan")), r["nll"] * val_tokens / sentences)
          for r in records if r.get("kind") == "val"}


def val_tokens(run: pathlib.Path) -> int | None:
  """Val target wordpieces, EOS included, under the run's vocabulary.

  From the run's spm.model when it was kept, else from the `target_tokens` an `evaluate` of
  val recorded in the run's eval_val*.json; None when neither was kept.
  """
  if (run / "spm.model").exists():
    from transformer_jax.tokenizer import Tokenizer
    refs = VAL_REF.read_text(encoding="utf-8").splitlines()
    config = run / "config.json"
    if config.exists() and json.loads(config.read_text())["data"].get("lowercase"):
      refs = [r.lower() for r in refs]  # the text its dev perplexity was measured on
    return sum(len(x) + 1 for x in Tokenizer.load(run / "spm.model").encode_batch(refs))
  for path in sorted(run.glob("eval_val*.json")):
    record = json.loads(path.read_text())
    if record.get("ref", "").endswith("val.de") and "target_tokens" in record:
      return int(record["target_tokens"])
  return None


def frontier(root: pathlib.Path, rows: list[dict]) -> list[dict]:
  """Val BLEU against training compute for the FRONTIER runs under `root`.

  Returns one dict per scored point (run, its curve, step, compute in default loops, val lc
  Moses and cased sacreBLEU), sorted by run and step: the eval_val*_stepS.json averages scored
  along the way, and the run's end from `rows` (its val.hyp).
  """
  ends = {r["name"]: r for r in rows}
  points = []
  for name, (size, series) in FRONTIER.items():
    if name not in ends:
      continue
    scored = {}
    for path in (root / name).glob("eval_val*_step*.json"):
      record = json.loads(path.read_text())
      step = int(path.stem.rsplit("_step", 1)[1])
      scored[step] = (record["bleu_lc_moses"], record["bleu"])
    end = ends[name]
    scored[end["step"]] = (end["val_bleu_lc_moses"], end["val_sacrebleu"])
    for step, (lc, cased) in scored.items():
      points.append({"run": name, "series": series, "step": step,
                     "compute": step * STEP_COST[size] / DEFAULT_STEPS,
                     "val_bleu_lc_moses": lc, "val_sacrebleu": cased})
  return sorted(points, key=lambda p: (p["run"], p["step"]))


def plot_frontier(points: list[dict], path: pathlib.Path) -> pathlib.Path | None:
  """Writes the frontier's PNG to `path`; None (and nothing written) without matplotlib."""
  try:
    from transformer_jax.experiments.compare_plots import PlotsUnavailable, _pyplot, _save
    plt = _pyplot()
  except PlotsUnavailable:
    return None
  fig, ax = plt.subplots(figsize=(8, 5))
  for series in dict.fromkeys(p["series"] for p in points):
    xy = sorted((p["compute"], p["val_bleu_lc_moses"]) for p in points if p["series"] == series)
    ax.plot([x for x, _ in xy], [y for _, y in xy], "o-", label=series, markersize=4)
  ax.axhline(TARGET_VAL_LC, color="black", linestyle="--", linewidth=0.8)
  ax.annotate(f"the target's val level (about {TARGET_VAL_LC:.1f})", (1.0, TARGET_VAL_LC),
              textcoords="offset points", xytext=(2, 3), fontsize=8)
  ax.axvline(1.0, color="grey", linewidth=0.8)
  ax.set_xscale("log", base=2)
  ax.set_xticks([1, 1.5, 2, 3, 4], ["1", "1.5", "2", "3", "4"])
  ax.set_xlabel(f"training compute, in the default's training loops ({DEFAULT_STEPS} steps; "
                "log scale)")
  ax.set_ylabel("val lc Moses BLEU")
  ax.set_title("Multi30k val BLEU against training compute (issue 16's budget probes)",
               fontsize=10)
  ax.legend(fontsize=7, loc="lower right")
  return _save(plt, fig, path)


def _fmt(v, spec: str = "") -> str:
  return "" if v is None else format(v, spec)


def _loop(r: dict) -> str:
  """Loop seconds, with the steps they cover when the run was resumed (fewer than its steps)."""
  text = _fmt(r["loop_seconds"], ".0f")
  if text and r["loop_steps"] is not None and r["loop_steps"] < r["step"]:
    text += f" (last {r['loop_steps']} steps)"
  return text


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("root")
  parser.add_argument("--out")
  args = parser.parse_args()
  root = pathlib.Path(args.root)
  rows = [row(p.parent) for p in sorted(root.glob("*/val.hyp"))]
  lines = ["| run | model | vocab | batch tok | lr | step | epoch | averaged | loop s | tok/s "
           "| val PPL | beam/alpha | val sacreBLEU | val lc Moses BLEU |",
           "|" + "---|" * 14]
  for r in rows:
    lines.append(
        f"| {r['name']} | {r['model']} | {r['vocab']} | {r['batch_tokens']} | {r['lr']} | "
        f"{r['step']} | {r['epoch']:.1f} | {_fmt(r['averaged'])} | {_loop(r)} "
        f"| {_fmt(r['tokens_per_sec'], '.0f')} | {_fmt(r['val_ppl'], '.2f')} | {r['beam']} | "
        f"{r['val_sacrebleu']:.2f} | {r['val_bleu_lc_moses']:.2f} |")
  if rows:
    lines += ["", f"sacreBLEU: {rows[0]['sacrebleu_signature']}",
              f"lc Moses BLEU: {rows[0]['bleu_lc_moses_signature']}"]
  curves = {"baseline (main job at d38a3aa)": curve(MAIN_JOB, val_tokens(MAIN_JOB))}
  no_vocab = []
  for p in sorted(root.glob("*/metrics.jsonl")):
    tokens = val_tokens(p.parent)
    if tokens is None:
      no_vocab.append(p.parent.name)
    else:
      curves[p.parent.name] = curve(p.parent, tokens)
  lines += ["", "Val NLL per sentence (nats) by epoch, at each dev evaluation "
            "(step: epoch: NLL/sentence):", ""]
  for name, points in curves.items():
    lines.append(f"- {name}: " + ", ".join(f"{step}: {e:.1f}: {nll:.2f}"
                                            for step, (e, nll) in sorted(points.items())))
  if no_vocab:
    lines.append(f"- no curve (neither spm.model nor a val evaluation kept): {', '.join(no_vocab)}")
  out = pathlib.Path(args.out) if args.out else root / "results.md"
  points = frontier(root, rows)
  if points:
    lines += ["", "Val BLEU against training compute, in the default's training loops "
              f"(collect.py's STEP_COST; the target's val level: about {TARGET_VAL_LC:.1f} lc):",
              "", "| run | step | compute | val lc Moses BLEU | val sacreBLEU |",
              "|---|---|---|---|---|"]
    lines += [f"| {p['run']} | {p['step']} | {p['compute']:.2f} | "
              f"{p['val_bleu_lc_moses']:.2f} | {p['val_sacrebleu']:.2f} |" for p in points]
    png = plot_frontier(points, out.with_name("frontier.png"))
    lines += ["", f"Plot: {png.name}" if png else "No plot: matplotlib is not installed."]
  text = "\n".join(lines) + "\n"
  out.write_text(text)
  (out.with_suffix(".json")).write_text(json.dumps(rows, indent=2) + "\n")
  print(text, end="")


if __name__ == "__main__":
  main()
