"""Bad input ends in one clear error naming the config key, file, line or path, before any work;
what cannot be refused (blank and over-long pairs, empty or over-long lines to translate) is
counted, reported and handled.

Data-file errors are also tested on `data.read_parallel` itself (tests/test_data.py); here they
go through `train`, which must report them before training a vocabulary or compiling anything.
"""

from __future__ import annotations

import json
import os
import pathlib
import re
import subprocess
import sys

import ml_collections
import pytest

from conftest import ROOT, copy_run, tiny_config
from transformer_jax import config as config_lib
from transformer_jax import evaluate
from transformer_jax import main as main_lib
from transformer_jax import train as train_lib
from transformer_jax.data import DataError
from transformer_jax.workdir import WorkdirError

LONG_LINE = " ".join(["A man in a blue shirt is standing on a ladder ."] * 170)  # 2040 words


def _quiet(*_):
  pass


def _run_cli(*args: str) -> subprocess.CompletedProcess:
  """`transformer-jax *args` in a fresh process (command-line overrides need their own)."""
  env = dict(os.environ, TRANSFORMER_JAX_HUGE_PAGES="0")  # no re-exec: one JAX import
  return subprocess.run([sys.executable, "-m", "transformer_jax.main", *args], cwd=ROOT,
                        capture_output=True, text=True, timeout=300, env=env)


def _config_file(path, data: dict, overrides: dict):
  path.write_text("import sys\n"
                  f"sys.path.insert(0, {str(ROOT / 'tests')!r})\n"
                  "from conftest import tiny_config\n\n"
                  "def get_config():\n"
                  f"  return tiny_config({data!r}, **{overrides!r})\n")
  return path


# -- config ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("key, value, expected", [
    ("model.p_drop", -0.1, r"in \[0, 1\)"),
    ("model.h", 0, "positive integer"),
    ("model.d_k", 0, "positive integer"),
    ("model.d_v", 0, "positive integer"),
    ("train.warmup_steps", 0, ">= 1"),
    ("train.warmup_steps", -100, ">= 1"),
    ("data.vocab_size", 4, "exceed the 4 special tokens"),
    ("train.steps", 0, ">= 1"),
    ("data.tokens_per_batch", 0, ">= 1"),
    ("train.eps_ls", 1.0, r"in \[0, 1\)"),
    ("train.eps_ls", -0.1, r"in \[0, 1\)"),
    ("train.lr_scale", 0.0, "finite number > 0"),
    ("decode.beam_size", 0, ">= 1"),
    ("decode.word_reward", -0.5, ">= 0"),
    ("train.average_last", 4, "keep_checkpoints=3"),
    ("data.max_len", 200, r"largest of config.data.bucket_boundaries \(128\)"),
    ("data.bpe_dropout", 1.0, r"in \[0, 1\)"),
    ("data.bpe_dropout_sides", "source", "'src', 'tgt' or 'both'"),
    ("data.vocab_model", "wordpiece", r"one of \['bpe', 'unigram'\]"),
])
def test_impossible_value_names_the_key(tiny_data, key, value, expected):
  config = tiny_config(tiny_data, **{key: value})
  with pytest.raises(config_lib.ConfigError, match=rf"^config\.{key} .*{expected}"):
    config_lib.validate(config)


def test_unknown_key_in_a_config_file_is_named():
  config = config_lib.default_config()  # config files edit it unlocked, then lock it
  config.train.warmup = 100  # a typo for warmup_steps: would otherwise be silently ignored
  with pytest.raises(config_lib.ConfigError, match=r"config\.train\.warmup is not a known key"):
    config_lib.validate(config)


def test_wrong_type_in_a_config_is_named(tiny_data):
  values = tiny_config(tiny_data).to_dict()
  values["model"]["h"] = 2.5  # e.g. a config.json edited by hand
  with pytest.raises(config_lib.ConfigError, match=r"config\.model\.h must be of type int"):
    config_lib.validate(ml_collections.ConfigDict(values))


def test_vocab_smaller_than_the_characters_names_the_key(tiny_data, tmp_path):
  # SentencePiece BPE needs one piece per distinct character (65 here) plus the 4 specials.
  config = tiny_config(tiny_data, **{"data.vocab_size": 60})
  config_lib.validate(config)  # the limit depends on the data, so validate cannot know it
  with pytest.raises(config_lib.ConfigError, match=r"60 pieces.*raise data\.vocab_size"):
    train_lib.load_data(config, tmp_path, log=_quiet)


