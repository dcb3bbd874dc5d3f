"""Shared pieces of the PyTorch reference (attnscope_ref.py): the special token ids, decoding
and model constants, the greedy length limit and the attention distributions (soft, hard).
"""

from __future__ import annotations

from typing import Callable

import torch

PAD_ID, BOS_ID, EOS_ID, UNK_ID = 0, 1, 2, 3
SPECIALS = ["<pad>", "<s>", "</s>", "<unk>"]
# The longest output accepted, in pieces (decode.rs MAX_OUTPUT).
MAX_OUTPUT = 256
# Bias of a masked attention position (softmax weight exactly 0).
MASKED = -1e9
LAYER_NORM_EPS = 1e-5
POSITION_TABLE = 512


def default_max_len(src_len: int) -> int:
    """Longest greedy output for a source of `src_len` pieces (decode.rs default_max_len)."""
    return min(2 * src_len + 10, MAX_OUTPUT)


def _one_hot_argmax(scores: torch.Tensor) -> torch.Tensor:
    """One-hot rows at the argmax of the last dimension (torch.argmax: first on ties, as Rust)."""
    idx = scores.argmax(dim=-1, keepdim=True)
    return torch.zeros_like(scores).scatter_(-1, idx, 1.0)


def attention_fn(mode: str = "soft") -> Callable[[torch.Tensor], torch.Tensor]:
    """Masked scores `(..., S)` to the weights used: `soft` (softmax) or `hard` (one-hot argmax)."""
    if mode == "soft":
        return lambda s: torch.softmax(s, dim=-1)
    if mode == "hard":
        return _one_hot_argmax
    raise ValueError(f"unknown attention mode {mode!r}; the reference knows soft and hard")
