"""Tests for transformer_jax.decode: cached vs full decoding, greedy vs a naive loop, output
lengths, and beam search against brute-force enumeration on a toy next-token table.

Three parameter sets of one tiny model are used, differing only in the final LayerNorm bias,
which is shifted along the EOS embedding to move the EOS logit: 'random' (unchanged; EOS is
unlikely, outputs run long), 'eos_up' (+2: EOS competes, so greedy and beam size 1 part ways)
and 'no_eos' (-30: EOS is never chosen freely, so every output runs to its length limit).
"""

from __future__ import annotations

import itertools
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from transformer_jax.config import TransformerConfig
from transformer_jax.decode import BOS_ID, EOS_ID, beam_search, generate
from transformer_jax.model import PAD_ID, Transformer

C, EXTRA, ALPHA = 40, 4, 0.6
SRC = np.array([[5, 9, 7, 11, 13, 15, 3],
                [6, 8, 3, 0, 0, 0, 0],
                [0, 0, 0, 0, 0, 0, 0]], np.int32)  # [B=3, S=7], the last row all PAD
MAX_OUT = [6 + EXTRA, 2 + EXTRA, 0]  # tokens before EOS: source length without EOS + EXTRA
MAX_LEN = SRC.shape[1] + EXTRA  # output width of generate
EOS_SHIFT = {"random": 0.0, "eos_up": 2.0, "no_eos": -30.0}  # added to the EOS logit


@pytest.fixture(scope="module")
def setup():
  """(model, {name: params} for EOS_SHIFT, memoised generate(name, beam, use_cache))."""
  cfg = TransformerConfig(vocab_size=C, d_model=32, d_ff=64, h=4, d_k=8, d_v=12, n_layers=2)
  model = Transformer(cfg)
  params = nn.meta.unbox(model.init(jax.random.PRNGKey(3), SRC, SRC[:, :5])["params"])
  e_eos = np.asarray(params["embed"]["embedding"][EOS_ID])
  all_params = {}
  for name, shift in EOS_SHIFT.items():
    p = jax.tree_util.tree_map(lambda x: x, params)  # new containers, shared arrays
    norm = p["decoder_1"]["res_ffn"]["norm"]  # post-LN: its output goes straight to the logits
    norm["bias"] = norm["bias"] + shift * e_eos / (e_eos @ e_eos)
    all_params[name] = p
  memo = {}

  def run(name, beam, use_cache):
    key = (name, beam, use_cache)
    if key not in memo:
      tokens, scores = generate(all_params[name], SRC, model=model, beam_size=beam, alpha=ALPHA,
                                max_extra_len=EXTRA, use_cache=use_cache)
      memo[key] = np.asarray(tokens), np.asarray(scores)
    return memo[key]

  return model, all_params, run


def _log_softmax(z):
  z = np.asarray(z, np.float64)
  return z - z.max() - np.log(np.exp(z - z.max()).sum())


def _penalty(n, alpha):
  return ((5.0 + n) / 6.0) ** alpha


def _naive_greedy(model, params):
  """Per row: the argmax path over non-EOS tokens from full forward passes on the prefix, and
  every hypothesis 'path[:n] + EOS' on it with its score log P / lp(n + 1), and which of these
  plain greedy decoding (stop at the first argmax EOS, or at the length limit) returns."""
  fwd = jax.jit(lambda p, s, t: model.apply({"params": p}, s, t))
  tgt = np.full((len(SRC), MAX_LEN), PAD_ID, np.int32)
  tgt[:, 0] = BOS_ID
  rows = [{"path": [], "cands": [], "greedy": None, "cum": 0.0} for _ in SRC]
  for i in range(max(MAX_OUT) + 1):
    logits = np.asarray(fwd(params, SRC, tgt))[:, i]  # causal: positions > i are not seen
    for b, row in enumerate(rows):
      if i > MAX_OUT[b]:
        continue
      lp = _log_softmax(logits[b])
      lp[[PAD_ID, BOS_ID]] = -np.inf
      row["cands"].append(((row["cum"] + lp[EOS_ID]) / _penalty(i + 1, ALPHA),
                           row["path"] + [EOS_ID]))
      if row["greedy"] is None and (i == MAX_OUT[b] or np.argmax(lp) == EOS_ID):
        row["greedy"] = i
      lp[EOS_ID] = -np.inf
      nxt = int(np.argmax(lp))
      row["cum"] += lp[nxt]
      row["path"].append(nxt)
      if i + 1 < MAX_LEN:
        tgt[b, i + 1] = nxt
  return rows


def _until_eos(row):
  return list(row[:list(row).index(EOS_ID) + 1])