def test_vocab_model_reaches_the_workdir_and_bpe_dropout_needs_bpe(tiny_data, tmp_path):
  config = tiny_config(tiny_data, **{"data.vocab_model": "unigram"})
  config_lib.validate(config)
  tokenizer, *_ = train_lib.load_data(config, tmp_path, log=_quiet)
  assert tokenizer.model_type == "unigram" and (tmp_path / "spm.model").is_file()
  with pytest.raises(config_lib.ConfigError, match=r"vocab_model 'unigram' but data.vocab_model"):
    train_lib.load_data(tiny_config(tiny_data), tmp_path, log=_quiet)  # BPE meets it
  config = tiny_config(tiny_data, **{"data.vocab_model": "unigram", "data.bpe_dropout": 0.1})
  with pytest.raises(config_lib.ConfigError,
                     match=r"^config\.data\.bpe_dropout must be 0 unless .*'bpe'"):
    config_lib.validate(config)


@pytest.mark.parametrize("args, named", [
    (("train", "--config=configs/multi30k.py", "--config.train.nonexistent=1"),
     "config.train.nonexistent"),
    (("params", "--config=configs/multi30k.py", "--config.model.h=abc"), "--config.model.h=abc"),
    (("params", "--config=configs/multi30k.py", "--config.model.h=2.5"), "--config.model.h=2.5"),
    (("train", "--config=configs/multi30k.py", "--config.model.p_drop=-0.1"),
     "config.model.p_drop must be in [0, 1), got -0.1"),
])
def test_command_line_config_errors_are_one_clean_line(tmp_path, args, named):
  workdir = tmp_path / "run"
  proc = _run_cli(*args, f"--workdir={workdir}")
  assert proc.returncode != 0
  assert "Traceback" not in proc.stderr, proc.stderr
  assert proc.stderr.startswith("error: ") and named in proc.stderr, proc.stderr
  assert not workdir.exists()  # refused before any work


# A config file that gives no config: (file text or None for no file, ':ARG', expected message
# after "error: --config=FILE[:ARG]: " with {f} for the file's path).
BAD_CONFIG_FILES = {
    "missing": (None, "", r"config file {f} does not exist$"),
    "syntax_error": ("def get_config(:\n  pass\n", "",
                     r"syntax error in {f}, line 1: invalid syntax$"),
    "raises_on_import": ("import no_such_module_xyz\n\ndef get_config():\n  pass\n", "",
                         r"{f}, line 1: ModuleNotFoundError: No module named "
                         r"'no_such_module_xyz'$"),
    "raises_in_get_config": ("def get_config():\n  x = 1\n  raise ValueError('no config')\n", "",
                             r"{f}, line 3: ValueError: no config$"),
    "no_get_config": ("config = None\n", "", r"{f} defines no get_config\(\);"),
    "argument_missing": ("def get_config(row):\n  pass\n", "",
                         r"{f} cannot be called as get_config\(\): TypeError: get_config\(\) "
                         r"missing 1 required positional argument: 'row'$"),
    "argument_not_taken": ("def get_config():\n  pass\n", ":B-dk16",
                           r"{f} cannot be called as get_config\('B-dk16'\): TypeError: "),
}


# `sweep` reads get_sweep, not get_config (its own errors: tests/test_experiments.py); a file
# that does not load is said the same way.
@pytest.mark.parametrize("command, case", [
    (command, case) for command in ("train", "params", "run", "sweep") for case in BAD_CONFIG_FILES
    if command != "sweep" or case in ("missing", "syntax_error", "raises_on_import")])
def test_config_file_that_gives_no_config_is_one_line_naming_it(tmp_path, command, case):
  text, arg, expected = BAD_CONFIG_FILES[case]
  path = tmp_path / "my_config.py"
  if text is not None:
    path.write_text(text)
  workdir = tmp_path / "run"
  where = {"train": [f"--workdir={workdir}"], "run": [f"--workdir={workdir}"],
           "sweep": [f"--root={workdir}"], "params": []}[command]
  proc = _run_cli(command, f"--config={path}{arg}", *where)
  assert proc.returncode == 1, proc
  assert "Traceback" not in proc.stderr and proc.stdout == "", proc
  assert proc.stderr.count("\n") == 1, proc.stderr
  prefix = re.escape(f"error: --config={path}{arg}: ")
  assert re.match(prefix + expected.format(f=re.escape(str(path))), proc.stderr), proc.stderr
  assert not workdir.exists()  # refused before any work


