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
    model.train(); model.loss(ar.collate(model, pairs)).backward()   # a training step

Architectures (config.json `architecture`):

- `gru` (crates/model/src/rnn.rs, gru.rs): bidirectional GRU encoder, GRU decoder with an
  `additive` (Bahdanau), `general` or `dot` (Luong) scorer. The attention uses the *previous*
  decoder state; the GRU reads `[emb(y_{t-1}); c_t]`; `tanh(W_r [s_t; c_t; emb])` feeds the
  output layer. GRU gates follow PyTorch's (r, z, n) layout, with the hidden bias inside
  `r * (W_hn h + b_hn)`.
- `transformer` (crates/model/src/transformer/mod.rs): pre-norm encoder-decoder, sinusoidal
  positions, embeddings scaled by sqrt(d), final layer norms, KV-cached greedy steps.

Decoding (crates/model/src/decode.rs): `<s>`=1 starts the target, `</s>`=2 ends it, the
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
import math
import os
from dataclasses import dataclass
from typing import Callable, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

PAD_ID, BOS_ID, EOS_ID, UNK_ID = 0, 1, 2, 3
SPECIALS = ["<pad>", "<s>", "</s>", "<unk>"]
# The longest output accepted, in pieces (decode.rs MAX_OUTPUT).
MAX_OUTPUT = 256
# Bias of a masked attention position (softmax weight exactly 0).
MASKED = -1e9
LAYER_NORM_EPS = 1e-5
POSITION_TABLE = 512

__all__ = [
    "PAD_ID", "BOS_ID", "EOS_ID", "UNK_ID", "MAX_OUTPUT",
    "GruSeq2Seq", "Transformer", "Batch",
    "build", "load", "source_ids", "pieces", "detokenize", "default_mode",
    "default_max_len", "attention_fn", "greedy", "greedy_batch", "collate", "pad_sources",
]


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


# --------------------------------------------------------------------------------------------
# GRU encoder-decoder (rnn.rs, gru.rs)
# --------------------------------------------------------------------------------------------


