"""PyTorch reference implementations of attnscope's translation models.

A benchmark-only companion to the Rust crate `attnscope-model` (crates/model): the same
architectures as plain `torch.nn.Module`s whose parameter names are exactly the tensor names
in our `model.safetensors`, so `load()` reads a model directory written by `attnscope train`
(or by the Rust test fixtures) with `load_state_dict(strict=True)`.

    import attnscope_ref as ar
    model = ar.load("models/bahdanau")
    ids = ar.source_ids(model, "I am cold.")            # BPE ids with </s> appended
    out, attention = ar.greedy(model, ids)               # the CLI's `translate --format json`
    ar.detokenize(model, out)                            # "J'ai froid."
    ar.greedy_batch(model, [ids, ...])                   # the CLI's batched text path
    model.train(); model.loss(ar.collate(pairs)).backward()   # a training step

Architectures (config.json `architecture`):

- `gru` (crates/model/src/networks/rnn.rs, gru.rs): bidirectional GRU encoder, GRU decoder with an
  `additive` (Bahdanau), `general` or `dot` (Luong) scorer. The attention uses the *previous*
  decoder state; the GRU reads `[emb(y_{t-1}); c_t]`; `tanh(W_r [s_t; c_t; emb])` feeds the
  output layer. GRU gates follow PyTorch's (r, z, n) layout, with the hidden bias inside
  `r * (W_hn h + b_hn)`.
- `transformer` (crates/model/src/networks/transformer/mod.rs): pre-norm encoder-decoder, sinusoidal
  positions, embeddings scaled by sqrt(d), final layer norms, KV-cached greedy steps.

Decoding (crates/model/src/decoding/decode.rs): `<s>`=1 starts the target, `</s>`=2 ends it, the
length limit is `min(2 S + 10, 256)` for S source pieces (</s> included). Attention mode
`soft` is a softmax of the masked scores; `hard` is a one-hot at their argmax (the first on
ties), which a model trained with `attention_training: hard` uses by default. For the
Transformer the mode applies to every layer's and head's cross-attention, and the attention
row reported per step is the mean over heads of the last layer's cross-attention.

The encoder GRU runs step by step as the Rust code does (`gru_kernel="loop"`), or with
PyTorch's fused GRU kernel (`gru_kernel="fused"`, `torch._VF.gru`, what `nn.GRU` calls) for
a fairer speed comparison; both give the same translations.
"""

from __future__ import annotations

import json
import math  # noqa: F401  (kept so that the module's names are unchanged by the split)
import os
from dataclasses import dataclass
from typing import Callable, List, Optional, Sequence, Tuple  # noqa: F401

import torch
import torch.nn as nn
import torch.nn.functional as F  # noqa: F401

# The models live in ref_gru.py and ref_transformer.py, the shared constants and helpers in
# ref_common.py; this module re-exports them and holds loading, tokenizing and decoding.
from ref_common import (  # noqa: F401
    BOS_ID, EOS_ID, LAYER_NORM_EPS, MASKED, MAX_OUTPUT, PAD_ID, POSITION_TABLE, SPECIALS,
    UNK_ID, attention_fn, default_max_len,
)
from ref_gru import (  # noqa: F401
    AdditiveScorer, DotScorer, GeneralScorer, GruCell, GruMemory, GruSeq2Seq,
)
from ref_transformer import (  # noqa: F401
    DecoderLayer, EncoderLayer, FeedForward, KvCache, MultiHeadAttention, Transformer,
    TransformerMemory, sinusoids,
)

__all__ = [
    "PAD_ID", "BOS_ID", "EOS_ID", "UNK_ID", "MAX_OUTPUT",
    "GruSeq2Seq", "Transformer", "Batch",
    "build", "load", "source_ids", "pieces", "detokenize", "default_mode",
    "default_max_len", "attention_fn", "greedy", "greedy_batch", "collate", "pad_sources",
]