# -- data -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("case, expected", [
    ("missing", r"{src}: file not found"),
    ("directory", r"{src}: is a directory"),
    ("empty", r"{src}: file is empty"),
    ("invalid_utf8", r"{src}:2: line 2 is not valid UTF-8"),
    ("line_counts", r"line counts differ: {src} has 3 lines but {tgt} has 2"),
])
def test_bad_data_file_is_named_before_any_work(tiny_data, tmp_path, case, expected):
  src, tgt = tmp_path / "train.en", tmp_path / "train.de"
  tgt.write_bytes(b"eins\nzwei\ndrei\n")
  if case == "directory":
    src.mkdir()
  elif case == "empty":
    src.write_bytes(b"")
  elif case == "invalid_utf8":
    src.write_bytes(b"one\ntw\xc3o\nthree\n")
  elif case == "line_counts":
    src.write_bytes(b"one\ntwo\nthree\n")
    tgt.write_bytes(b"eins\nzwei\n")
  config = tiny_config(tiny_data, **{"data.train_src": str(src), "data.train_tgt": str(tgt)})
  workdir = tmp_path / "run"
  with pytest.raises(DataError, match=expected.format(src=src, tgt=tgt)):
    train_lib.train(config, workdir, log=_quiet)
  assert not (workdir / "spm.model").exists()  # no vocabulary trained on bad data


def test_bad_data_file_through_the_command_line(tiny_data, tmp_path, cli):
  missing = tmp_path / "nowhere.en"
  cfg = _config_file(tmp_path / "cfg.py", tiny_data, {"data.train_src": str(missing)})
  with pytest.raises(SystemExit, match=rf"^error: {missing}: file not found"):
    cli("train", f"--config={cfg}", f"--workdir={tmp_path / 'run'}")


def test_blank_and_over_long_pairs_are_counted_and_dropped(tiny_data, tmp_path):
  lines = {"en": pathlib.Path(tiny_data["train_src"]).read_text(encoding="utf-8").splitlines(),
           "de": pathlib.Path(tiny_data["train_tgt"]).read_text(encoding="utf-8").splitlines()}
  n = len(lines["en"])
  lines["en"][3] = "   "  # blank source
  lines["de"][7] = ""  # blank target
  lines["en"][11] = LONG_LINE  # far over data.max_len tokens
  paths = {}
  for lang in ("en", "de"):
    paths[lang] = tmp_path / f"train.{lang}"
    paths[lang].write_text("\n".join(lines[lang]) + "\n", encoding="utf-8")
  config = tiny_config(tiny_data, **{"data.train_src": str(paths["en"]),
                                     "data.train_tgt": str(paths["de"])})
  messages = []
  _, train, _, stats = train_lib.load_data(config, tmp_path, log=messages.append)
  assert (stats["train"]["blank_dropped"], stats["train"]["too_long_dropped"]) == (2, 1)
  assert len(train.src) == stats["train"]["pairs"] == n - 3
  assert max(map(len, train.src + train.tgt)) <= config.data.max_len
  assert any(m.startswith(f"train: {n - 3} pairs from {paths['en']}") and "dropped 2 with a blank "
             "side and 1 longer than data.max_len=128" in m for m in messages), messages


# -- workdir --------------------------------------------------------------------------------------

def test_workdir_that_is_a_file_is_refused(tiny_data, tmp_path):
  path = tmp_path / "not_a_dir"
  path.write_text("x")
  with pytest.raises(WorkdirError, match=rf"workdir {path} is an existing file"):
    train_lib.train(tiny_config(tiny_data), path, log=_quiet)
  with pytest.raises(WorkdirError, match=rf"workdir {path / 'run'} is not writable"):
    train_lib.train(tiny_config(tiny_data), path / "run", log=_quiet)


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores directory permissions")
def test_read_only_workdir_is_refused(tiny_data, tmp_path):
  workdir = tmp_path / "ro"
  workdir.mkdir()
  workdir.chmod(0o555)
  try:
    with pytest.raises(WorkdirError, match=rf"workdir {workdir} is not writable"):
      train_lib.train(tiny_config(tiny_data), workdir, log=_quiet)
  finally:
    workdir.chmod(0o755)


def test_changed_config_is_refused_with_the_keys_named(trained_run, tiny_data, tmp_path):
  copy = copy_run(trained_run, tmp_path)
  changed = tiny_config(tiny_data, **{"model.p_drop": 0.3, "data.tokens_per_batch": 1024,
                                      "train.steps": 301})
  with pytest.raises(config_lib.ConfigError, match="--allow_config_change") as e:
    train_lib.train(changed, copy, log=_quiet)
  assert "model.p_drop: saved 0.1, requested 0.3" in str(e.value)
  assert "data.tokens_per_batch: saved 512, requested 1024" in str(e.value)
  assert "train.steps" not in str(e.value)  # more steps is how a run is continued