@pytest.mark.parametrize("name", list(EOS_SHIFT))
@pytest.mark.parametrize("beam", [1, 4])
def test_cached_decoding_equals_full_forward(setup, name, beam):
  _, _, run = setup
  tokens, scores = run(name, beam, True)
  full_tokens, full_scores = run(name, beam, False)
  np.testing.assert_array_equal(tokens, full_tokens)
  np.testing.assert_allclose(scores, full_scores, atol=1e-4, rtol=1e-5)


@pytest.mark.parametrize("name", list(EOS_SHIFT))
@pytest.mark.parametrize("beam", [1, 4])
def test_output_lengths_and_tokens(setup, name, beam):
  _, _, run = setup
  tokens, scores = run(name, beam, True)
  assert tokens.shape == (3, MAX_LEN) and np.all(np.isfinite(scores))
  for b, row in enumerate(tokens):
    assert EOS_ID in row, f"row {b} has no EOS"
    end = list(row).index(EOS_ID)
    assert end <= MAX_OUT[b], (b, end)
    assert not np.isin(row[:end], [PAD_ID, BOS_ID]).any(), row
    assert np.all(row[end + 1:] == PAD_ID), row
    if name == "no_eos":
      assert end == MAX_OUT[b], (b, end)  # EOS only where it is forced


def test_greedy_without_free_eos_equals_naive_argmax_loop(setup):
  # With EOS never in the top two, the single live hypothesis is the argmax path and the only
  # finished one is that path cut at the length limit.
  model, params, run = setup
  tokens, scores = run("no_eos", 1, True)
  for b, ref in enumerate(_naive_greedy(model, params["no_eos"])):
    score, want = ref["cands"][ref["greedy"]]
    assert ref["greedy"] == MAX_OUT[b]
    assert _until_eos(tokens[b]) == want
    np.testing.assert_allclose(scores[b], score, rtol=1e-5)


@pytest.mark.parametrize("name", ["random", "eos_up"])
def test_greedy_is_on_the_argmax_path_and_no_worse_than_plain_greedy(setup, name):
  # Beam size 1 keeps an ended hypothesis apart from the live one, so it may return an earlier
  # or later stop than plain greedy decoding; what it must return is 'argmax path[:n] + EOS'
  # for some n, scored correctly, and scoring at least as well as plain greedy. ('eos_up' has
  # a row where the two differ: EOS is third at the first step and second at the next.)
  model, params, run = setup
  tokens, scores = run(name, 1, True)
  for b, ref in enumerate(_naive_greedy(model, params[name])):
    got = _until_eos(tokens[b])
    n = len(got) - 1
    score, want = ref["cands"][n]
    assert got == want, (b, got, ref["path"])
    np.testing.assert_allclose(scores[b], score, atol=1e-4)
    assert scores[b] >= ref["cands"][ref["greedy"]][0] - 1e-5


# -- beam search on a toy next-token table (no model) ---------------------------------------------

V = 6  # toy vocabulary: PAD 0, 1, BOS 2, EOS 3, 4, 5
OUTPUTS = (1, 4, 5)  # tokens a hypothesis may contain before EOS


def _table_step_fn(table, beam):
  """step_fn whose logits are table[row, index, previous token, last token], [B, L, V, V, V]."""
  table = jnp.asarray(table, jnp.float32)

  def step_fn(seqs, last, index, cache):
    row = jnp.arange(seqs.shape[0]) // beam
    prev = jnp.where(index > 0, seqs[:, jnp.maximum(index - 1, 0)], BOS_ID)
    return table[row, index, prev, last], cache

  return step_fn


def _brute_force(table, b, max_out, alpha, word_reward=0.0):
  """(score, tokens incl. EOS) of every hypothesis with at most max_out tokens before EOS."""
  log_p = table - np.log(np.exp(table).sum(-1, keepdims=True))  # as beam_search normalises
  out = []
  for n in range(max_out + 1):
    for body in itertools.product(OUTPUTS, repeat=n):
      seq = [BOS_ID, *body, EOS_ID]
      lp = sum(log_p[b, t, seq[t - 1] if t else BOS_ID, seq[t], seq[t + 1]] for t in range(n + 1))
      out.append((lp / _penalty(n + 1, alpha) + word_reward * (n + 1), list(seq[1:])))
  return out


def _random_table(seed, batch, length, pad_bos_logit=-np.inf):
  table = np.random.default_rng(seed).normal(scale=2.0, size=(batch, length, V, V, V))
  table[..., [PAD_ID, BOS_ID]] = pad_bos_logit
  return table


@pytest.mark.parametrize("alpha,word_reward", [(0.0, 0.0), (0.6, 0.0), (1.5, 0.0), (0.0, 1.5),
                                               (1.0, 0.4)])
