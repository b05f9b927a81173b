"""Tests for transformer_jax.losses and the learning-rate schedule in transformer_jax.optim.

The label-smoothed loss is checked against its closed form with an explicit smoothed target
distribution q, computed in float64 numpy; its gradient against (softmax(z) - q) / tokens; the
schedule against Eq. 3 written in plain Python.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from transformer_jax.losses import PAD_ID, label_smoothed_cross_entropy
from transformer_jax.optim import paper_schedule

B, T, C = 3, 5, 11


@pytest.fixture(scope="module")
def batch():
  """float32 logits [B, T, C] and int32 labels [B, T] with PAD at a few positions."""
  rng = np.random.default_rng(0)
  logits = (3.0 * rng.normal(size=(B, T, C))).astype(np.float32)
  labels = rng.integers(1, C, size=(B, T)).astype(np.int32)
  labels[0, 3:] = PAD_ID
  labels[2, :] = PAD_ID  # a row with no targets at all
  labels[1, 0] = C - 1  # the last class is a label somewhere
  return logits, labels


def _targets(labels: np.ndarray, eps: float) -> np.ndarray:
  """The smoothed target distribution q [B, T, C]: 1 - eps on the label, eps/(C-1) elsewhere."""
  q = np.full(labels.shape + (C,), eps / (C - 1))
  for idx in np.ndindex(labels.shape):
    q[idx + (labels[idx],)] = 1.0 - eps
  return q


def _log_softmax(z: np.ndarray) -> np.ndarray:
  z = z.astype(np.float64)
  m = z.max(-1, keepdims=True)
  return z - m - np.log(np.exp(z - m).sum(-1, keepdims=True))


@pytest.mark.parametrize("eps", [0.0, 0.1, 0.2])
def test_loss_matches_closed_form(batch, eps):
  logits, labels = batch
  loss, nll, n = label_smoothed_cross_entropy(jnp.asarray(logits), jnp.asarray(labels), eps)
  log_p = _log_softmax(logits)
  q = _targets(labels, eps)
  want_loss = want_nll = 0.0
  for idx in np.ndindex(labels.shape):
    if labels[idx] == PAD_ID:
      continue
    cross = -sum(q[idx][j] * log_p[idx][j] for j in range(C))
    entropy = -sum(p * math.log(p) for p in q[idx] if p > 0)
    want_loss += cross - entropy
    want_nll += -log_p[idx][labels[idx]]
  assert int(n) == int(np.sum(labels != PAD_ID)) == 8
  np.testing.assert_allclose(float(nll), want_nll, rtol=1e-5)
  np.testing.assert_allclose(float(loss), want_loss, rtol=1e-5, atol=1e-5)
  if eps == 0.0:
    np.testing.assert_allclose(float(loss), float(nll), rtol=1e-6)


def test_loss_is_zero_for_the_target_itself():
  # Logits whose softmax is q exactly: cross entropy equals H(q), so the loss is 0.
  eps = 0.1
  labels = np.array([[4, 7]], np.int32)
  logits = np.log(_targets(labels, eps)).astype(np.float32)
  loss, _, _ = label_smoothed_cross_entropy(jnp.asarray(logits), jnp.asarray(labels), eps)
  assert abs(float(loss)) < 1e-5


def test_pad_positions_are_ignored(batch):
  logits, labels = batch
  noisy = logits.copy()
  pad = labels == PAD_ID
  noisy[pad] = 1e4 * np.random.default_rng(1).normal(size=(int(pad.sum()), C))
  a = label_smoothed_cross_entropy(jnp.asarray(logits), jnp.asarray(labels), 0.1)
  b = label_smoothed_cross_entropy(jnp.asarray(noisy), jnp.asarray(labels), 0.1)
  np.testing.assert_allclose(np.array(a), np.array(b), rtol=1e-6)


@pytest.mark.parametrize("eps", [0.0, 0.1])
def test_gradient_is_softmax_minus_target(batch, eps):
  logits, labels = batch

  def mean_loss(z):
    loss, _, n = label_smoothed_cross_entropy(z, jnp.asarray(labels), eps)
    return loss / n

  grad = np.asarray(jax.grad(mean_loss)(jnp.asarray(logits)))
  p = np.exp(_log_softmax(logits))
  mask = (labels != PAD_ID)[..., None]
  want = np.where(mask, (p - _targets(labels, eps)) / np.sum(labels != PAD_ID), 0.0)
  np.testing.assert_allclose(grad, want, atol=1e-6)


@pytest.mark.parametrize("d_model,warmup", [(512, 4000), (1024, 10)])
def test_paper_schedule_is_eq3(d_model, warmup):
  schedule = paper_schedule(d_model, warmup)
  counts = [0, 1, warmup // 2, warmup - 2, warmup - 1, warmup, 3 * warmup, 25 * warmup]
  for count in counts:
    step = count + 1
    want = d_model ** -0.5 * min(step ** -0.5, step * warmup ** -1.5)
    np.testing.assert_allclose(float(schedule(count)), want, rtol=1e-5, err_msg=f"count={count}")
  # The peak is at step = warmup, i.e. count = warmup - 1, where the two branches meet.
  peak = float(schedule(warmup - 1))
  np.testing.assert_allclose(peak, (d_model * warmup) ** -0.5, rtol=1e-5)
  assert peak > float(schedule(warmup - 2)) and peak > float(schedule(warmup))


def test_paper_schedule_scale():
  np.testing.assert_allclose(float(paper_schedule(512, 4000, 2.0)(99)),
                             2.0 * 512 ** -0.5 * 100 * 4000 ** -1.5, rtol=1e-5)


@pytest.mark.parametrize("warmup", [0, -5])
def test_paper_schedule_rejects_no_warmup(warmup):
  with pytest.raises(ValueError, match=r"config\.train\.warmup_steps"):
    paper_schedule(512, warmup)
