"""The TFDS input path, offline: a small dataset in TFDS's own array_record format, built here
from ../shared/data/wmt14 newstest files with the feature structure of `wmt14_translate/de-en`
(Translation features keyed 'de' and 'en'; splits train / validation / test), read back
through `tfds.data_source` by `data.read_split`, and a short training run on it that ends with
the WMT final evaluation (dev and test BLEU both ways, budget report). No network, no
TensorFlow.
"""

from __future__ import annotations

import json
import pathlib
import sys

import pytest

from conftest import ROOT, tiny_config
from transformer_jax import config as config_lib
from transformer_jax import data as data_lib
from transformer_jax import tfds_data
from transformer_jax.tokenizer import Tokenizer

tfds = pytest.importorskip("tensorflow_datasets")

WMT14 = ROOT.parent / "shared" / "data" / "wmt14"
SPLITS = {"train": ("newstest2012", 400), "validation": ("newstest2013", 24),
          "test": ("newstest2014", 24)}  # TFDS split: (file, lines taken from the top)
NAME = "tiny_wmt14_offline/de-en"

pytestmark = pytest.mark.skipif(not WMT14.is_dir(), reason=f"{WMT14} absent (no ../shared)")


def _lines(name: str, lang: str, n: int) -> list[str]:
  return (WMT14 / f"{name}.{lang}").read_text(encoding="utf-8").splitlines()[:n]


class TinyWmt14Offline(tfds.core.GeneratorBasedBuilder):
  """wmt14_translate's structure (wmt.WmtTranslate._info) on a few local newstest lines."""
  VERSION = tfds.core.Version("1.0.0")
  BUILDER_CONFIGS = [tfds.core.BuilderConfig(name="de-en")]

  def _info(self):
    return tfds.core.DatasetInfo(builder=self,
                                 features=tfds.features.Translation(languages=("de", "en")),
                                 supervised_keys=("de", "en"))

  def _split_generators(self, dl_manager):
    return {split: self._generate_examples(*source) for split, source in SPLITS.items()}

  def _generate_examples(self, name, n):
    for i, (de, en) in enumerate(zip(_lines(name, "de", n), _lines(name, "en", n))):
      yield f"{name}-{i}", {"de": de, "en": en}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> str:
  root = tmp_path_factory.mktemp("tfds")
  TinyWmt14Offline(data_dir=str(root), config="de-en",
                   file_format="array_record").download_and_prepare()
  assert list((root / NAME / "1.0.0").glob("*-validation.array_record-*"))
  return str(root)


def _config(data_dir: str, **overrides):
  """tiny_config with its Multi30k paths cleared, so every split comes from TFDS."""
  paths = {f"{s}_{side}": "" for s in ("train", "val", "test") for side in ("src", "tgt")}
  c = tiny_config(paths, **{"data.source": "tfds", "data.tfds_name": NAME,
                            "data.tfds_data_dir": data_dir, **overrides})
  return c


@pytest.mark.parametrize("src,tgt", [("en", "de"), ("de", "en")])
def test_read_split_gives_the_pairs_in_the_configured_direction(data_dir, src, tgt):
  config = _config(data_dir, **{"data.src_lang": src, "data.tgt_lang": tgt})
  text = data_lib.read_split(config, "val")
  # TFDS shuffles records when it writes a split: compare the pairs as a set.
  want = set(zip(_lines("newstest2013", src, 24), _lines("newstest2013", tgt, 24)))
  assert len(text.src) == 24 and set(zip(text.src, text.tgt)) == want
  assert text.src_path == f"tfds:{NAME}[validation]:{src}"
  assert text.n_blank_dropped == 0
  assert len(data_lib.read_split(config, "train").src) == 400


