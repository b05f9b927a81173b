"""Tests for the `transformer-jax` command line.

Commands with --config overrides or an expected failing exit run as a subprocess (`python -m
transformer_jax.main`), as a user runs them: ml-collections reads the overrides from sys.argv
and defines one absl flag per overridden key, so the same override twice in one process is a
DuplicateFlagError. `translate` and `evaluate` run in-process through `main.main(argv)`, sharing
the compiled decoder and the trained workdir of the session fixture `trained_run`
(tests/conftest.py); absl's FLAGS are process-global, so the `cli` fixture resets them to their
defaults around each call, or a flag of one command (--input) would leak into the next.
"""

from __future__ import annotations

import functools
import json
import pathlib
import re
import subprocess
import sys

import pytest
import sacrebleu

from conftest import ROOT
from transformer_jax import bleu

PAPER_BASE_PARAMS = 65_000_000  # Table 3, base: 65M with a ~37000 shared vocabulary
COUNT = re.compile(r"^([\d,]+) parameters", re.M)
THREE_LINES = "A man is riding a bike .\n\nTwo dogs play in the snow .\n"


@functools.lru_cache(maxsize=None)
def run_cli(*args: str) -> subprocess.CompletedProcess:
  """`transformer-jax *args` in a fresh process, from the repository root (cached per args)."""
  return subprocess.run([sys.executable, "-m", "transformer_jax.main", *args], cwd=ROOT,
                        capture_output=True, text=True, timeout=300)


def _count(stdout: str) -> int:
  match = COUNT.search(stdout)
  assert match, stdout
  return int(match.group(1).replace(",", ""))


# -- params ---------------------------------------------------------------------------------------

def test_params_of_base_matches_the_paper():
  proc = run_cli("params", "--config=configs/base.py")
  assert proc.returncode == 0, proc.stderr
  assert _count(proc.stdout) == pytest.approx(PAPER_BASE_PARAMS, rel=0.05)
  assert "vocab_size=37000" in proc.stdout and "d_model=512" in proc.stdout


def test_params_override_changes_the_count():
  base = _count(run_cli("params", "--config=configs/base.py").stdout)
  proc = run_cli("params", "--config=configs/base.py", "--config.model.d_k=16")
  assert proc.returncode == 0, proc.stderr
  assert "d_k=16" in proc.stdout
  # W_Q and W_K ([d_model, h, d_k], no bias) of 18 attention sub-layers (6 encoder self,
  # 6 decoder self, 6 decoder cross) shrink from d_k=64 to 16.
  assert base - _count(proc.stdout) == 18 * 2 * 512 * 8 * (64 - 16)


def test_unknown_override_key_is_named():
  proc = run_cli("params", "--config=configs/base.py", "--config.model.bogus=1")
  assert proc.returncode != 0
  assert "bogus" in proc.stderr
  assert "Traceback" not in proc.stderr, proc.stderr


# -- train ----------------------------------------------------------------------------------------

def test_train_without_workdir_is_refused():
  proc = run_cli("train", "--config=configs/multi30k.py")
  assert proc.returncode != 0
  assert "--workdir" in proc.stderr
  assert "Traceback" not in proc.stderr, proc.stderr


# -- translate ------------------------------------------------------------------------------------

@pytest.mark.parametrize("via", ["stdin", "files"])
def test_translate_keeps_lines_and_empty_lines(cli, trained_run, tmp_path, via):
  workdir, _, _ = trained_run
  if via == "stdin":
    out, err = cli("translate", f"--workdir={workdir}", stdin=THREE_LINES)
  else:
    src, hyp = tmp_path / "in.en", tmp_path / "out.de"
    src.write_text(THREE_LINES, encoding="utf-8")
    out, err = cli("translate", f"--workdir={workdir}", f"--input={src}", f"--output={hyp}")
    assert out == ""
    out = hyp.read_text(encoding="utf-8")
  lines = out.split("\n")
  assert lines[-1] == "" and len(lines) == 4, out  # 3 lines, each newline-terminated
  assert lines[1] == ""  # the empty input line
  assert lines[0] and lines[2], out  # a trained model says something for a real sentence
  assert "translating 3 lines" in err


# -- evaluate -------------------------------------------------------------------------------------

def test_evaluate_prints_bleu_and_writes_json(cli, trained_run, tiny_data, tmp_path):
  workdir, _, _ = trained_run
  src, ref = tiny_data["val_src"], tiny_data["val_tgt"]
  hyp = tmp_path / "val.hyp"
  cli("translate", f"--workdir={workdir}", f"--input={src}", f"--output={hyp}")
  out, _ = cli("evaluate", f"--workdir={workdir}", f"--src={src}", f"--ref={ref}")

  hyps = hyp.read_text(encoding="utf-8").splitlines()
  refs = pathlib.Path(ref).read_text(encoding="utf-8").splitlines()
  reference = sacrebleu.metrics.BLEU()
  want = reference.corpus_score(hyps, [refs]).score
  signature = str(reference.get_signature())
  match = re.search(r"^cased detokenized sacreBLEU = (\d+\.\d\d)\s+(\S+)$", out, re.M)
  assert match, out
  assert match.group(2) == signature
  written = re.search(r"^written to (.+)$", out, re.M)
  assert written, out
  path = ROOT / written.group(1)  # absolute paths stay absolute
  assert path.parent == workdir and path.suffix == ".json"
  result = json.loads(path.read_text())
  assert f"{result['bleu']:.2f}" == match.group(1)
  assert result["bleu_signature"] == signature
  # Independent references: sacrebleu on what `translate` wrote for the same lines, and the
  # dev perplexity training measured with the same (averaged) parameters on the same file.
  assert result["bleu"] == pytest.approx(want, abs=1e-9)
  score = reference.corpus_score(hyps, [refs])
  assert result["brevity_penalty"] == pytest.approx(score.bp, abs=1e-9)
  assert result["hyp_ref_length_ratio"] == pytest.approx(score.sys_len / score.ref_len, abs=1e-9)
  assert f"brevity penalty = {score.bp:.3f}  " in out
  assert path.with_suffix(".hyp").read_text(encoding="utf-8").splitlines() == hyps
  lc = bleu.bleu_lc_moses(hyps, refs)  # the Multi30k literature's metric, labelled, beside it
  assert result["bleu_lc_moses"] == pytest.approx(lc["bleu"], abs=1e-9)
  assert result["bleu_lc_moses_signature"] == lc["signature"]
  assert (f"lowercased Moses-tokenized BLEU (Multi30k literature) = {lc['bleu']:.2f}  "
          f"{lc['signature']}\n") in out
  assert any(hyps), "all translations empty: BLEU would be trivially 0"
  final = json.loads((workdir / "final.json").read_text())
  assert result["ppl"] == pytest.approx(final["val_ppl"], rel=1e-4)
  assert result["pairs"] == len(refs)
