"""Shared fixtures: a tiny Transformer config on a slice of the real Multi30k data, and one
tiny training run (trained once per session) for the tests that need a trained workdir.

The tiny config is configs/multi30k.py with the sizes cut down (d_model 32, N 2, 256-piece
vocabulary, 400 training pairs) and coarse length buckets, so a run compiles only a few shapes;
300 steps take about 15 s on a 2-core CPU, after which beam search gives non-empty German.
"""

from __future__ import annotations

import io
import pathlib
import shutil
import sys

import ml_collections
import pytest

from transformer_jax import config as config_lib

ROOT = pathlib.Path(__file__).resolve().parents[1]
MULTI30K = ROOT / "transformer_jax" / "assets" / "multi30k"
N_TRAIN, N_VAL, N_TEST = 400, 40, 40  # lines taken from the top of each Multi30k split
TINY_STEPS = 300  # steps of the session run: enough to leave the unigram plateau (~15 s)


def _head(src: pathlib.Path, dst: pathlib.Path, n: int) -> str:
  lines = src.read_text(encoding="utf-8").splitlines()[:n]
  dst.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
  return str(dst)


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> dict[str, str]:
  """Paths of the first N_TRAIN / N_VAL / N_TEST lines of Multi30k EN->DE, keyed like
  config.data ('train_src', 'train_tgt', 'val_src', ...)."""
  d = tmp_path_factory.mktemp("multi30k_tiny")
  paths = {}
  for split, name, n in (("train", "train", N_TRAIN), ("val", "val", N_VAL),
                         ("test", "test2016", N_TEST)):
    for side, lang in (("src", "en"), ("tgt", "de")):
      paths[f"{split}_{side}"] = _head(MULTI30K / f"{name}.{lang}", d / f"{name}.{lang}", n)
  return paths


def tiny_config(data: dict[str, str], **overrides) -> ml_collections.ConfigDict:
  """configs/multi30k.py cut down to a model that trains in seconds.

  Args:
    data: paths from the `tiny_data` fixture.
    overrides: 'section.key' -> value, e.g. **{"train.steps": 10}.
  """
  c = config_lib.load_file(ROOT / "configs" / "multi30k.py")
  c.model.d_model = 32
  c.model.d_ff = 64
  c.model.h = 4
  c.model.d_k = 8
  c.model.d_v = 8
  c.model.n_layers = 2
  c.model.p_drop = 0.1  # kept non-zero so resume tests see the dropout rng
  c.model.max_len = 256
  for key, path in data.items():
    c.data[key] = path
  c.data.vocab_size = 256  # about 31 pieces per English sentence on 400 pairs
  c.data.max_len = 128
  c.data.tokens_per_batch = 512
  c.data.bucket_boundaries = (64, 128)  # two batch shapes: (8, 64, 64) and (4, 128, 128)
  c.train.steps = TINY_STEPS
  c.train.warmup_steps = 20
  # Eq. 3 peaks at d_model^-0.5 / sqrt(warmup) = 0.04 for d_model 32: too high, the loss then
  # sits at the unigram plateau (~4.1) for hundreds of steps. 0.3x leaves it by step ~100.
  c.train.lr_scale = 0.3
  c.train.log_every = 25
  c.train.eval_every = 100
  c.train.checkpoint_every = 50
  c.train.keep_checkpoints = 3
  c.train.average_last = 3
  c.train.final_eval = False
  c.decode.beam_size = 2
  c.decode.max_extra_len = 10
  c.decode.batch_size = 16
  for key, value in overrides.items():
    section, name = key.split(".")
    c[section][name] = value
  return c


@pytest.fixture(scope="session")
def trained_run(tiny_data, tmp_path_factory) -> tuple[pathlib.Path, ml_collections.ConfigDict,
                                                      dict]:
  """(workdir, config, train()'s result) of one finished tiny run with final_eval=True, so the
  workdir has config.json, spm.model, metrics.jsonl, tb/, checkpoints/, final_params,
  test.hyp and final.json. Shared: tests must not write into it except through the CLI's
  own outputs."""
  from transformer_jax import train as train_lib
  workdir = tmp_path_factory.mktemp("trained_run")
  config = tiny_config(tiny_data, **{"train.final_eval": True})
  result = train_lib.train(config, workdir, log=lambda *_: None)
  return workdir, config, result


def copy_run(trained_run, tmp_path: pathlib.Path) -> pathlib.Path:
  """TMP_PATH/run holding the trained run's config.json, spm.model and checkpoints/: a workdir
  a test may resume, change or break without touching the shared one."""
  workdir, _, _ = trained_run
  copy = tmp_path / "run"
  copy.mkdir()
  for name in ("config.json", "spm.model"):
    shutil.copy(workdir / name, copy / name)
  shutil.copytree(workdir / "checkpoints", copy / "checkpoints")
  return copy


@pytest.fixture
def cli(monkeypatch, capsys):
  """cli(*args, stdin='') runs `transformer-jax *args` in-process from the repository root and
  returns (stdout, stderr); a refusal raises SystemExit. absl's FLAGS are reset around each
  call. (--config.* overrides define absl flags once per process: pass them in a subprocess.)"""
  from transformer_jax import main as main_lib
  monkeypatch.chdir(ROOT)

  def run(*args: str, stdin: str = "") -> tuple[str, str]:
    argv = ["transformer-jax", *args]
    monkeypatch.setattr(sys, "argv", argv)  # ml-collections looks for overrides here
    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    main_lib.FLAGS.unparse_flags()
    try:
      main_lib.main(list(argv))
    finally:
      main_lib.FLAGS.unparse_flags()
    out = capsys.readouterr()
    return out.out, out.err

  return run