class GruCell(nn.Module):
    """`h' = n + z * (h - n)` with gates r, z and candidate n as in `torch.nn.GRU`.

    Parameters: `input{i}.weight` (3H x in_i; `input0` also has the input bias),
    `hidden.weight`, `hidden.bias` (3H x H); gate order r, z, n.
    """

    def __init__(self, input_dims: Sequence[int], hidden_dim: int):
        super().__init__()
        self.hidden_dim = hidden_dim
        self.parts = len(input_dims)
        for i, d in enumerate(input_dims):
            self.add_module(f"input{i}", nn.Linear(d, 3 * hidden_dim, bias=(i == 0)))
        self.hidden = nn.Linear(hidden_dim, 3 * hidden_dim)

    def project_input(self, i: int, x: torch.Tensor) -> torch.Tensor:
        return getattr(self, f"input{i}")(x)

    def step(self, gi: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """One step from precomputed input gates `gi` (B, 3H) and state `h` (B, H)."""
        hd = self.hidden_dim
        gh = self.hidden(h)
        rz = torch.sigmoid(gi[..., : 2 * hd] + gh[..., : 2 * hd])
        r, z = rz[..., :hd], rz[..., hd:]
        n = torch.tanh(gi[..., 2 * hd:] + r * gh[..., 2 * hd:])
        # (1 - z) * n + z * h, written as gru.rs writes it.
        return n + z * (h - n)

    def masked_step(self, gi: torch.Tensor, h: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """A step that leaves the state unchanged where `keep` (B, 1) is 0 (as gru.rs)."""
        new = self.step(gi, h)
        return h + (new - h) * keep


class AdditiveScorer(nn.Module):
    """`v . tanh(W_k h_j + W_q s)` (Bahdanau)."""

    def __init__(self, hidden: int, attn_dim: int):
        super().__init__()
        self.key = nn.Linear(2 * hidden, attn_dim, bias=False)
        self.query = nn.Linear(hidden, attn_dim)
        self.v = nn.Linear(attn_dim, 1, bias=False)

    def keys(self, states: torch.Tensor) -> torch.Tensor:
        return self.key(states)

    def raw(self, keys: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        q = self.query(s).unsqueeze(1)
        return self.v(torch.tanh(keys + q)).squeeze(2)


class GeneralScorer(nn.Module):
    """`s . W_a h_j` (Luong "general")."""

    def __init__(self, hidden: int):
        super().__init__()
        self.key = nn.Linear(2 * hidden, hidden, bias=False)

    def keys(self, states: torch.Tensor) -> torch.Tensor:
        return self.key(states)

    def raw(self, keys: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        return torch.bmm(keys, s.unsqueeze(2)).squeeze(2)


class DotScorer(nn.Module):
    """`s . (h_fwd_j + h_bwd_j)` (Luong "dot"); no parameters."""

    def __init__(self, hidden: int):
        super().__init__()
        self.hidden = hidden

    def keys(self, states: torch.Tensor) -> torch.Tensor:
        h = self.hidden
        return states[..., :h] + states[..., h:]

    def raw(self, keys: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        return torch.bmm(keys, s.unsqueeze(2)).squeeze(2)


def _scorer(kind: str, hidden: int, attn_dim: int) -> nn.Module:
    if kind == "additive":
        return AdditiveScorer(hidden, attn_dim)
    if kind == "general":
        return GeneralScorer(hidden)
    if kind == "dot":
        return DotScorer(hidden)
    raise ValueError(f"unknown GRU attention scorer {kind!r}; use additive, general or dot")


@dataclass
class GruMemory:
    states: torch.Tensor      # (B, S, 2H) bidirectional encoder states (attention values)
    keys: torch.Tensor        # (B, S, K) encoder side of the scores
    mask_bias: torch.Tensor   # (B, S) 0 at tokens, -1e9 at padding
    init: torch.Tensor        # (B, H) initial decoder state

    def select(self, idx: torch.Tensor) -> "GruMemory":
        return GruMemory(*(t.index_select(0, idx) for t in
                           (self.states, self.keys, self.mask_bias, self.init)))


class _GruEncoder(nn.Module):
    def __init__(self, vocab: int, e: int, h: int):
        super().__init__()
        self.embedding = nn.Embedding(vocab, e)
        self.gru_fwd = GruCell([e], h)
        self.gru_bwd = GruCell([e], h)


class _GruDecoder(nn.Module):
    def __init__(self, cfg: dict):
        super().__init__()
        e, h, a, r = cfg["embed_dim"], cfg["hidden_dim"], cfg["attention_dim"], cfg["readout_dim"]
        self.init = nn.Linear(2 * h, h)
        self.embedding = nn.Embedding(cfg["tgt_vocab_size"], e)
        self.attention = _scorer(cfg["attention"], h, a)
        self.gru = GruCell([e, 2 * h], h)
        self.readout = nn.Linear(h + 2 * h + e, r)
        self.output = nn.Linear(r, cfg["tgt_vocab_size"])


class GruSeq2Seq(nn.Module):
    """GRU encoder-decoder with attention (rnn.rs `Seq2Seq`)."""

    architecture = "gru"

    def __init__(self, cfg: dict, gru_kernel: str = "loop"):
        super().__init__()
        if gru_kernel not in ("loop", "fused"):
            raise ValueError("gru_kernel is loop or fused")
        self.cfg = cfg
        self.hidden_dim = cfg["hidden_dim"]
        self.gru_kernel = gru_kernel
        self.hard_training = cfg.get("attention_training", "soft") == "hard"
        self.encoder = _GruEncoder(cfg["src_vocab_size"], cfg["embed_dim"], cfg["hidden_dim"])
        self.decoder = _GruDecoder(cfg)

    # -- encoder --------------------------------------------------------------------------

    def _run_loop(self, emb: torch.Tensor, mask: torch.Tensor):
        enc = self.encoder
        b, s, _ = emb.shape
        gi_f = enc.gru_fwd.project_input(0, emb)
        gi_b = enc.gru_bwd.project_input(0, emb)
        keep = mask.unsqueeze(2)
        zeros = emb.new_zeros(b, self.hidden_dim)
        h, fwd = zeros, []
        for t in range(s):
            h = enc.gru_fwd.masked_step(gi_f[:, t], h, keep[:, t])
            fwd.append(h)
        fwd_last = h
        # Right to left; padding keeps the state at zero until the last real token.
        h, bwd = zeros, [None] * s
        for t in reversed(range(s)):
            h = enc.gru_bwd.masked_step(gi_b[:, t], h, keep[:, t])
            bwd[t] = h
        states = torch.cat([torch.stack(fwd, 1), torch.stack(bwd, 1)], 2)
        return states, fwd_last, bwd[0]

    def _run_fused(self, emb: torch.Tensor, mask: torch.Tensor):
        """Both directions in PyTorch's GRU kernel (packed for padded batches).

        States at padding positions are 0 here (the loop keeps the last forward state);
        the attention gives padding weight exactly 0, so translations do not change.
        """
        f, bw = self.encoder.gru_fwd, self.encoder.gru_bwd
        params = [f.input0.weight, f.hidden.weight, f.input0.bias, f.hidden.bias,
                  bw.input0.weight, bw.hidden.weight, bw.input0.bias, bw.hidden.bias]
        b, s, _ = emb.shape
        h0 = emb.new_zeros(2, b, self.hidden_dim)
        lengths = mask.sum(1).to(torch.int64)
        if bool((lengths == s).all()):
            out, hn = torch._VF.gru(emb, h0, params, True, 1, 0.0, self.training, True, True)
        else:
            packed = nn.utils.rnn.pack_padded_sequence(
                emb, lengths.cpu(), batch_first=True, enforce_sorted=False)
            data, hn = torch._VF.gru(packed.data, packed.batch_sizes, h0, params, True, 1, 0.0,
                                     self.training, True)
            hn = hn.index_select(1, packed.unsorted_indices)
            out, _ = nn.utils.rnn.pad_packed_sequence(
                nn.utils.rnn.PackedSequence(data, packed.batch_sizes, packed.sorted_indices,
                                            packed.unsorted_indices),
                batch_first=True, total_length=s)
        return out, hn[0], hn[1]

    def encode(self, src: torch.Tensor, mask: torch.Tensor) -> GruMemory:
        """`src` (B, S) int64 right-padded ids, `mask` (B, S) float 1 at tokens."""
        mask = mask.to(torch.float32)
        emb = self.encoder.embedding(src)
        run = self._run_loop if self.gru_kernel == "loop" else self._run_fused
        states, fwd_last, bwd_first = run(emb, mask)
        init = torch.tanh(self.decoder.init(torch.cat([fwd_last, bwd_first], 1)))
        keys = self.decoder.attention.keys(states)
        mask_bias = mask * 1e9 - 1e9
        return GruMemory(states, keys, mask_bias, init)

    # -- decoder --------------------------------------------------------------------------

    def initial_state(self, memory: GruMemory) -> torch.Tensor:
        return memory.init

    def scores(self, memory: GruMemory, s: torch.Tensor) -> torch.Tensor:
        """Masked scores (B, S) of decoder state `s` (B, H)."""
        return self.decoder.attention.raw(memory.keys, s) + memory.mask_bias

    @staticmethod
    def context(memory: GruMemory, weights: torch.Tensor) -> torch.Tensor:
        return torch.bmm(weights.unsqueeze(1), memory.states).squeeze(1)

    def _readout(self, s, c, e):
        return torch.tanh(self.decoder.readout(torch.cat([s, c, e], -1)))

    def step(self, memory: GruMemory, state: torch.Tensor, prev: torch.Tensor,
             distribution: Callable[[torch.Tensor], torch.Tensor]):
        """One step: `prev` (B,) previous tokens. Returns logits (B, V), the new state and the
        attention used as (B, 1, 1, S) (layers, heads), like network.rs `NetStep.cross`."""
        dec = self.decoder
        attention = distribution(self.scores(memory, state))
        emb = dec.embedding(prev)
        c = self.context(memory, attention)
        gi = dec.gru.project_input(0, emb) + dec.gru.project_input(1, c)
        state = dec.gru.step(gi, state)
        logits = dec.output(self._readout(state, c, emb))
        return logits, state, attention[:, None, None, :]

    def _train_attention(self, scores: torch.Tensor) -> torch.Tensor:
        if not self.hard_training:
            return torch.softmax(scores, -1)
        if not self.training:
            return _one_hot_argmax(scores)
        # Straight-through Gumbel-softmax, tau = 1 (rnn.rs TrainAttention::Gumbel); the noise
        # comes from torch's generator, not Rust's StdRng, so it is not bit-compatible.
        u = torch.empty_like(scores).uniform_(1e-9, 1.0)
        noisy = scores - torch.log(-torch.log(u))
        soft = torch.softmax(noisy, -1)
        return (_one_hot_argmax(noisy) - soft.detach()) + soft

    def teacher_forced(self, memory: GruMemory, tgt_in: torch.Tensor) -> torch.Tensor:
        """Readouts (B, T, R) for `tgt_in` (B, T) = `<s>` + target without its last token."""
        dec = self.decoder
        emb = dec.embedding(tgt_in)
        gi_e = dec.gru.project_input(0, emb)
        s = memory.init
        states, contexts = [], []
        for t in range(tgt_in.shape[1]):
            c = self.context(memory, self._train_attention(self.scores(memory, s)))
            s = dec.gru.step(gi_e[:, t] + dec.gru.project_input(1, c), s)
            states.append(s)
            contexts.append(c)
        return self._readout(torch.stack(states, 1), torch.stack(contexts, 1), emb)

    def loss(self, batch: "Batch") -> torch.Tensor:
        """Mean cross-entropy per target token (network.rs `Network::loss`). In train mode a
        hard-attention model uses straight-through Gumbel noise; in eval mode the argmax."""
        memory = self.encode(batch.src, batch.src_mask)
        r = self.teacher_forced(memory, batch.tgt_in)
        rows = r.reshape(-1, r.shape[-1]).index_select(0, batch.positions)
        return F.cross_entropy(self.decoder.output(rows), batch.labels)


# --------------------------------------------------------------------------------------------
# Transformer (transformer/mod.rs)
# --------------------------------------------------------------------------------------------


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
