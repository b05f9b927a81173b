r"""The prepared accelerator check: install offline, then every figure issue 15 asks, < 6 min.

  python3 benchmarks/device_check.py --fetch_wheels   # here, with network: wheels into .whl/
  python3 benchmarks/device_check.py                  # on the accelerator machine (no network)
  python3 benchmarks/device_check.py --cpu            # all of it on the CPU, at small sizes

Run from the repository root. Sections, each in a child process (a failure, a hang or device
memory held stays in that section), in this order, each given what is left of --budget_s:
  install     `pip install --no-index --find-links .whl -e .`: nothing is downloaded; the
              build backend (BUILD_WHEELS) comes from .whl/ into pip's isolated build
              environment, so the image's own setuptools does not matter; the image's own
              jax/flax/optax/orbax must lie in pyproject.toml's ranges (each is printed against
              its range; if the install refuses, it is redone with --no-deps and the mismatches
              named). --cpu: a --dry-run in this environment (also needs --fetch_wheels first).
  jax_step    the base model's train step on the paper's batch of 25000 target tokens (390 x
              64; halved until it fits) in float32 and bfloat16 (model.attention_impl 'auto',
              plus one other path in bfloat16 for comparison), as target tokens/s and MFU
              against a bfloat16 matmul rate measured in the same section (train_step.py).
  main_job    `transformer-jax train --config=configs/multi30k.py` end to end: wall time and
              test2016 BLEU (--cpu: 20 steps in 2 batch shapes,
              40 test sentences); cut at its time share, it stops with a checkpoint
              (SIGTERM) and says how far it got, and a rerun on the same machine resumes it.
  decode      beam-4 sentences/s of the main job's model, with its parameters (decode_speed.py).
  torch_step  the same train step in PyTorch eager and under torch.compile on the same device
              (torch_peer.py), float32 and bfloat16 autocast.
Prints one table at the end and writes it as JSON to $OUT/device_check.json (when OUT is set),
with the main job's final.json beside it.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import shutil
import subprocess
import sys
import threading
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
SECTIONS = ("install", "jax_step", "main_job", "decode", "torch_step")
# Time caps per section (seconds) on the accelerator; each gets min(cap, what is left).
CAPS = {"install": 45, "jax_step": 100, "main_job": 140, "decode": 40, "torch_step": 90}
# Packages the H200 image lacks that the core needs (pure-Python wheels; their own needs are
# there), and the build backend of pyproject.toml's [build-system] for the offline editable
# install: with --no-build-isolation a 3.11 venv's setuptools 65 failed here ("invalid command
# 'bdist_wheel'"), so the build runs isolated, from these wheels (packaging: wheel's need).
BUILD_WHEELS = ["setuptools==84.2.1", "wheel==0.48.0", "packaging==26.4"]
WHEELS = ["ml-collections==1.1.0", "tensorboardX==2.6.5", "sacremoses==0.2.0", *BUILD_WHEELS]
CPU_SIZE = dict(vocab=8000, d_model=256, h=4, n_layers=3, d_ff=1024, batch=8, length=32)
WORK = pathlib.Path(os.environ.get("DEVICE_CHECK_DIR", "/tmp/device_check"))


def fetch_wheels() -> None:
  """Downloads WHEELS for the accelerator machine's Python 3.12 into .whl/ (device README)."""
  platforms = [f"--platform={p}" for p in ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64",
                                           "manylinux2014_x86_64")]
  subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                  "--python-version=3.12", "--implementation=cp", *platforms, "-d",
                  str(ROOT / ".whl"), *WHEELS], check=True)
  print("carry .whl/ with the call:", sorted(p.name for p in (ROOT / ".whl").glob("*.whl")))


def _ranges() -> list[str]:
  """'name installed range ok|OUTSIDE|missing' for every core requirement."""
  import importlib.metadata as md
  import tomllib
  from packaging.requirements import Requirement
  lines = []
  for text in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]:
    req = Requirement(text)
    try:
      version = md.version(req.name)
    except md.PackageNotFoundError:
      version = None
    state = "missing" if version is None else (
        "ok" if req.specifier.contains(version, prereleases=True) else "OUTSIDE")
    lines.append(f"{req.name} {version} {req.specifier} {state}")
  return lines


