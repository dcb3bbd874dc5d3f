"""Transformer of the PyTorch reference (crates/model/src/networks/transformer/mod.rs): sinusoidal
positions, multi-head attention, pre-norm encoder and decoder layers, the encoder memory, the
KV cache and `Transformer`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, List, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from ref_common import LAYER_NORM_EPS, MASKED, POSITION_TABLE


def sinusoids(start: int, length: int, d: int) -> torch.Tensor:
    """(length, d): sin(pos / 10000^(2i/d)) in column 2i, cos in 2i + 1; computed in f64 as
    the Rust code does, then rounded to f32."""
    rows = []
    for pos in range(start, start + length):
        row = []
        for j in range(d):
            angle = pos / math.pow(10000.0, 2.0 * (j // 2) / d)
            row.append(math.sin(angle) if j % 2 == 0 else math.cos(angle))
        rows.append(row)
    return torch.tensor(rows, dtype=torch.float64).to(torch.float32)


class MultiHeadAttention(nn.Module):
    def __init__(self, d: int, heads: int):
        super().__init__()
        self.q, self.k, self.v, self.o = (nn.Linear(d, d) for _ in range(4))
        self.heads, self.head_dim = heads, d // heads

    def project(self, lin: nn.Linear, x: torch.Tensor) -> torch.Tensor:
        """(B, T, D) -> (B, heads, T, dh)."""
        b, t, _ = x.shape
        return lin(x).view(b, t, self.heads, self.head_dim).transpose(1, 2)

    def scores(self, q, k, bias=None):
        s = torch.matmul(q, k.transpose(-1, -2)) * (1.0 / math.sqrt(self.head_dim))
        return s if bias is None else s + bias

    def output(self, weights, v):
        b, _, t, _ = weights.shape
        mixed = torch.matmul(weights, v).transpose(1, 2).reshape(b, t, self.heads * self.head_dim)
        return self.o(mixed)


class FeedForward(nn.Module):
    def __init__(self, d: int, ff: int):
        super().__init__()
        self.fc1 = nn.Linear(d, ff)
        self.fc2 = nn.Linear(ff, d)

    def forward(self, x):
        return self.fc2(torch.relu(self.fc1(x)))


class EncoderLayer(nn.Module):
    def __init__(self, d, heads, ff, dropout):
        super().__init__()
        self.self_attn = MultiHeadAttention(d, heads)
        self.self_attn_norm = nn.LayerNorm(d, eps=LAYER_NORM_EPS)
        self.ff = FeedForward(d, ff)
        self.ff_norm = nn.LayerNorm(d, eps=LAYER_NORM_EPS)
        self.drop = nn.Dropout(dropout)

    def forward(self, x, bias):
        a = self.self_attn
        h = self.self_attn_norm(x)
        weights = torch.softmax(a.scores(a.project(a.q, h), a.project(a.k, h), bias), -1)
        x = x + self.drop(a.output(weights, a.project(a.v, h)))
        x = x + self.drop(self.ff(self.ff_norm(x)))
        return x, weights


class DecoderLayer(nn.Module):
    def __init__(self, d, heads, ff, dropout):
        super().__init__()
        self.self_attn = MultiHeadAttention(d, heads)
        self.self_attn_norm = nn.LayerNorm(d, eps=LAYER_NORM_EPS)
        self.cross_attn = MultiHeadAttention(d, heads)
        self.cross_attn_norm = nn.LayerNorm(d, eps=LAYER_NORM_EPS)
        self.ff = FeedForward(d, ff)
        self.ff_norm = nn.LayerNorm(d, eps=LAYER_NORM_EPS)
        self.drop = nn.Dropout(dropout)

    def forward(self, x, past, self_bias, cross_kv, cross_bias, cross):
        """`T` new positions after the cached ones; returns (x, (k, v), self_w, cross_w)."""
        a = self.self_attn
        h = self.self_attn_norm(x)
        q, k, v = a.project(a.q, h), a.project(a.k, h), a.project(a.v, h)
        if past is not None:
            k = torch.cat([past[0], k], 2)
            v = torch.cat([past[1], v], 2)
        self_w = torch.softmax(a.scores(q, k, self_bias), -1)
        x = x + self.drop(a.output(self_w, v))
        c = self.cross_attn
        h = self.cross_attn_norm(x)
        cross_w = cross(c.scores(c.project(c.q, h), cross_kv[0], cross_bias))
        x = x + self.drop(c.output(cross_w, cross_kv[1]))
        x = x + self.drop(self.ff(self.ff_norm(x)))
        return x, (k, v), self_w, cross_w


class _TransformerSide(nn.Module):
    def __init__(self, vocab, d, layers, heads, ff, dropout, decoder: bool):
        super().__init__()
        self.embedding = nn.Embedding(vocab, d)
        layer = DecoderLayer if decoder else EncoderLayer
        self.layers = nn.ModuleList(layer(d, heads, ff, dropout) for _ in range(layers))
        self.norm = nn.LayerNorm(d, eps=LAYER_NORM_EPS)
        if decoder:
            self.output = nn.Linear(d, vocab)


@dataclass
class TransformerMemory:
    memory: torch.Tensor          # (B, S, D) encoder output after the final norm
    mask_bias: torch.Tensor       # (B, S)
    self_attention: torch.Tensor  # (B, L, heads, S, S)
    cross_kv: List[Tuple[torch.Tensor, torch.Tensor]]  # per decoder layer, (B, heads, S, dh)

    def select(self, idx: torch.Tensor) -> "TransformerMemory":
        return TransformerMemory(
            self.memory.index_select(0, idx), self.mask_bias.index_select(0, idx),
            self.self_attention.index_select(0, idx),
            [(k.index_select(0, idx), v.index_select(0, idx)) for k, v in self.cross_kv])


@dataclass
class KvCache:
    layers: List[Tuple[torch.Tensor, torch.Tensor]]  # per decoder layer, (B, heads, t, dh)
    len: int


class Transformer(nn.Module):
    """Pre-norm encoder-decoder Transformer (transformer/mod.rs)."""

    architecture = "transformer"

    def __init__(self, cfg: dict):
        super().__init__()
        self.cfg = cfg
        d, layers, heads, ff = cfg["embed_dim"], cfg["layers"], cfg["heads"], cfg["ff_dim"]
        p = float(cfg.get("dropout", 0.0))
        self.d_model, self.heads = d, heads
        self.encoder = _TransformerSide(cfg["src_vocab_size"], d, layers, heads, ff, p, False)
        self.decoder = _TransformerSide(cfg["tgt_vocab_size"], d, layers, heads, ff, p, True)
        self.drop = nn.Dropout(p)
        self.register_buffer("positions", sinusoids(0, POSITION_TABLE, d), persistent=False)

    def _positions(self, start, length):
        if start + length <= POSITION_TABLE:
            return self.positions[start:start + length]
        return sinusoids(start, length, self.d_model).to(self.positions.device)

    def _embed(self, table: nn.Embedding, ids: torch.Tensor, start: int) -> torch.Tensor:
        return table(ids) * math.sqrt(self.d_model) + self._positions(start, ids.shape[1])

    def encode(self, src: torch.Tensor, mask: torch.Tensor) -> TransformerMemory:
        b, s = src.shape
        mask_bias = mask.to(torch.float32) * 1e9 - 1e9
        bias = mask_bias.view(b, 1, 1, s)
        x = self.drop(self._embed(self.encoder.embedding, src, 0))
        attention = []
        for layer in self.encoder.layers:
            x, w = layer(x, bias)
            attention.append(w)
        memory = self.encoder.norm(x)
        cross_kv = [(l.cross_attn.project(l.cross_attn.k, memory),
                     l.cross_attn.project(l.cross_attn.v, memory)) for l in self.decoder.layers]
        return TransformerMemory(memory, mask_bias, torch.stack(attention, 1), cross_kv)

    def initial_state(self, memory: TransformerMemory) -> KvCache:
        return KvCache([], 0)

    def step(self, memory: TransformerMemory, cache: KvCache, prev: torch.Tensor,
             distribution: Callable[[torch.Tensor], torch.Tensor]):
        """One KV-cached step at position `cache.len`. Returns logits (B, V), the extended
        cache and the cross-attention used, (B, L, heads, S)."""
        b = prev.shape[0]
        s = memory.memory.shape[1]
        x = self._embed(self.decoder.embedding, prev.unsqueeze(1), cache.len)
        cross_bias = memory.mask_bias.view(b, 1, 1, s)
        layers, cross = [], []
        for i, layer in enumerate(self.decoder.layers):
            past = cache.layers[i] if cache.layers else None
            x, kv, _, cw = layer(x, past, None, memory.cross_kv[i], cross_bias, distribution)
            layers.append(kv)
            cross.append(cw.squeeze(2))
        x = self.decoder.norm(x).squeeze(1)
        return self.decoder.output(x), KvCache(layers, cache.len + 1), torch.stack(cross, 1)

    def teacher_forced(self, memory: TransformerMemory, tgt_in: torch.Tensor) -> torch.Tensor:
        """Decoder output (B, T, D) for all positions at once (causal mask)."""
        b, t = tgt_in.shape
        s = memory.memory.shape[1]
        causal = torch.full((t, t), MASKED, device=tgt_in.device).triu(1).view(1, 1, t, t)
        cross_bias = memory.mask_bias.view(b, 1, 1, s)
        x = self.drop(self._embed(self.decoder.embedding, tgt_in, 0))
        soft = lambda sc: torch.softmax(sc, -1)  # noqa: E731
        for layer, kv in zip(self.decoder.layers, memory.cross_kv):
            x = layer(x, None, causal, kv, cross_bias, soft)[0]
        return self.decoder.norm(x)

    def loss(self, batch: "Batch") -> torch.Tensor:
        """Mean cross-entropy per target token; dropout in train mode (torch's masks, not
        the Rust SplitMix64 ones)."""
        memory = self.encode(batch.src, batch.src_mask)
        r = self.teacher_forced(memory, batch.tgt_in)
        rows = r.reshape(-1, r.shape[-1]).index_select(0, batch.positions)
        return F.cross_entropy(self.decoder.output(rows), batch.labels)