# --------------------------------------------------------------------------------------------
# Loading, tokenizing, decoding
# --------------------------------------------------------------------------------------------


def build(cfg: dict, gru_kernel: str = "loop") -> nn.Module:
    """An uninitialised module for a config.json dict."""
    arch = cfg["architecture"]
    if arch in ("gru", "gru-bahdanau"):
        return GruSeq2Seq(cfg, gru_kernel=gru_kernel)
    if arch == "transformer":
        return Transformer(cfg)
    raise ValueError(f"unknown architecture {arch!r}")


def load(model_dir: str, gru_kernel: str = "loop", device: str = "cpu") -> nn.Module:
    """Loads config.json, model.safetensors (strictly: every name must match) and both
    tokenizers (as `model.src_tokenizer`, `model.tgt_tokenizer`), in eval mode."""
    from safetensors.torch import load_file
    from tokenizers import Tokenizer

    with open(os.path.join(model_dir, "config.json"), encoding="utf-8") as f:
        cfg = json.load(f)
    model = build(cfg, gru_kernel=gru_kernel)
    tensors = load_file(os.path.join(model_dir, "model.safetensors"))
    # A training checkpoint also holds Adam moments (`adam.m.*`, `adam.v.*`); Rust ignores
    # them, and so does this. Every other name must match a parameter and vice versa.
    tensors = {k: v for k, v in tensors.items() if not k.startswith("adam.")}
    model.load_state_dict(tensors, strict=True)
    model.src_tokenizer = Tokenizer.from_file(os.path.join(model_dir, cfg["source_tokenizer"]))
    model.tgt_tokenizer = Tokenizer.from_file(os.path.join(model_dir, cfg["target_tokenizer"]))
    model.name = os.path.basename(os.path.normpath(model_dir))
    return model.to(device).eval()


def default_mode(model: nn.Module) -> str:
    """`hard` for a model trained with hard attention, else `soft` (decode.rs default_mode)."""
    return "hard" if model.cfg.get("attention_training", "soft") == "hard" else "soft"


def source_ids(model: nn.Module, text: str) -> List[int]:
    """BPE ids of `text` with `</s>` appended (decode.rs `Translator::source`)."""
    ids = model.src_tokenizer.encode(text, add_special_tokens=False).ids
    if not text.strip() or not ids:
        raise ValueError("empty input")
    return list(ids) + [EOS_ID]


def target_ids(model: nn.Module, text: str) -> List[int]:
    """BPE ids of a target sentence, no special token."""
    return list(model.tgt_tokenizer.encode(text, add_special_tokens=False).ids)


def pieces(tokenizer, ids: Sequence[int]) -> List[str]:
    return [tokenizer.id_to_token(i) or SPECIALS[UNK_ID] for i in ids]


def detokenize(model: nn.Module, ids: Sequence[int]) -> str:
    """Text of target ids; special tokens dropped (vocab.rs `Vocab::decode`)."""
    return model.tgt_tokenizer.decode([i for i in ids if i != EOS_ID],
                                      skip_special_tokens=True).strip()


@torch.inference_mode()
def greedy(model: nn.Module, ids: Sequence[int], mode: Optional[str] = None,
           max_len: Optional[int] = None, return_log_probs: bool = False):
    """Greedy decoding of one source (decode.rs `single_path`, what `translate --format
    json` runs). Returns the target ids (ending with `</s>` unless the limit stopped it) and
    one attention row per target token; with `return_log_probs`, also each token's log
    probability."""
    device = next(model.parameters()).device
    dist = attention_fn(mode or default_mode(model))
    src = torch.tensor([list(ids)], dtype=torch.int64, device=device)
    memory = model.encode(src, torch.ones(src.shape, device=device))
    state = model.initial_state(memory)
    prev = torch.tensor([BOS_ID], dtype=torch.int64, device=device)
    out, rows, lps = [], [], []
    for _ in range(max_len or default_max_len(len(ids))):
        logits, state, cross = model.step(memory, state, prev, dist)
        log_probs = torch.log_softmax(logits, -1)[0]
        tok = int(log_probs.argmax())
        out.append(tok)
        rows.append(cross[0, -1].mean(0).tolist())
        lps.append(float(log_probs[tok]))
        if tok == EOS_ID:
            break
        prev = torch.tensor([tok], dtype=torch.int64, device=device)
    return (out, rows, lps) if return_log_probs else (out, rows)


