"""The PyTorch peer for `train_step.py`: the same Transformer and train step in PyTorch eager.

`torch.nn.Transformer` (post-LN, ReLU, dropout P_drop) under one embedding matrix shared by
the source embedding, the target embedding and the pre-softmax projection (Section 3.4), inputs
scaled by sqrt(d_model) plus sinusoidal positions (Section 3.5), label-smoothed cross entropy
(eps_ls 0.1, PAD ignored) and Adam(0.9, 0.98, 1e-9) (Section 5.3). One train step is
zero_grad, forward, loss, backward and the optimizer update, as in our JAX step.

torch is an optional benchmark dependency (`pip install torch==2.13.0`, the CPU build);
`available()` says whether it can be imported.
"""

from __future__ import annotations

import math

import numpy as np

PAD = 0


def available() -> str | None:
  """The installed torch version, or None when torch cannot be imported."""
  try:
    import torch
  except ImportError:
    return None
  return torch.__version__


def _model(vocab: int, d_model: int, h: int, n_layers: int, d_ff: int, p_drop: float,
           max_len: int):
  import torch
  from torch import nn

  class Peer(nn.Module):
    """Encoder-decoder with shared embeddings; logits = decoder output @ embedding^T."""

    def __init__(self):
      super().__init__()
      self.embed = nn.Embedding(vocab, d_model)
      nn.init.normal_(self.embed.weight, std=d_model ** -0.5)
      self.core = nn.Transformer(d_model=d_model, nhead=h, num_encoder_layers=n_layers,
                                 num_decoder_layers=n_layers, dim_feedforward=d_ff,
                                 dropout=p_drop, batch_first=True)
      self.drop = nn.Dropout(p_drop)
      pos = torch.arange(max_len, dtype=torch.float32)[:, None]
      div = torch.exp(torch.arange(0, d_model, 2, dtype=torch.float32)
                      * (-math.log(10000.0) / d_model))
      table = torch.zeros(max_len, d_model)
      table[:, 0::2], table[:, 1::2] = torch.sin(pos * div), torch.cos(pos * div)
      self.register_buffer("positions", table)

    def _inputs(self, tokens):
      x = self.embed(tokens) * math.sqrt(d_model) + self.positions[: tokens.shape[1]]
      return self.drop(x)

    def forward(self, src, tgt_in):
      n = tgt_in.shape[1]
      causal = torch.triu(torch.ones(n, n, dtype=torch.bool, device=tgt_in.device),
                          diagonal=1)  # True = masked
      out = self.core(self._inputs(src), self._inputs(tgt_in), tgt_mask=causal,
                      tgt_is_causal=True, src_key_padding_mask=src == PAD,
                      memory_key_padding_mask=src == PAD, tgt_key_padding_mask=tgt_in == PAD)
      return out @ self.embed.weight.T

  return Peer()


def runner(size: dict, seed: int = 0, device: str = "cpu", dtype: str = "float32",
           compile_model: bool = False, warmup: int = 2):
  """Builds the PyTorch peer at `size` and takes `warmup` warm-up steps.

  Args:
    size: vocab, d_model, h, n_layers, d_ff, batch, length (as in train_step.SIZES).
    seed: seeds torch and the random batch (token ids 4..vocab-1, no PAD).
    device: torch device, 'cpu' or 'cuda'.
    dtype: 'float32', or 'bfloat16' for the forward and backward under torch.autocast (as
      our model.dtype: parameters and Adam stay float32).
    compile_model: wrap the model in torch.compile (compiled in the warm-up steps).

  Returns:
    (parameter count, step) where step() takes one train step and returns its loss (a host
    sync, as the JAX side waits for its step).
  """
  import torch
  import torch.nn.functional as F

  torch.manual_seed(seed)
  model = _model(size["vocab"], size["d_model"], size["h"], size["n_layers"], size["d_ff"],
                 p_drop=0.1, max_len=size["length"]).to(device)
  model.train()
  opt = torch.optim.Adam(model.parameters(), lr=1e-4, betas=(0.9, 0.98), eps=1e-9)
  forward = torch.compile(model) if compile_model else model
  rng = np.random.default_rng(seed)
  shape = (size["batch"], size["length"])
  src, tgt_in, tgt_out = (torch.from_numpy(rng.integers(4, size["vocab"], size=shape)).to(device)
                          for _ in range(3))
  autocast = torch.autocast(device_type=device, dtype=torch.bfloat16,
                            enabled=dtype == "bfloat16")

  def step():
    opt.zero_grad(set_to_none=True)
    with autocast:
      logits = forward(src, tgt_in)
      loss = F.cross_entropy(logits.float().reshape(-1, size["vocab"]), tgt_out.reshape(-1),
                             ignore_index=PAD, label_smoothing=0.1)
    loss.backward()
    opt.step()
    return loss.detach().item()

  for _ in range(warmup):
    step()
  return sum(p.numel() for p in model.parameters()), step
