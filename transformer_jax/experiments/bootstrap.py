"""A paired bootstrap over dev sentences that uses every seed of both groups.

sacrebleu's paired bootstrap (`sacrebleu.significance`, after Koehn 2004 and Moses'
bootstrap-hypothesis-difference-significance.pl) compares one system with one baseline. A sweep
has several seeds per group, so here each resample draws dev sentence indices once (with
replacement, sacrebleu's fixed seed 12345) and scores every seed of both groups on those same
sentences; the statistic is the difference of the two groups' mean corpus BLEU over seeds. The
p-value is sacrebleu's: the fraction of resamples whose centred absolute difference exceeds the
observed absolute difference, with sacrebleu's +1 correction. With one seed per group it is
exactly sacrebleu's PairedTest p-value (tested).

What it measures: how likely a seed-mean BLEU difference this large is from the dev set's
sentence sampling alone. It does not measure training noise (seed to seed); the Welch interval
in `compare` does, where a group has two seeds or more.

BLEU is sacrebleu's default corpus BLEU (13a tokens, exp smoothing), the one run records store
as dev_bleu; per-sentence sufficient statistics come from sacrebleu's public `sentence_score`
(its n-gram counts do not depend on the sentence-level smoothing) and corpus scores from
`BLEU.compute_bleu`.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from sacrebleu.metrics import BLEU

SAMPLES = 1000  # sacrebleu's default number of bootstrap resamples
SEED = 12345  # sacrebleu's default SACREBLEU_SEED
MAX_ORDER = 4


def sentence_stats(hypotheses: Sequence[str], references: Sequence[str]) -> np.ndarray:
  """Per-sentence BLEU sufficient statistics, int64 [N, 2 * 4 + 2]: matching n-grams (n = 1..4),
  total n-grams (n = 1..4), hypothesis length, reference length (13a tokens).

  Raises:
    ValueError: the two lists differ in length.
  """
  if len(hypotheses) != len(references):
    raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} references")
  metric = BLEU(effective_order=True)  # counts are the same; this only silences its warning
  rows = []
  for hyp, ref in zip(hypotheses, references):
    s = metric.sentence_score(hyp, [ref])
    rows.append([*s.counts, *s.totals, s.sys_len, s.ref_len])
  return np.asarray(rows, dtype=np.int64).reshape(len(rows), 2 * MAX_ORDER + 2)


def corpus_bleu(stats: np.ndarray) -> float:
  """sacrebleu's default corpus BLEU (exp smoothing) of summed statistics [10], in [0, 100]."""
  s = [int(x) for x in stats]
  return BLEU.compute_bleu(s[:MAX_ORDER], s[MAX_ORDER:2 * MAX_ORDER], s[-2], s[-1],
                           smooth_method="exp").score


def resample_weights(n: int, samples: int = SAMPLES, seed: int = SEED) -> np.ndarray:
  """How often each of `n` sentences is drawn in each resample, int64 [samples, n]; the draws
  are sacrebleu's (numpy default_rng(seed).choice(n, (samples, n)))."""
  idx = np.random.default_rng(seed).choice(n, size=(samples, n), replace=True)  # [B, N]
  rows = np.repeat(np.arange(samples), n)
  weights = np.zeros((samples, n), dtype=np.int64)
  np.add.at(weights, (rows, idx.ravel()), 1)
  return weights


def resampled_mean_bleu(systems: Sequence[np.ndarray], weights: np.ndarray) -> np.ndarray:
  """Mean corpus BLEU over `systems` (one [N, 10] statistics array per seed) on each resample,
  float64 [samples]."""
  scores = np.zeros(weights.shape[0])
  for stats in systems:
    sums = weights @ stats  # [B, N] x [N, 10] -> [B, 10]
    scores += [corpus_bleu(row) for row in sums]
  return scores / len(systems)


def p_value(reference: Sequence[np.ndarray], other: Sequence[np.ndarray],
            weights: np.ndarray, reference_scores: np.ndarray | None = None) -> float:
  """sacrebleu's paired bootstrap p-value of `other`'s seed-mean BLEU against `reference`'s.

  Args:
    reference, other: per-seed sentence statistics [N, 10] of the two groups, all scored
      against the same N references.
    weights: resample_weights(N).
    reference_scores: resampled_mean_bleu(reference, weights), if already computed.

  Returns:
    p in (0, 1]; 1.0 when the two groups score the same on every resample (e.g. identical
    translations), where sacrebleu's statistic degenerates and would say 0.001.
  """
  observed = abs(np.mean([corpus_bleu(s.sum(0)) for s in other])
                 - np.mean([corpus_bleu(s.sum(0)) for s in reference]))
  if reference_scores is None:
    reference_scores = resampled_mean_bleu(reference, weights)
  diffs = np.abs(resampled_mean_bleu(other, weights) - reference_scores)
  if not diffs.any():
    return 1.0
  return float((np.sum(diffs - diffs.mean() > observed) + 1) / (len(diffs) + 1))