def pad_sources(sources: Sequence[Sequence[int]], device="cpu"):
    """Right-padded (B, S) int64 ids and (B, S) float mask."""
    s = max(len(x) for x in sources)
    src = torch.full((len(sources), s), PAD_ID, dtype=torch.int64)
    mask = torch.zeros((len(sources), s))
    for i, x in enumerate(sources):
        src[i, :len(x)] = torch.tensor(list(x), dtype=torch.int64)
        mask[i, :len(x)] = 1.0
    return src.to(device), mask.to(device)


@torch.inference_mode()
def greedy_batch(model: nn.Module, sources: Sequence[Sequence[int]],
                 mode: Optional[str] = None) -> List[List[int]]:
    """Greedy decoding of sources together (decode.rs `greedy_chunk`, the CLI's text path,
    32 at a time by default): output ids per sentence, without `</s>`."""
    device = next(model.parameters()).device
    dist = attention_fn(mode or default_mode(model))
    src, mask = pad_sources(sources, device)
    b, s = src.shape
    memory = model.encode(src, mask)
    state = model.initial_state(memory)
    prev = torch.full((b,), BOS_ID, dtype=torch.int64, device=device)
    outs: List[List[int]] = [[] for _ in range(b)]
    done = [False] * b
    limits = [default_max_len(len(x)) for x in sources]
    for _ in range(default_max_len(s)):
        logits, state, _ = model.step(memory, state, prev, dist)
        nxt = logits.argmax(-1)
        for i, tok in enumerate(nxt.tolist()):
            if not done[i]:
                if tok == EOS_ID:
                    done[i] = True
                else:
                    outs[i].append(tok)
                    done[i] = len(outs[i]) >= limits[i]
        if all(done):
            break
        prev = nxt
    return outs


@dataclass
class Batch:
    """One training batch (data.rs `Batch`)."""
    src: torch.Tensor        # (B, S) int64, right-padded, each source ending with </s>
    src_mask: torch.Tensor   # (B, S) float, 1 at tokens
    tgt_in: torch.Tensor     # (B, T) int64: <s> then the target
    positions: torch.Tensor  # (N,) int64 flat positions in B x T holding a real target token
    labels: torch.Tensor     # (N,) int64: the target, then </s>

    @property
    def tokens(self) -> int:
        return int(self.labels.numel())


def collate(pairs: Sequence[Tuple[Sequence[int], Sequence[int]]], device="cpu") -> Batch:
    """A batch from (source ids with </s>, target ids without specials) pairs (data.rs
    `collate`)."""
    src, mask = pad_sources([p[0] for p in pairs], device)
    t = max(len(p[1]) + 1 for p in pairs)
    tgt_in = torch.full((len(pairs), t), PAD_ID, dtype=torch.int64)
    positions, labels = [], []
    for row, (_, tgt) in enumerate(pairs):
        tgt_in[row, 0] = BOS_ID
        tgt_in[row, 1:1 + len(tgt)] = torch.tensor(list(tgt), dtype=torch.int64)
        for j, y in enumerate(list(tgt) + [EOS_ID]):
            positions.append(row * t + j)
            labels.append(y)
    as_long = lambda v: torch.tensor(v, dtype=torch.int64, device=device)  # noqa: E731
    return Batch(src, mask, tgt_in.to(device), as_long(positions), as_long(labels))
