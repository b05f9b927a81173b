"""configs/wmt14_base.py and configs/wmt14_big.py against the paper (Section 5, Tables 2 and 3),
their parameter counts from shapes only (jax.eval_shape; nothing is initialised), and the
Table 2 budget report."""

from __future__ import annotations

import math

import pytest

from conftest import ROOT
from transformer_jax import budget
from transformer_jax.config import ConfigError, load_file, model_config
from transformer_jax.model import count_params, param_shapes

PAPER = {  # Table 3 rows 'base' and 'big', Section 5.2
    "base": dict(d_model=512, d_ff=2048, h=8, p_drop=0.1, steps=100_000, average_last=5,
                 params_M=65),
    "big": dict(d_model=1024, d_ff=4096, h=16, p_drop=0.3, steps=300_000, average_last=20,
                params_M=213),
}


def _config(variant: str):
  return load_file(ROOT / "configs" / f"wmt14_{variant}.py")


def _closed_form_count(C, D, F, H, K, V, N) -> int:
  """Shared embedding C*D; per encoder layer W_Q, W_K [D,H,K], W_V [D,H,V], W_O [H,V,D] (no
  biases), the feed-forward D*F + F + F*D + D, two LayerNorms (2*D each); per decoder layer
  two attentions, the feed-forward and three LayerNorms."""
  attention = 2 * D * H * K + 2 * D * H * V
  ffn = D * F + F + F * D + D
  return C * D + N * (attention + ffn + 2 * 2 * D) + N * (2 * attention + ffn + 3 * 2 * D)


@pytest.mark.parametrize("variant", ["base", "big"])
def test_wmt14_config_is_the_papers(variant):
  c, want = _config(variant), PAPER[variant]
  assert c.is_locked
  with pytest.raises(AttributeError):
    c.train.no_such_key = 1
  m = c.model
  assert (m.d_model, m.d_ff, m.h, m.d_k, m.d_v, m.n_layers, m.p_drop) == (
      want["d_model"], want["d_ff"], want["h"], 64, 64, 6, want["p_drop"])
  assert (m.positions, m.norm, m.p_drop_attn) == ("sinusoidal", "post", 0.0)
  t = c.train
  assert (t.steps, t.warmup_steps, t.eps_ls, t.lr_scale) == (want["steps"], 4000, 0.1, 1.0)
  assert (t.adam_b1, t.adam_b2, t.adam_eps) == (0.9, 0.98, 1e-9)
  assert t.average_last == want["average_last"] <= t.keep_checkpoints
  assert t.paper_model == variant and t.paper_bleu and tuple(t.final_eval_splits) == ("val",
                                                                                        "test")
  d = c.data
  assert (d.source, d.tfds_name, d.src_lang, d.tgt_lang) == ("tfds", "wmt14_translate/de-en",
                                                             "en", "de")
  assert (d.tfds_train_split, d.tfds_val_split, d.tfds_test_split) == ("train", "validation",
                                                                       "test")
  assert (d.vocab_size, d.tokens_per_batch, d.vocab_sample) == (37000, 25000, 2_000_000)
  assert (c.decode.beam_size, c.decode.alpha, c.decode.max_extra_len) == (4, 0.6, 50)


@pytest.mark.parametrize("variant", ["base", "big"])
def test_wmt14_parameter_count(variant):
  c = _config(variant)
  mcfg = model_config(c)
  n = count_params(param_shapes(mcfg))
  assert n == _closed_form_count(37000, mcfg.d_model, mcfg.d_ff, mcfg.h, mcfg.d_k, mcfg.d_v,
                                 mcfg.n_layers)
  # The paper rounds and its BPE vocabulary is "about" 37000: 63.0M vs 65M, 214.2M vs 213M.
  assert abs(n / (PAPER[variant]["params_M"] * 1e6) - 1) < 0.04, n


def test_budget_report_reproduces_table2_and_scales():
  for variant, table2 in (("base", 3.3e18), ("big", 2.3e19)):
    r = budget.budget_report(variant, step_seconds=budget.PAPER[variant]["step_seconds"],
                             steps=budget.PAPER[variant]["steps"], n_devices=8,
                             peak_flops_per_device=9.5e12)
    # The footnote's formula on the paper's wall time gives Table 2's figure (2 digits) ...
    assert float(f"{r['paper_cost_flops_formula']:.1e}") == table2 == r["paper_cost_flops"]
    assert r["step_time_vs_paper"] == 1.0
    # ... and on steps x step time (no evaluation or checkpoint time) a little less.
    assert r["cost_flops"] == pytest.approx(r["paper_steps"] * r["paper_step_seconds"] * 8
                                            * 9.5e12)
    assert 0.85 < r["cost_vs_paper"] < 1.0
  # A hypothetical run: 0.2 s/step, 4 devices of 1.97e14 FLOP/s (a v5e chip's bf16 peak).
  r = budget.budget_report("base", step_seconds=0.2, steps=100_000, n_devices=4,
                           peak_flops_per_device=1.97e14)
  assert r["step_time_vs_paper"] == pytest.approx(0.5)
  assert r["projected_train_hours"] == pytest.approx(0.2 * 100_000 / 3600)
  assert r["cost_flops"] == pytest.approx(0.2 * 100_000 * 4 * 1.97e14)  # 1.58e19
  assert "4 device(s)" in budget.summary(r) and "0.50x" in budget.summary(r)
  unknown = budget.budget_report("big", step_seconds=1.5, steps=10, n_devices=1)
  assert unknown["cost_flops"] is None and unknown["cost_vs_paper"] is None
  assert "set config.train.peak_flops_per_device" in budget.summary(unknown)


@pytest.mark.parametrize("kwargs,match", [
    (dict(paper_model="huge"), r"config\.train\.paper_model"),
    (dict(step_seconds=0.0), "step_seconds"),
    (dict(step_seconds=math.nan), "step_seconds"),
    (dict(steps=0), r"config\.train\.steps"),
    (dict(peak_flops_per_device=-1.0), r"config\.train\.peak_flops_per_device"),
])
def test_budget_report_rejects_bad_values(kwargs, match):
  args = dict(paper_model="base", step_seconds=0.4, steps=100, n_devices=1)
  args.update(kwargs)
  with pytest.raises(ValueError, match=match):
    budget.budget_report(args.pop("paper_model"), **args)


@pytest.mark.parametrize("key,value,match", [
    ("train.final_eval_splits", ("dev",), r"config\.train\.final_eval_splits"),
    ("train.paper_model", "large", r"config\.train\.paper_model"),
    ("train.peak_flops_per_device", -1.0, r"config\.train\.peak_flops_per_device"),
])
def test_post_training_keys_are_checked_before_training(key, value, match):
  c = _config("base").unlock()
  section, name = key.split(".")
  c[section][name] = value
  with pytest.raises(ConfigError, match=match):
    model_config(c)