def section_install(args) -> dict:
  pip = [sys.executable, "-m", "pip", "install", "--no-index",
         "--find-links", str(ROOT / ".whl"), "-e", str(ROOT)]
  if args.cpu:
    pip.insert(4, "--dry-run")
  done = subprocess.run(pip, capture_output=True, text=True)
  result = {"offline_install": "ok" if done.returncode == 0 else "refused"}
  if done.returncode:
    print(done.stdout[-2000:], done.stderr[-2000:], sep="\n")
    if not args.cpu:  # install what travelled, then the project without resolving its needs
      backend = tuple(w.split("==")[0] + "-" for w in BUILD_WHEELS)  # stays out of the image
      wheels = [str(p) for p in (ROOT / ".whl").glob("*.whl") if not p.name.startswith(backend)]
      subprocess.run([*pip[:4], "--no-deps", *wheels], check=False)
      subprocess.run([*pip, "--no-deps"], check=True)
      result["offline_install"] = "refused; installed with --no-deps"
  result["ranges"] = _ranges()
  print("\n".join(result["ranges"]))
  return result


def _is_oom(e: Exception) -> bool:
  return any(s in str(e) for s in ("RESOURCE_EXHAUSTED", "out of memory", "Out of memory"))


def section_jax_step(args) -> dict:
  import jax
  import numpy as np
  import train_step
  from transformer_jax.attention import choose_implementation

  platform = jax.default_backend()
  n = 1024 if args.cpu else 8192
  peak = {d: train_step.matmul_peak(n, d) for d in ("bfloat16", "float32")}
  out = {"device": jax.devices()[0].device_kind, "jax": jax.__version__,
         "matmul_tflops": {d: round(v / 1e12, 3) for d, v in peak.items()}, "runs": []}
  print(f"{out['device']}: {n}^3 matmul {out['matmul_tflops']} TFLOP/s", flush=True)
  size = dict(CPU_SIZE if args.cpu else train_step.SIZES["paper"])
  bf16_auto, _ = choose_implementation("auto", platform=platform, dtype="bfloat16", d_k=64,
                                       d_v=64, p_drop_attn=0.0)
  other = "xla" if bf16_auto == "einsum" else "einsum"
  repeats = 3 if args.cpu else 10
  last = 0.0  # seconds the previous variant took, compile included
  for dtype, impl in (("float32", "auto"), ("bfloat16", "auto"), ("bfloat16", other)):
    if time.monotonic() + 1.2 * last > args.deadline:
      out["runs"].append({"dtype": dtype, "attention": impl, "skipped": "time"})
      continue
    began = time.monotonic()
    while True:
      try:
        cfg, n_params, step = train_step.jax_runner("paper", impl, dtype, size=size)
        step()  # one more warm-up after the compile
        break
      except Exception as e:  # noqa: BLE001  device memory: halve the batch
        if not _is_oom(e) or size["batch"] <= 1:
          raise
        size["batch"] //= 2
        print(f"out of memory: batch halved to {size['batch']} x {size['length']}", flush=True)
    times = []
    for _ in range(repeats):
      start = time.perf_counter()
      step()
      times.append(time.perf_counter() - start)
    t = float(np.median(times))
    tokens = size["batch"] * size["length"]
    flops = train_step.model_flops(cfg, size["batch"], size["length"], size["length"])
    used = choose_implementation(impl, platform=platform, dtype=dtype, d_k=cfg.d_k, d_v=cfg.d_v,
                                 p_drop_attn=0.0)[0]
    run = {"dtype": dtype, "attention": f"{impl} -> {used}", "batch": f"{size['batch']}x"
           f"{size['length']}", "params_M": round(n_params / 1e6, 2), "step_ms": round(t * 1e3, 1),
           "tokens_per_s": round(tokens / t), "mfu_vs_bf16": round(flops / t / peak["bfloat16"], 4)}
    out["runs"].append(run)
    print(run, flush=True)
    last = time.monotonic() - began
  return out