def test_exhaustive_beam_finds_the_brute_force_best(alpha, word_reward):
  # With a word reward the early stop's bound must still never cut off the best hypothesis.
  max_out = [3, 2, 0]
  beam, max_len = len(OUTPUTS) ** max(max_out), max(max_out) + 1  # a beam holding every prefix
  table = _random_table(7, len(max_out), max_len)
  tokens, scores = beam_search(_table_step_fn(table, beam), None, jnp.asarray(max_out, jnp.int32),
                               beam_size=beam, max_len=max_len, alpha=alpha,
                               word_reward=word_reward)
  for b, m in enumerate(max_out):
    best_score, best = max(_brute_force(table, b, m, alpha, word_reward))
    assert list(np.asarray(tokens[b])) == best + [PAD_ID] * (max_len - len(best)), b
    np.testing.assert_allclose(float(scores[b]), best_score, rtol=1e-5)


def _two_hypothesis_table(small=1e-4):
  """Only two hypotheses are likely: [EOS] (P 0.55) and [4, 4, 4, EOS] (P about 0.45)."""
  probs = np.full((1, 4, V, V, V), 0.25)  # default: 1, EOS, 4, 5 equally likely
  probs[..., [PAD_ID, BOS_ID]] = 0.0
  probs[0, 0, BOS_ID, BOS_ID, [EOS_ID, 4, 1, 5]] = [0.55, 0.45 - 2 * small, small, small]
  probs[0, 1, BOS_ID, 4, [4, 1, 5, EOS_ID]] = [1 - 3 * small, small, small, small]
  probs[0, 2, 4, 4, [4, 1, 5, EOS_ID]] = [1 - 3 * small, small, small, small]
  probs[0, 3, 4, 4, [EOS_ID, 1, 4, 5]] = [1 - 3 * small, small, small, small]
  with np.errstate(divide="ignore"):
    return np.log(probs)


@pytest.mark.parametrize("beam", [1, 2])
@pytest.mark.parametrize("alpha", [0.0, 0.6, 1.0, 2.0])
def test_alpha_trades_a_short_for_a_long_hypothesis(beam, alpha):
  small = 1e-4
  table = _two_hypothesis_table(small)
  short = math.log(0.55) / _penalty(1, alpha)
  long = (math.log(0.45 - 2 * small) + 3 * math.log(1 - 3 * small)) / _penalty(4, alpha)
  assert (short > long) == (alpha < 0.7)  # the two scores cross at alpha = 0.715
  want = [EOS_ID] if short > long else [4, 4, 4, EOS_ID]
  assert max(_brute_force(table, 0, 3, alpha))[1] == want
  tokens, scores = beam_search(_table_step_fn(table, beam), None, jnp.asarray([3], jnp.int32),
                               beam_size=beam, max_len=4, alpha=alpha)
  assert _until_eos(np.asarray(tokens[0])) == want
  np.testing.assert_allclose(float(scores[0]), max(short, long), rtol=1e-5)


@pytest.mark.parametrize("beam", [1, 2])
@pytest.mark.parametrize("word_reward", [0.0, 0.05, 0.1, 1.0])
def test_word_reward_trades_a_short_for_a_long_hypothesis(beam, word_reward):
  # The alpha test's table at alpha 0: [EOS] scores log 0.55 + r and [4, 4, 4, EOS]
  # log(0.45 - 2e-4) + 3 log(1 - 3e-4) + 4r; they cross at r = 0.067.
  small = 1e-4
  table = _two_hypothesis_table(small)
  short = math.log(0.55) + word_reward
  long = math.log(0.45 - 2 * small) + 3 * math.log(1 - 3 * small) + 4 * word_reward
  assert (short > long) == (word_reward < 0.067)
  want = [EOS_ID] if short > long else [4, 4, 4, EOS_ID]
  tokens, scores = beam_search(_table_step_fn(table, beam), None, jnp.asarray([3], jnp.int32),
                               beam_size=beam, max_len=4, alpha=0.0, word_reward=word_reward)
  assert _until_eos(np.asarray(tokens[0])) == want
  np.testing.assert_allclose(float(scores[0]), max(short, long), rtol=1e-5)


@pytest.mark.parametrize("beam", [1, 3])
def test_pad_and_bos_are_never_output_even_when_likely(beam):
  max_out = [4, 1]
  table = _random_table(11, len(max_out), 5, pad_bos_logit=6.0)  # PAD and BOS dominate
  tokens, _ = beam_search(_table_step_fn(table, beam), None, jnp.asarray(max_out, jnp.int32),
                          beam_size=beam, max_len=5, alpha=0.6)
  for b, row in enumerate(np.asarray(tokens)):
    body = _until_eos(row)[:-1]
    assert len(body) <= max_out[b] and not set(body) & {PAD_ID, BOS_ID}, row
