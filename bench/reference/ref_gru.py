"""GRU encoder-decoder of the PyTorch reference (crates/model/src/networks/rnn.rs, gru.rs): the GRU
cell, the additive, general and dot scorers, the encoder memory and `GruSeq2Seq`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from ref_common import _one_hot_argmax


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