def section_torch_step(args) -> dict:
  try:
    import torch
  except ImportError:
    return {"skipped": "torch is not installed"}
  import numpy as np
  import torch_peer
  import train_step
  from transformer_jax.config import TransformerConfig

  device = "cuda" if torch.cuda.is_available() and not args.cpu else "cpu"
  size = dict(CPU_SIZE if args.cpu else train_step.SIZES["paper"])
  cfg = TransformerConfig(vocab_size=size["vocab"], d_model=size["d_model"], h=size["h"],
                          d_k=size["d_model"] // size["h"], d_v=size["d_model"] // size["h"],
                          n_layers=size["n_layers"], d_ff=size["d_ff"])
  flops = train_step.model_flops(cfg, size["batch"], size["length"], size["length"])
  out = {"torch": torch.__version__, "device": device, "runs": []}
  last = 0.0
  for compiled, dtype in ((False, "float32"), (False, "bfloat16"), (True, "bfloat16"),
                          (True, "float32")):
    if time.monotonic() + max(1.2 * last, 60.0 if compiled else 10.0) > args.deadline:
      out["runs"].append({"compile": compiled, "dtype": dtype, "skipped": "time"})
      continue
    began = time.monotonic()
    n_params, step = torch_peer.runner(size, device=device, dtype=dtype, compile_model=compiled,
                                       warmup=3 if compiled else 2)
    times = []
    for _ in range(3 if args.cpu else 10):
      start = time.perf_counter()
      step()
      times.append(time.perf_counter() - start)
    t = float(np.median(times))
    run = {"compile": compiled, "dtype": dtype, "step_ms": round(t * 1e3, 1),
           "tokens_per_s": round(size["batch"] * size["length"] / t),
           "mfu_vs_bf16": round(flops / t / args.peak, 4) if args.peak else None}
    out["runs"].append(run)
    print(run, flush=True)
    last = time.monotonic() - began
  return out


def _main_job_config_args(args) -> list[str]:
  if not args.cpu:
    return []
  assets = ROOT / "transformer_jax" / "assets" / "multi30k"
  small = WORK / "data"
  small.mkdir(parents=True, exist_ok=True)
  # Two batch shapes instead of 35: on a CPU each new shape is a compile of tens of seconds.
  over = ["--config.train.steps=20", "--config.train.log_every=10",
          "--config.train.eval_every=20", "--config.train.checkpoint_every=10",
          "--config.train.average_last=2", "--config.train.keep_checkpoints=2",
          "--config.data.bucket_boundaries=(64, 128)"]
  for split, name, n in (("val", "val", 100), ("test", "test2016", 40)):
    for side, lang in (("src", "en"), ("tgt", "de")):
      lines = (assets / f"{name}.{lang}").read_text(encoding="utf-8").splitlines()[:n]
      (small / f"{name}.{lang}").write_text("\n".join(lines) + "\n", encoding="utf-8")
      over.append(f"--config.data.{split}_{side}={small / f'{name}.{lang}'}")
  return over


def section_main_job(args) -> dict:
  workdir = WORK / "multi30k"
  metrics = workdir / "metrics.jsonl"
  if args.cpu:
    shutil.rmtree(workdir, ignore_errors=True)
  # On the accelerator a rerun resumes a cut run from its checkpoint (same command).
  resumed = max((json.loads(line)["step"] for line in metrics.read_text().splitlines()),
                default=0) if metrics.exists() else 0
  cmd = [sys.executable, "-m", "transformer_jax.main", "train", "--config=configs/multi30k.py",
         f"--workdir={workdir}", *_main_job_config_args(args)]
  print("+", " ".join(cmd), flush=True)
  start = time.monotonic()
  proc = subprocess.Popen(cmd, cwd=ROOT)
  try:
    proc.wait(timeout=max(args.deadline - time.monotonic() - 15, 10))
  except subprocess.TimeoutExpired:
    proc.terminate()  # SIGTERM: the step finishes, a checkpoint is written, exit 143
    try:
      proc.wait(timeout=25)  # inside the section's share, which ends 30 s after this deadline
    except subprocess.TimeoutExpired:
      proc.kill()
      proc.wait()
  out = {"wall_s": round(time.monotonic() - start, 1), "returncode": proc.returncode,
         "workdir": str(workdir), "resumed_after_step": resumed}
  final = workdir / "final.json"
  if final.exists():
    result = json.loads(final.read_text())
    out.update({k: result.get(k) for k in ("test_bleu", "val_ppl", "step", "tokens_per_sec_mean",
                                           "train_seconds")})
  if metrics.exists():
    steps = [json.loads(line)["step"] for line in metrics.read_text().splitlines()]
    out["last_logged_step"] = max(steps) if steps else 0
  return out