def test_training_and_wmt_final_evaluation_through_tfds(data_dir, tmp_path, monkeypatch, capsys):
  from transformer_jax import train as train_lib
  config = _config(data_dir, **{
      "data.vocab_sample": 500, "data.bucket_boundaries": (128,), "train.steps": 12,
      "train.log_every": 4, "train.eval_every": 12, "train.checkpoint_every": 4,
      "train.average_last": 2, "train.final_eval": True, "decode.beam_size": 1,
      "decode.max_extra_len": 4, "decode.batch_size": 24,
      "train.final_eval_splits": ("val", "test"), "train.paper_bleu": True,
      "train.paper_model": "base"})
  logs = []
  result = train_lib.train(config, tmp_path, log=logs.append)
  assert result["step"] == 12 and result["steps_run"] == 12
  stats = json.loads((tmp_path / "data_stats.json").read_text())
  assert stats["train"]["src_path"] == f"tfds:{NAME}[train]:en"
  assert stats["train"]["pairs"] + stats["train"]["too_long_dropped"] == 400
  assert Tokenizer.load(tmp_path / "spm.model").vocab_size == 256
  final = json.loads((tmp_path / "final.json").read_text())
  for split, tfds_split in (("val", "validation"), ("test", "test")):
    b = final["bleu"][split]
    assert b["src"] == f"tfds:{NAME}[{tfds_split}]:en"
    assert 0.0 <= b["sacrebleu"] <= 100.0 and "tok:13a" in b["sacrebleu_signature"]
    assert 0.0 <= b["bleu_tok_compound_split"] <= 100.0
    assert "tok:none" in b["bleu_tok_compound_split_signature"]
    assert len((tmp_path / f"{split}.hyp").read_text(encoding="utf-8").splitlines()) == 24
  assert final["test_bleu"] == final["bleu"]["test"]["sacrebleu"]
  budget = final["budget"]
  assert budget["paper_cost_flops"] == 3.3e18 and budget["step_seconds"] > 0
  assert any(line.startswith("budget vs paper (base") for line in logs)

  # `transformer-jax evaluate` on the same dev pairs, as files in TFDS record order, prints
  # both BLEUs of the final evaluation (same parameters, same decoding).
  val = data_lib.read_split(config, "val")
  src, ref = tmp_path / "dev.en", tmp_path / "dev.de"
  src.write_text("".join(x + "\n" for x in val.src), encoding="utf-8")
  ref.write_text("".join(x + "\n" for x in val.tgt), encoding="utf-8")
  out = _cli(monkeypatch, capsys, "evaluate", f"--workdir={tmp_path}", f"--src={src}",
             f"--ref={ref}")
  b = final["bleu"]["val"]
  assert f"cased detokenized sacreBLEU = {b['sacrebleu']:.2f}  {b['sacrebleu_signature']}\n" in out
  assert (f"lowercased Moses-tokenized BLEU (Multi30k literature) = {b['bleu_lc_moses']:.2f}  "
          f"{b['bleu_lc_moses_signature']}\n") in out
  assert (f"tokenized BLEU, compound-split (the paper's Table 2) = "
          f"{b['bleu_tok_compound_split']:.2f}  "
          f"{b['bleu_tok_compound_split_signature']}\n") in out


def _cli(monkeypatch, capsys, *args: str) -> str:
  """`transformer-jax *args` in-process (absl flags reset around it, as tests/test_cli.py)."""
  from transformer_jax import main as main_lib
  argv = ["transformer-jax", *args]
  monkeypatch.setattr(sys, "argv", argv)
  main_lib.FLAGS.unparse_flags()
  try:
    main_lib.main(list(argv))
  finally:
    main_lib.FLAGS.unparse_flags()
  return capsys.readouterr().out


def test_missing_dataset_is_a_data_error_naming_the_config_keys(tmp_path):
  config = _config(str(tmp_path))
  with pytest.raises(data_lib.DataError, match=r"tfds_name=.*tfds build"):
    data_lib.read_split(config, "train")


def test_the_real_wmt14_builder_resolves_offline(tmp_path):
  """wmt14_translate/de-en itself: found (registered) and only reported as not prepared."""
  config = _config(str(tmp_path), **{"data.tfds_name": "wmt14_translate/de-en"})
  with pytest.raises(data_lib.DataError, match=r"not prepared in .*wmt14_translate/de-en/"):
    data_lib.read_split(config, "test")
  builder = tfds.builder("wmt14_translate/de-en", data_dir=str(tmp_path))
  assert sorted(builder.info.features.languages) == ["de", "en"]


