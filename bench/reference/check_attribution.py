#!/usr/bin/env python3
"""Checks the Rust attributions (`attnscope translate --explain`) against Captum, model by model.

For each model it translates the same sentences as check.py with
`attnscope translate --format json --explain gradient_x_input,integrated_gradients,erasure`
and recomputes every row in PyTorch on the same weights (attnscope_ref.py). The function
explained is the Rust one (crates/model/src/explain/mod.rs, replay.rs): for decoding step t,
`f_t(x) = log p(y_t | x, y_<t)`, teacher-forced on the CLI's own output tokens, attending as
the decoding did (softmax; a one-hot at the argmax for a hard model, so no gradient flows
through the weights, only through the selected encoder state), as a function of the source
token embeddings `x` (the embedding lookup output, before the Transformer's sqrt(d) scaling
and positions). Per source token, summed over the embedding dimension:

- gradient x input: Captum `LayerGradientXActivation` on `encoder.embedding`;
- integrated gradients, `method="gausslegendre"` with the CLI's `--ig-steps`: Captum
  `LayerIntegratedGradients` on `encoder.embedding` with `<pad>` ids as baselines for
  `--ig-baseline pad`; for the zero baseline (no token id embeds to zeros, and a layer
  method's baselines are token ids) `IntegratedGradients` on the embeddings themselves,
  fed in at the same layer by a forward hook. Captum's convergence delta is reported beside
  the CLI's `delta`;
- erasure (no Captum method deletes a token): `f_t(x) - f_t(x without token i)` in PyTorch.

It reports, per model and method, the largest absolute difference of a raw score and the
largest difference relative to the L1 norm of the CLI's row (largest on the near-zero rows of
a confident `</s>`), and IG's convergence delta on both sides. It exits 1 unless every row
satisfies `max_i |rust_i - captum_i| <= ATOL + RTOL * ||rust row||_1`, ATOL = 1e-4 and
RTOL = 1e-3 (float32 on both sides), and the reference reproduces the CLI's token log
probabilities within 1e-3 (as check.py). Seen with the defaults (20 sentences, 6 models):
max|Δ| 3e-4 (Transformer IG, row L1 ~10), at most 13% of a row's tolerance; on 12 long
multi30k sentences, Luong up to 2e-2 (IG, row L1 ~120) and 48% of a row's tolerance
(gradient x input; its log probabilities differ by up to 1e-4 between candle and torch). The deltas agree
to ~1e-4 but are themselves large for hard, luong and transformer (0.7 to 1.7 with 32
points): argmax switches (hard) and near one-hot softmaxes along the path, the same function
on both sides.

    nice -n 10 bench/reference/.venv/bin/python bench/reference/check_attribution.py          # models/*
    nice -n 10 bench/reference/.venv/bin/python bench/reference/check_attribution.py hard luong
    nice -n 10 bench/reference/.venv/bin/python bench/reference/check_attribution.py --ig-baseline pad
    cut -f1 ../shared/data/multi30k/multi30k-eng-fra.test2016.tsv | head -12 > /tmp/m30k.en
    nice -n 10 bench/reference/.venv/bin/python bench/reference/check_attribution.py \\
        --sentences /tmp/m30k.en --n 12                             # longer ones (~10 min)

Sentences: as check.py takes them (the first N lines of `runs/<name>/test.src`, else the
first N distinct English sentences of `../shared/data/tatoeba-eng-fra.tsv`, or --sentences).
A line the CLI splits into several sentences is explained sentence by sentence, as the CLI
does. Needs captum (requirements.txt; benchmark-only). Peak memory ~2.5 GB; the defaults
take about 80 s.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
sys.path.insert(0, str(HERE))

import torch  # noqa: E402
from captum.attr import (  # noqa: E402
    IntegratedGradients, LayerGradientXActivation, LayerIntegratedGradients,
)

import attnscope_ref as ar  # noqa: E402
from check import run_cli, sentences_for  # noqa: E402

ATOL = 1e-4   # absolute part of the per-row tolerance
RTOL = 1e-3   # relative to the L1 norm of the CLI's row
LOGP_TOL = 1e-3
METHODS = ["gradient_x_input", "integrated_gradients", "erasure"]


def teacher_forced(model, src, targets, dist):
    """(R, T) log probabilities of `targets` (the emitted ids, `</s>` included), teacher-forced
    on them, for (R, S) source ids (whose embeddings a hook may replace)."""
    r, s = src.shape
    memory = model.encode(src, torch.ones(r, s))
    state = model.initial_state(memory)
    prev = torch.full((r,), ar.BOS_ID, dtype=torch.int64)
    out = []
    for y in targets:
        logits, state, _ = model.step(memory, state, prev, dist)
        out.append(torch.log_softmax(logits, -1)[:, y])
        prev = torch.full((r,), y, dtype=torch.int64)
    return torch.stack(out, 1)


@contextlib.contextmanager
def embeddings_replaced(model, holder):
    """While active, the source embedding layer returns `holder[0]` instead of its lookup."""
    handle = model.encoder.embedding.register_forward_hook(lambda m, i, o: holder[0])
    try:
        yield
    finally:
        handle.remove()


def captum_rows(model, ids, targets, dist, ig_steps, baseline):
    """gradient x input and integrated gradients rows (T, S) and IG's deltas (T,) for one
    sentence. For gradient x input, batch row t scores step t (Captum's `target`)."""
    t, s = len(targets), len(ids)
    src = torch.tensor([ids] * t, dtype=torch.int64)
    rows_t = list(range(t))
    layer = model.encoder.embedding

    def f_ids(src_ids):
        return teacher_forced(model, src_ids, targets, dist)

    gxi = LayerGradientXActivation(f_ids, layer).attribute(src, target=rows_t)
    gxi = gxi.sum(-1).detach()

    # Integrated gradients one step at a time (n_steps rows each, running only the steps up
    # to t): a batch of all steps x all points would hold T * n_steps teacher-forced runs
    # in autograd at once (gigabytes for a 25-token output).
    ig_rows, deltas = [], []
    for step in range(t):
        def f_step(src_ids, n=step + 1):
            return teacher_forced(model, src_ids, targets[:n], dist)[:, -1]

        if baseline == "pad":
            ig, delta = LayerIntegratedGradients(f_step, layer).attribute(
                src[:1], baselines=torch.full_like(src[:1], ar.PAD_ID), n_steps=ig_steps,
                method="gausslegendre", return_convergence_delta=True)
        else:
            holder = [None]

            def f_emb(emb, f=f_step):
                holder[0] = emb
                with embeddings_replaced(model, holder):
                    return f(torch.zeros(emb.shape[:2], dtype=torch.int64))

            with torch.no_grad():
                x = layer(src[:1])
            ig, delta = IntegratedGradients(f_emb).attribute(
                x, baselines=torch.zeros_like(x), n_steps=ig_steps, method="gausslegendre",
                return_convergence_delta=True)
        ig_rows.append(ig.sum(-1).detach()[0])
        deltas.append(delta.detach()[0])
    ig, delta = torch.stack(ig_rows), torch.stack(deltas)
    return gxi, ig, delta


@torch.no_grad()
def erasure_rows(model, ids, targets, dist, logp):
    """(T, S): the CLI's log probability minus the reference's with source token i deleted."""
    s = len(ids)
    if s < 2:
        return torch.zeros(len(targets), s)
    variants = torch.tensor([[x for j, x in enumerate(ids) if j != i] for i in range(s)])
    lp = teacher_forced(model, variants, targets, dist)  # (S, T)
    return torch.tensor(logp)[:, None] - lp.T


def to_ids(tokenizer, pieces, what):
    out = [tokenizer.token_to_id(p) for p in pieces]
    if any(i is None for i in out):
        raise RuntimeError(f"a {what} piece has no id: {pieces}")
    return out


def check_model(args, models: Path, name: str):
    cfg = json.loads((models / name / "config.json").read_text())
    srcs, _, origin = sentences_for(name, args.n, args.sentences)
    print(f"\n== {name}: {cfg['architecture']} {cfg['attention']}, "
          f"attention_training {cfg.get('attention_training', 'soft')}; "
          f"{len(srcs)} sentences from {origin}", flush=True)
    t0 = time.perf_counter()
    docs = [json.loads(l) for l in run_cli(
        args.cli, models, name, srcs, "--format", "json", "--explain", ",".join(METHODS),
        "--ig-steps", str(args.ig_steps), "--ig-baseline", args.ig_baseline)]
    cli_s = time.perf_counter() - t0
    assert len(docs) == len(srcs), "the CLI printed one JSON per input line"

    model = ar.load(str(models / name), gru_kernel=args.gru_kernel)
    stats = {m: dict(abs=0.0, rel=0.0, used=0.0, bad=0, where="") for m in METHODS}
    deltas = dict(rust=0.0, captum=0.0, diff=0.0)
    rows = sentences = 0
    logp_diff = 0.0
    t0 = time.perf_counter()
    for k, doc in enumerate(docs):
        mode = doc["mode"]
        dist = ar.attention_fn(mode)
        by_method = {a["method"]: i for i, a in enumerate(doc["steps"][0]["attributions"])}
        for span in doc["sentences"]:
            (a, b), (c, d) = span["source"], span["target"]
            if d <= c:
                continue
            ids = to_ids(model.src_tokenizer, doc["source_tokens"][a:b], "source")
            steps = doc["steps"][c:d]
            targets = to_ids(model.tgt_tokenizer, [st["token"] for st in steps], "target")
            logp = [st["log_prob"] for st in steps]
            with torch.no_grad():
                ref_lp = teacher_forced(model, torch.tensor([ids]), targets, dist)[0]
            logp_diff = max(logp_diff, float((ref_lp - torch.tensor(logp)).abs().max()))
            gxi, ig, delta = captum_rows(model, ids, targets, dist, args.ig_steps,
                                         args.ig_baseline)
            ours = dict(gradient_x_input=gxi, integrated_gradients=ig,
                        erasure=erasure_rows(model, ids, targets, dist, logp))
            for m in METHODS:
                rust = torch.tensor([st["attributions"][by_method[m]]["raw"][a:b]
                                     for st in steps])
                diff = (rust - ours[m]).abs().max(1).values
                l1 = rust.abs().sum(1)
                rel = torch.where(l1 > 0, diff / l1.clamp_min(1e-30), diff)
                st_ = stats[m]
                j = int(rel.argmax())
                if float(rel[j]) > st_["rel"]:
                    st_["where"] = (f"[{k}] step {c + j} ({steps[j]['token']!r}, "
                                    f"L1 {float(l1[j]):.1e})")
                st_["abs"] = max(st_["abs"], float(diff.max()))
                st_["rel"] = max(st_["rel"], float(rel.max()))
                allowed = ATOL + RTOL * l1
                st_["used"] = max(st_["used"], float((diff / allowed).max()))
                bad = diff > allowed
                st_["bad"] += int(bad.sum())
                for j in bad.nonzero().flatten().tolist()[:3] if args.verbose else []:
                    print(f"  {m} [{k}] step {c + j} {steps[j]['token']!r}:\n"
                          f"    cli: {rust[j].tolist()}\n    ref: {ours[m][j].tolist()}")
            rust_delta = [st["attributions"][by_method["integrated_gradients"]]["delta"]
                          for st in steps]
            deltas["rust"] = max(deltas["rust"], max(abs(v) for v in rust_delta))
            deltas["captum"] = max(deltas["captum"], float(delta.abs().max()))
            deltas["diff"] = max(deltas["diff"],
                                 float((torch.tensor(rust_delta) - delta).abs().max()))
            rows += len(steps)
            sentences += 1
    ref_s = time.perf_counter() - t0
    print(f"  {sentences} sentences, {rows} steps; max|Δlogp| {logp_diff:.1e}  "
          f"(wall: reference {ref_s:.1f} s, CLI {cli_s:.1f} s)", flush=True)
    out = []
    for m in METHODS:
        st_ = stats[m]
        ok = st_["bad"] == 0 and logp_diff <= LOGP_TOL
        out.append(dict(model=name, mode=docs[0]["mode"], steps=rows, method=m, ok=ok,
                        logp=logp_diff, **st_,
                        delta=deltas if m == "integrated_gradients" else None))
        print(f"  {m:>20}: max|Δ| {st_['abs']:.1e}, max|Δ|/L1 {st_['rel']:.1e} at "
              f"{st_['where'] or '-'}; {st_['used']:.0%} of the tolerance used, "
              f"{st_['bad']} rows over it", flush=True)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("names", nargs="*", help="model names (default: every model in --models)")
    ap.add_argument("--models", default=str(REPO / "models"), help="folder of model folders")
    ap.add_argument("--n", type=int, default=20, help="sentences per model")
    ap.add_argument("--sentences", help="a file of English sentences, one per line")
    ap.add_argument("--cli", default=str(REPO / "target" / "release" / "attnscope"))
    ap.add_argument("--ig-steps", type=int, default=32, help="Gauss-Legendre points")
    ap.add_argument("--ig-baseline", choices=["zero", "pad"], default="zero")
    ap.add_argument("--gru-kernel", choices=["loop", "fused"], default="loop",
                    help="encoder GRU of the reference: step loop as in Rust, or torch's kernel")
    ap.add_argument("--threads", type=int, default=1, help="torch threads")
    ap.add_argument("-v", "--verbose", action="store_true", help="print rows over tolerance")
    args = ap.parse_args()

    cur = os.nice(0)  # niceness 10 at least, for the CLI runs too
    if cur < 10:
        os.nice(10 - cur)
    torch.set_num_threads(args.threads)
    models = Path(args.models).resolve()
    names = args.names or sorted(p.name for p in models.iterdir()
                                 if (p / "config.json").is_file()
                                 and (p / "model.safetensors").is_file())
    import captum
    print(f"torch {torch.__version__}, captum {captum.__version__} "
          f"({torch.get_num_threads()} thread), CLI {args.cli}; IG {args.ig_steps} "
          f"Gauss-Legendre points, {args.ig_baseline} baseline; tolerance per row "
          f"max|Δ| <= {ATOL:g} + {RTOL:g} * L1")

    rows = []
    for name in names:
        rows += check_model(args, models, name)

    head = ["model", "mode", "steps", "method", "max|Δ|", "max|Δ|/L1", "tol used",
            "max|delta| rust", "max|delta| captum", "max|Δdelta|", "result"]
    table = [[r["model"], r["mode"], r["steps"], r["method"], f"{r['abs']:.1e}",
              f"{r['rel']:.1e}", f"{r['used']:.0%}",
              *([f"{r['delta'][k]:.1e}" for k in ("rust", "captum", "diff")] if r["delta"]
                else ["-"] * 3),
              "ok" if r["ok"] else f"DIFFERS ({r['bad']} rows)"] for r in rows]
    widths = [max(len(str(x)) for x in col) for col in zip(head, *table)]
    print()
    for line in [head, ["-" * w for w in widths], *table]:
        print("  ".join(str(x).ljust(w) for x, w in zip(line, widths)).rstrip())
    bad = [f"{r['model']}/{r['method']}" for r in rows if not r["ok"]]
    if bad:
        print(f"\nfailed: {', '.join(bad)}")
    print(f"\n{len(rows) - len(bad)} passed, {len(bad)} failed")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