def section_decode(args) -> dict:
  import decode_speed
  m = decode_speed.measure(WORK / "multi30k", n_lines=20 if args.cpu else 200, beam_size=4,
                           modes=(True,))
  return {"params": m["source"], "lines": m["lines"],
          "sentences_per_s": round(m["rates"][True], 2)}


def _child(name: str, args) -> dict:
  """Runs section `name` in a child process within the time left; its last line is the result."""
  left = args.deadline - time.monotonic()
  cap = min(CAPS[name] * (3 if args.cpu else 1), left)
  if cap < 10:
    return {"skipped": f"time ({left:.0f} s left)"}
  cmd = [sys.executable, __file__, f"--section={name}", f"--deadline={time.monotonic() + cap}",
         f"--peak={args.peak}"] + (["--cpu"] if args.cpu else [])
  start = time.monotonic()
  proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, cwd=ROOT)
  killer = threading.Timer(cap + 30, proc.kill)  # a hang ends with the section's share
  killer.start()
  found = []
  for line in proc.stdout:  # echoed as it comes, so a cut run still shows how far it got
    if line.startswith("RESULT "):
      found.append(json.loads(line[7:]))
    else:
      print(line, end="", flush=True)
  proc.wait()
  killer.cancel()
  result = found[-1] if found else {"error": f"exit status {proc.returncode}"}
  result["section_s"] = round(time.monotonic() - start, 1)
  return result


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--cpu", action="store_true", help="everything on the CPU, small sizes")
  parser.add_argument("--fetch_wheels", action="store_true", help="download .whl/ and stop")
  parser.add_argument("--sections", default=",".join(SECTIONS), help="which, in this order")
  parser.add_argument("--budget_s", type=float, default=None,
                      help="total wall-time budget, s (default 300; --cpu 1800)")
  parser.add_argument("--section", help=argparse.SUPPRESS)  # child: run one section
  parser.add_argument("--deadline", type=float, default=0.0, help=argparse.SUPPRESS)
  parser.add_argument("--peak", type=float, default=0.0, help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.fetch_wheels:
    return fetch_wheels()
  if args.cpu:
    os.environ["JAX_PLATFORMS"] = "cpu"
  else:  # a rerun on the same machine reuses the first run's XLA compilations
    os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", str(WORK / "jax_cache"))
  if args.section:
    result = globals()[f"section_{args.section}"](args)
    print("RESULT " + json.dumps(result), flush=True)
    return None
  start = time.monotonic()
  args.deadline = start + (args.budget_s or (1800.0 if args.cpu else 300.0))
  WORK.mkdir(parents=True, exist_ok=True)
  # Importable even where the install fell through (the children inherit it).
  os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT),
                                                           os.environ.get("PYTHONPATH")]))
  results = {"mode": "cpu" if args.cpu else "accelerator"}
  for name in args.sections.split(","):
    print(f"== {name} ({args.deadline - time.monotonic():.0f} s left)", flush=True)
    results[name] = _child(name, args)
    if name == "jax_step" and "matmul_tflops" in results[name]:
      args.peak = results[name]["matmul_tflops"]["bfloat16"] * 1e12
  results["wall_s"] = round(time.monotonic() - start, 1)
  print("== summary")
  print(json.dumps(results, indent=1))
  if os.environ.get("OUT"):
    out = pathlib.Path(os.environ["OUT"])
    (out / "device_check.json").write_text(json.dumps(results, indent=1) + "\n")
    final = WORK / "multi30k" / "final.json"
    if final.exists():
      shutil.copy(final, out / "main_job_final.json")
  return None


if __name__ == "__main__":
  main()