def test_allow_config_change_resumes_when_shapes_are_kept(trained_run, tiny_data, tmp_path,
                                                          cli):
  copy = copy_run(trained_run, tmp_path)
  # steps = the checkpoint's step: the run restores, then has nothing left to train.
  cfg = _config_file(tmp_path / "cfg.py", tiny_data, {"model.p_drop": 0.3, "train.eps_ls": 0.15})
  out, _ = cli("train", f"--config={cfg}", f"--workdir={copy}", "--allow_config_change")
  assert "train.eps_ls: saved 0.2, requested 0.15" in out  # logged, allowed without the flag
  assert "--allow_config_change): model.p_drop: saved 0.1, requested 0.3" in out, out
  assert f"resumed from {copy / 'checkpoints' / '300'} at step 300" in out, out
  assert json.loads((copy / "config.json").read_text())["model"]["p_drop"] == 0.3


def test_allow_config_change_still_refuses_other_shapes(trained_run, tiny_data, tmp_path):
  copy = copy_run(trained_run, tmp_path)
  saved = (copy / "config.json").read_text()
  changed = tiny_config(tiny_data, **{"model.d_model": 64, "model.p_drop": 0.3})
  with pytest.raises(config_lib.ConfigError, match="other parameter shapes") as e:
    train_lib.train(changed, copy, log=_quiet, allow_config_change=True)
  reshaping = str(e.value).split("Keys that change shapes:")[1]
  assert reshaping.strip() == "model.d_model: saved 32, requested 64"  # not p_drop
  assert (copy / "config.json").read_text() == saved


# -- translate ------------------------------------------------------------------------------------

def test_empty_lines_translate_to_empty_lines_without_decoding(trained_run):
  workdir, config, _ = trained_run
  run = main_lib._load_workdir(workdir)
  model, tokenizer = run[1], run[2]
  # No line has a token, so nothing is decoded and params are never touched.
  assert evaluate.translate_lines(model, None, tokenizer, ["", "   ", "\t", ""]) == [""] * 4


def test_translate_handles_empty_files_and_very_long_lines(trained_run, tmp_path, cli):
  workdir, config, _ = trained_run
  src = tmp_path / "in.en"
  src.write_text("")
  out, err = cli("translate", f"--workdir={workdir}", f"--input={src}")
  assert out == "" and "translating 0 lines" in err

  src.write_text(f"\n{LONG_LINE}\n   \nTwo dogs play in the snow .\n", encoding="utf-8")
  out, err = cli("translate", f"--workdir={workdir}", f"--input={src}")
  lines = out.split("\n")
  assert len(lines) == 5 and lines[-1] == "", out  # 4 lines, each newline-terminated
  assert lines[0] == lines[2] == "" and lines[3], out
  limit = config_lib.source_limit(config)
  assert limit == config.data.max_len == 128
  assert f"1 input line(s) longer than {limit} tokens" in err, err


def test_translate_input_that_is_not_utf8_is_named(trained_run, tmp_path, cli):
  workdir, _, _ = trained_run
  src = tmp_path / "in.en"
  src.write_bytes(b"A dog .\nA \xff cat .\n")
  with pytest.raises(SystemExit, match=rf"^error: {src}:2: line 2 is not valid UTF-8"):
    cli("translate", f"--workdir={workdir}", f"--input={src}")


def test_translate_stdin_that_is_not_utf8_is_named(trained_run):
  workdir, _, _ = trained_run
  env = dict(os.environ, TRANSFORMER_JAX_HUGE_PAGES="0")
  proc = subprocess.run([sys.executable, "-m", "transformer_jax.main", "translate",
                         f"--workdir={workdir}"], input=b"A dog .\nA \xff cat .\n",
                        capture_output=True, cwd=ROOT, env=env, timeout=300)
  assert proc.returncode == 1, proc.stderr[-2000:]
  assert proc.stderr.decode().strip().endswith(
      "error: <stdin>:2: line 2 is not valid UTF-8 (byte 2 of the line: invalid start byte; "
      "expected UTF-8 text)")


def test_negative_word_reward_on_the_command_line_is_named(trained_run, tiny_data, cli):
  workdir, _, _ = trained_run
  with pytest.raises(SystemExit, match=r"^error: --word_reward must be a finite number >= 0"):
    cli("evaluate", f"--workdir={workdir}", f"--src={tiny_data['val_src']}",
        f"--ref={tiny_data['val_tgt']}", "--word_reward=-1")