def test_wrong_language_is_a_data_error(data_dir):
  config = _config(data_dir, **{"data.src_lang": "fr"})
  with pytest.raises(data_lib.DataError, match=r"config\.data\.src_lang='fr'.*\['de', 'en'\]"):
    data_lib.read_split(config, "val")


def test_source_and_path_rules(data_dir, tmp_path):
  with pytest.raises(config_lib.ConfigError, match=r"config\.data\.source must be"):
    data_lib.read_split(_config(data_dir, **{"data.source": "tfrecord"}), "val")
  with pytest.raises(config_lib.ConfigError, match=r"config\.data\.test_src is set"):
    data_lib.read_split(_config(data_dir, **{"data.test_src": "x.en"}), "test")
  with pytest.raises(data_lib.DataError, match=r"split 'newstest2013' \(config\.data\.tfds_val"):
    data_lib.read_split(_config(data_dir, **{"data.tfds_val_split": "newstest2013"}), "val")
  assert len(data_lib.read_split(_config(data_dir, **{"data.tfds_val_split": "validation[:10]"}),
                                 "val").src) == 10  # TFDS split slicing works
  with pytest.raises(config_lib.ConfigError, match=r"comes from TFDS"):
    config_lib.split_paths(_config(data_dir), "test")
  # Both paths set: the files win (e.g. newstest2014 in its original order).
  config = _config(data_dir, **{"data.test_src": str(WMT14 / "newstest2014.en"),
                                "data.test_tgt": str(WMT14 / "newstest2014.de")})
  text = data_lib.read_split(config, "test")
  assert text.src[:2] == _lines("newstest2014", "en", 2) and len(text.src) == 3003


def test_stage_locally_copies_once(data_dir, tmp_path):
  local = tmp_path / "local"
  assert tfds_data.stage_locally(data_dir, NAME, local) == str(local)
  copied = sorted(p.relative_to(local) for p in local.rglob("*") if p.is_file())
  original = sorted(p.relative_to(data_dir) for p in pathlib.Path(data_dir, NAME).rglob("*")
                    if p.is_file())
  assert copied == original and len(copied) >= 5  # 3 splits, dataset_info, features
  marker = local / NAME / "1.0.0" / "dataset_info.json"
  marker.write_text("{}")  # a second call must reuse the copy, not overwrite it
  tfds_data.stage_locally(data_dir, NAME, local)
  assert marker.read_text() == "{}"
  with pytest.raises(data_lib.DataError, match="has no nothing/de-en/"):
    tfds_data.stage_locally(data_dir, "nothing/de-en", tmp_path / "other")


def test_gs_data_dir_without_gcsfs_says_how_to_copy(tmp_path, monkeypatch):
  try:
    import gcsfs  # noqa: F401
    pytest.skip("gcsfs installed: gs:// would be read (needs network)")
  except ImportError:
    pass
  monkeypatch.setenv("TRANSFORMER_JAX_TFDS_CACHE", str(tmp_path))
  config = _config("gs://bucket/tfds", **{"data.tfds_name": "wmt14_translate/de-en"})
  with pytest.raises(config_lib.ConfigError,
                     match=r"needs gcsfs.*gcloud storage cp -r gs://bucket/tfds/wmt14_translate"):
    data_lib.read_split(config, "train")


def test_vocabulary_from_sentences_equals_vocabulary_from_files(tmp_path):
  lines = _lines("newstest2012", "en", 300) + _lines("newstest2012", "de", 300)
  path = tmp_path / "all.txt"
  path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
  from_file = Tokenizer.train([path], tmp_path / "a.model", 300, max_sentences=400, seed=3)
  in_memory = Tokenizer.train([], tmp_path / "b.model", 300, max_sentences=400, seed=3,
                              sentences=lines)
  assert (tmp_path / "a.vocab").read_text() == (tmp_path / "b.vocab").read_text()
  assert from_file.encode_batch(lines[:5]) == in_memory.encode_batch(lines[:5])
