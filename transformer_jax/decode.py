"""Beam search with a per-layer key/value cache (paper Section 6.1).

The paper's setting: beam size 4, length penalty alpha = 0.6, maximum output length = input
length + 50, stopping early when no live hypothesis can still beat the finished ones. Greedy
decoding is beam size 1. The length penalty is GNMT's, lp(n) = ((5 + n) / 6)^alpha, and a
finished hypothesis of n tokens (EOS included) scores log P / lp(n) + word_reward * n. The word
reward (Murray & Chiang 2018, "Correcting Length Bias in Neural Machine Translation"; Marian's
--word-penalty) is not in the paper: 0.0, the default, is the paper's score.

Shape key: B batch, K beam size, L longest output (tokens incl. EOS), S source positions,
C vocabulary.
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp

from transformer_jax.model import PAD_ID, Transformer

BOS_ID, EOS_ID = 2, 3
_NEG_INF = -jnp.inf

# step_fn(seqs [B*K, L+1], last_tokens [B*K], index, cache) -> (logits [B*K, C], cache)
StepFn = Callable[[jax.Array, jax.Array, jax.Array, Any], tuple[jax.Array, Any]]


def length_penalty(length: jax.Array, alpha: float) -> jax.Array:
  """GNMT length penalty ((5 + length) / 6)^alpha (Wu et al. 2016), as used in Section 6.1."""
  return ((5.0 + jnp.asarray(length, jnp.float32)) / 6.0) ** alpha


def beam_search(step_fn: StepFn, cache: Any, max_out: jax.Array, *, beam_size: int,
                max_len: int, alpha: float, word_reward: float = 0.0
                ) -> tuple[jax.Array, jax.Array]:
  """Beam search over `step_fn`, inside one `lax.while_loop` (jit-able).

  Args:
    step_fn: gives next-token logits for every hypothesis; see StepFn. Every leaf of `cache`
      must have leading dimension B*K (it is reordered as beams are selected).
    cache: initial decoder state (may be None).
    max_out: int32 [B], most output tokens before EOS for each sentence (input length + 50);
      EOS is forced after that.
    beam_size: K.
    max_len: L, static bound on output tokens incl. EOS; must exceed max(max_out).
    alpha: length-penalty exponent.
    word_reward: nats added per output token (EOS included) to a finished hypothesis's score;
      >= 0 (0 = the paper). A positive reward lengthens the output; it also loosens the early
      stop's bound, so decoding runs longer.

  Returns:
    (tokens int32 [B, L] of the best hypothesis, EOS then PAD after its end; scores float32 [B],
    log P / lp(n) + word_reward * n).
  """
  batch, k = max_out.shape[0], beam_size
  seqs = jnp.full((batch, k, max_len + 1), PAD_ID, jnp.int32).at[:, :, 0].set(BOS_ID)
  # Only beam 0 is live at the start, so the first expansion does not repeat itself K times.
  live_lp = jnp.tile(jnp.array([0.0] + [_NEG_INF] * (k - 1), jnp.float32), (batch, 1))
  fin_seqs = seqs
  fin_scores = jnp.full((batch, k), _NEG_INF, jnp.float32)
  max_penalty = length_penalty(max_out + 1, alpha)  # [B], the largest lp a hypothesis can get
  max_reward = word_reward * (max_out + 1).astype(jnp.float32)  # [B], the largest reward

  def cond(state):
    i, _, live_lp, _, fin_scores, _ = state
    # log P only falls as a hypothesis grows, so live / lp(longest) + the longest's reward
    # bounds its best final score.
    best_live = live_lp[:, 0] / max_penalty + max_reward
    done = (best_live < jnp.min(fin_scores, axis=1)) | jnp.all(live_lp == _NEG_INF, axis=1)
    return (i < max_len) & ~jnp.all(done)

  def body(state):
    i, seqs, live_lp, fin_seqs, fin_scores, cache = state
    logits, cache = step_fn(seqs.reshape(batch * k, -1), seqs[:, :, i].reshape(-1), i, cache)
    log_p = jax.nn.log_softmax(logits.astype(jnp.float32)).reshape(batch, k, -1)  # [B, K, C]
    vocab = log_p.shape[-1]
    ids = jnp.arange(vocab)
    too_long = (i + 1 > max_out)[:, None, None]  # [B, 1, 1]
    # PAD and BOS are never outputs; past max_out only EOS is.
    log_p = jnp.where((ids == PAD_ID) | (ids == BOS_ID) | (too_long & (ids != EOS_ID)),
                      _NEG_INF, log_p)
    cand = (live_lp[:, :, None] + log_p).reshape(batch, k * vocab)  # [B, K*C]
    top_lp, top_idx = jax.lax.top_k(cand, 2 * k)  # [B, 2K]
    parent, token = top_idx // vocab, top_idx % vocab
    top_seqs = jnp.take_along_axis(seqs, parent[:, :, None], axis=1)  # [B, 2K, L+1]
    top_seqs = top_seqs.at[:, :, i + 1].set(token)
    ended = token == EOS_ID

    # Finished: keep the K best of the old finished and the candidates that just ended.
    new_scores = jnp.where(ended, top_lp / length_penalty(i + 1, alpha) + word_reward * (i + 1),
                           _NEG_INF)
    all_scores = jnp.concatenate([fin_scores, new_scores], axis=1)  # [B, 3K]
    all_seqs = jnp.concatenate([fin_seqs, top_seqs], axis=1)  # [B, 3K, L+1]
    fin_scores, keep = jax.lax.top_k(all_scores, k)
    fin_seqs = jnp.take_along_axis(all_seqs, keep[:, :, None], axis=1)

    # Live: the K best candidates that did not end.
    live_lp, keep = jax.lax.top_k(jnp.where(ended, _NEG_INF, top_lp), k)  # [B, K]
    seqs = jnp.take_along_axis(top_seqs, keep[:, :, None], axis=1)
    rows = (jnp.arange(batch)[:, None] * k + jnp.take_along_axis(parent, keep, 1)).reshape(-1)
    cache = jax.tree_util.tree_map(lambda x: x[rows], cache)
    return i + 1, seqs, live_lp, fin_seqs, fin_scores, cache

  state = (jnp.int32(0), seqs, live_lp, fin_seqs, fin_scores, cache)
  _, seqs, live_lp, fin_seqs, fin_scores, _ = jax.lax.while_loop(cond, body, state)
  # A sentence with no finished hypothesis (only if max_len cut it) falls back to its best live one.
  has_fin = fin_scores[:, 0] > _NEG_INF
  best = jnp.where(has_fin[:, None], fin_seqs[:, 0], seqs[:, 0])
  score = jnp.where(has_fin, fin_scores[:, 0],
                    live_lp[:, 0] / length_penalty(max_len, alpha) + word_reward * max_len)
  return best[:, 1:], score


def _max_out(src: jax.Array, max_extra_len: int) -> jax.Array:
  """Input length (EOS excluded) + max_extra_len per sentence; 0 for an all-PAD row. [B] int32."""
  n = jnp.sum(src != PAD_ID, axis=1)
  return jnp.where(n == 0, 0, n - 1 + max_extra_len).astype(jnp.int32)


@functools.partial(jax.jit, static_argnames=("model", "beam_size", "alpha", "max_extra_len",
                                             "use_cache", "word_reward"))
def generate(params: Any, src: jax.Array, *, model: Transformer, beam_size: int = 4,
             alpha: float = 0.6, max_extra_len: int = 50, use_cache: bool = True,
             word_reward: float = 0.0) -> tuple[jax.Array, jax.Array]:
  """Translates a batch by beam search (Section 6.1).

  Args:
    params: model parameters (unboxed).
    src: int32 [B, S] source ids ending in EOS, PAD-padded.
    model: the Transformer (static).
    beam_size: K; 1 is greedy.
    alpha: length penalty.
    max_extra_len: output may be this much longer than the input (50 in the paper).
    use_cache: True reuses per-layer keys/values (O(L) per step); False recomputes the whole
      prefix with a full decoder pass every step (for tests and benchmarks).
    word_reward: nats per output token added to a finished hypothesis's score (0 = paper).

  Returns:
    (tokens int32 [B, S + max_extra_len], scores float32 [B]); see `beam_search`.
  """
  variables = {"params": params}
  k = beam_size
  max_len = src.shape[1] + max_extra_len
  memory = model.apply(variables, src, method=Transformer.encode)  # [B, S, D]
  src_k = jnp.repeat(src, k, axis=0)  # [B*K, S]
  memory_k = jnp.repeat(memory, k, axis=0)  # [B*K, S, D]

  if use_cache:
    caches = model.apply(variables, memory_k, max_len, method=Transformer.init_cache)
    # Projected memory is the same for every beam of a sentence: keep it out of the reorder.
    static = [{"mem_k": c["mem_k"], "mem_v": c["mem_v"]} for c in caches]
    dynamic = [{"k": c["k"], "v": c["v"]} for c in caches]

    def step_fn(seqs, tokens, index, cache):
      full = [dict(d, **s) for d, s in zip(cache, static)]
      logits, full = model.apply(variables, tokens, full, index, src_k,
                                 method=Transformer.decode_step)
      return logits, [{"k": c["k"], "v": c["v"]} for c in full]
  else:
    dynamic = None

    def step_fn(seqs, tokens, index, cache):
      logits = model.apply(variables, seqs[:, :max_len], memory_k, src_k,
                           method=Transformer.decode)  # [B*K, L, C]
      return jax.lax.dynamic_index_in_dim(logits, index, axis=1, keepdims=False), cache

  return beam_search(step_fn, dynamic, _max_out(src, max_extra_len), beam_size=k,
                     max_len=max_len, alpha=alpha, word_reward=word_reward)
