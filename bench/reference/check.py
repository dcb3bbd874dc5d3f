#!/usr/bin/env python3
"""Checks the PyTorch reference (attnscope_ref.py) against the Rust CLI, model by model.

For each model it translates the same sentences with `attnscope translate --format json`
(greedy, batch 1, the model's own attention) and with `attnscope_ref.greedy`, and requires
identical source pieces and identical target token sequences; it reports the largest
absolute difference of an attention weight and of a token log probability. It also checks
the batched path (`attnscope translate`, text, 32 sentences at a time, against
`attnscope_ref.greedy_batch`) and the training loss forward (`model.loss` in eval mode on a
padded batch, against the mean negative log probability that `--force-target` reports for
the reference translations). It exits 1 unless every token sequence is identical, every
attention weight and log probability is within --attn-tol (1e-3) of the CLI's, and the loss
within 1e-5 (relative).

    nice -n 10 bench/reference/.venv/bin/python bench/reference/check.py            # models/*
    nice -n 10 bench/reference/.venv/bin/python bench/reference/check.py luong hard
    nice -n 10 bench/reference/.venv/bin/python bench/reference/check.py --models /tmp/tiny-models

Sentences: the first N lines of `runs/<name>/test.src` (the model's held-out test split, with
`test.ref` as the references) when it exists, else the first N distinct English sentences of
`../shared/data/tatoeba-eng-fra.tsv` (with their first French side). Nothing is copied.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
sys.path.insert(0, str(HERE))

import torch  # noqa: E402

import attnscope_ref as ar  # noqa: E402

TSV = REPO.parent / "shared" / "data" / "tatoeba-eng-fra.tsv"
LOSS_TOLERANCE = 1e-5  # relative, on a mean over ~150 tokens (seen: at most 4e-7)


def sentences_for(name: str, n: int, explicit: str | None):
    """(English sources, references or None, where they came from)."""
    if explicit:
        path = Path(explicit)
        lines = path.read_text(encoding="utf-8").splitlines()
        ref = path.with_suffix(".ref")  # test.src -> test.ref, when there is one
        r = ref.read_text(encoding="utf-8").splitlines() if ref.is_file() else None
        keep = [i for i, l in enumerate(lines) if l.strip()][:n]
        return [lines[i] for i in keep], r and [r[i] for i in keep], explicit
    src = REPO / "runs" / name / "test.src"
    ref = REPO / "runs" / name / "test.ref"
    if src.is_file():
        s = src.read_text(encoding="utf-8").splitlines()[:n]
        r = ref.read_text(encoding="utf-8").splitlines()[:n] if ref.is_file() else None
        return s, r, str(src.relative_to(REPO))
    seen, s, r = set(), [], []
    with open(TSV, encoding="utf-8") as f:
        for line in f:
            en, fr = line.rstrip("\n").split("\t")[:2]
            if en not in seen:
                seen.add(en)
                s.append(en)
                r.append(fr)
                if len(s) == n:
                    break
    return s, r, f"{TSV.name} (first {n} English)"


def run_cli(cli: str, models: Path, name: str, lines, *extra) -> list[str]:
    env = dict(os.environ, RAYON_NUM_THREADS="1")
    cmd = [cli, "translate", "--models", str(models), "--model", name, *extra]
    p = subprocess.run(cmd, input="\n".join(lines) + "\n", capture_output=True, text=True,
                       env=env, check=False)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{p.stderr}")
    return p.stdout.splitlines()


def check_model(args, models: Path, name: str, kernels):
    cfg = json.loads((models / name / "config.json").read_text())
    srcs, refs, origin = sentences_for(name, args.n, args.sentences)
    print(f"\n== {name}: {cfg['architecture']} {cfg['attention']}, "
          f"attention_training {cfg.get('attention_training', 'soft')}; "
          f"{len(srcs)} sentences from {origin}", flush=True)

    t0 = time.perf_counter()
    mode_args = ["--attention", args.attention] if args.attention else []
    cli_json = [json.loads(l) for l in
                run_cli(args.cli, models, name, srcs, "--format", "json", *mode_args)]
    cli_text = run_cli(args.cli, models, name, srcs, *mode_args) if not args.no_batch else None
    cli_s = time.perf_counter() - t0
    assert len(cli_json) == len(srcs), "the CLI printed one JSON per input line"
    assert cli_text is None or len(cli_text) == len(srcs), "one translation per input line"

    rows = []
    for kernel in kernels if cfg["architecture"] != "transformer" else ["-"]:
        model = ar.load(str(models / name), gru_kernel=kernel if kernel != "-" else "loop")
        mode = args.attention or ar.default_mode(model)
        r = dict(model=name, arch=cfg["architecture"], scorer=cfg["attention"], kernel=kernel,
                 mode=mode, n=len(srcs), src_ok=0, greedy_ok=0, attn=0.0, logp=0.0,
                 batch="-", loss="-", ok=True)
        t0 = time.perf_counter()
        for i, (text, doc) in enumerate(zip(srcs, cli_json)):
            ids = ar.source_ids(model, text)
            if ar.pieces(model.src_tokenizer, ids) == doc["source_tokens"]:
                r["src_ok"] += 1
            out, attention, lps = ar.greedy(model, ids, mode, return_log_probs=True)
            toks = ar.pieces(model.tgt_tokenizer, out)
            if doc.get("mode", mode) != mode:
                raise RuntimeError(f"the CLI decoded with {doc.get('mode')}, the reference {mode}")
            if toks == doc["target_tokens"]:
                r["greedy_ok"] += 1
                for a, b in zip(attention, doc["attention"]):
                    r["attn"] = max(r["attn"], max(abs(x - y) for x, y in zip(a, b)))
                for lp, step in zip(lps, doc["steps"]):
                    r["logp"] = max(r["logp"], abs(lp - step["log_prob"]))
                if ar.detokenize(model, out) != doc["translation"]:
                    print(f"  [{i}] same tokens, different text: "
                          f"{ar.detokenize(model, out)!r} vs {doc['translation']!r}")
                    r["ok"] = False
            elif args.verbose or i + 1 - r["greedy_ok"] <= 5:  # the first 5 mismatches
                print(f"  [{i}] {text!r}\n      cli: {' '.join(doc['target_tokens'])}\n"
                      f"      ref: {' '.join(toks)}")
        r["ref_s"] = time.perf_counter() - t0

        if cli_text is not None:
            hyps = []
            for k in range(0, len(srcs), 32):
                chunk = [ar.source_ids(model, t) for t in srcs[k:k + 32]]
                hyps += [ar.detokenize(model, o) for o in ar.greedy_batch(model, chunk, mode)]
            same = sum(a == b for a, b in zip(hyps, cli_text))
            r["batch"] = f"{same}/{len(srcs)}"
            r["ok"] &= same == len(srcs)
            for i, (a, b) in enumerate(zip(hyps, cli_text)):
                if a != b and args.verbose:
                    print(f"  batch [{i}] cli: {b!r}\n            ref: {a!r}")

        # The loss uses the model's own attention (softmax, or argmax for a hard model).
        if args.loss_pairs and refs and mode == ar.default_mode(model):
            r["loss"] = check_loss(args, models, name, model, srcs, refs)
            r["ok"] &= r["loss"].endswith("ok")
        r["ok"] &= r["src_ok"] == r["n"] and r["greedy_ok"] == r["n"]
        r["ok"] &= r["attn"] <= args.attn_tol and r["logp"] <= args.attn_tol
        rows.append(r)
        print(f"  {kernel:>5}: greedy {r['greedy_ok']}/{r['n']}, batch-32 {r['batch']}, "
              f"max|Δattn| {r['attn']:.2e}, max|Δlogp| {r['logp']:.2e}, loss {r['loss']}  "
              f"(wall: reference {r['ref_s']:.1f} s, CLI {cli_s:.1f} s; not a benchmark)",
              flush=True)
    return rows


def check_loss(args, models, name, model, srcs, refs) -> str:
    """Eval-mode `model.loss` on one padded batch vs the CLI's forced-decoding log probs."""
    k = min(args.loss_pairs, len(srcs))
    nll, tokens, pairs = 0.0, 0, []
    for text, ref in zip(srcs[:k], refs[:k]):
        doc = json.loads(run_cli(args.cli, models, name, [text], "--format", "json",
                                 f"--force-target={ref}")[0])
        nll -= sum(s["log_prob"] for s in doc["steps"])
        tokens += len(doc["steps"])
        pairs.append((ar.source_ids(model, text), ar.target_ids(model, ref)))
    batch = ar.collate(pairs)
    assert batch.tokens == tokens, (batch.tokens, tokens)
    model.eval()
    with torch.no_grad():
        ref_loss = float(model.loss(batch))
    cli_loss = nll / tokens
    rel = abs(ref_loss - cli_loss) / max(abs(cli_loss), 1e-12)
    # The training path runs too (forward + backward in train mode), unchecked numerically.
    model.train()
    model.zero_grad()
    model.loss(batch).backward()
    grads_ok = all(p.grad is not None and bool(torch.isfinite(p.grad).all())
                   for p in model.parameters())
    model.eval()
    return (f"{ref_loss:.5f}/{cli_loss:.5f} (Δrel {rel:.0e}, {tokens} tok) "
            f"{'ok' if rel < LOSS_TOLERANCE and grads_ok else 'MISMATCH'}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("names", nargs="*", help="model names (default: every model in --models)")
    ap.add_argument("--models", default=str(REPO / "models"), help="folder of model folders")
    ap.add_argument("--n", type=int, default=100, help="sentences per model")
    ap.add_argument("--sentences", help="a file of English sentences, one per line")
    ap.add_argument("--cli", default=str(REPO / "target" / "release" / "attnscope"))
    ap.add_argument("--gru-kernel", choices=["loop", "fused", "both"], default="both",
                    help="encoder GRU of the reference: step loop as in Rust, or torch's kernel")
    ap.add_argument("--attention", choices=["soft", "hard"],
                    help="decode with this attention instead of the model's own (the CLI's "
                         "--attention; the CLI then decodes the batch check one by one)")
    ap.add_argument("--no-batch", action="store_true", help="skip the batch-32 check")
    ap.add_argument("--loss-pairs", type=int, default=16,
                    help="pairs in the loss check (0 skips it)")
    ap.add_argument("--attn-tol", type=float, default=1e-3,
                    help="largest accepted |Δ| of an attention weight or a token log "
                         "probability (seen: at most 7e-5)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args()

    # Be a good neighbour to the trainings on this machine: niceness 10 at least, for the
    # CLI runs too (they inherit it).
    cur = os.nice(0)
    if cur < 10:
        os.nice(10 - cur)
    torch.set_num_threads(args.threads)
    models = Path(args.models).resolve()
    names = args.names or sorted(p.name for p in models.iterdir()
                                 if (p / "config.json").is_file()
                                 and (p / "model.safetensors").is_file())
    kernels = ["loop", "fused"] if args.gru_kernel == "both" else [args.gru_kernel]
    print(f"torch {torch.__version__} ({torch.get_num_threads()} thread), CLI {args.cli}")

    rows = []
    for name in names:
        rows += check_model(args, models, name, kernels)

    head = ["model", "arch", "scorer", "kernel", "mode", "src ids", "greedy b=1",
            "max|Δattn|", "max|Δlogp|", "batch-32", "loss ref/cli", "result"]
    table = [[r["model"], r["arch"], r["scorer"], r["kernel"], r["mode"],
              f"{r['src_ok']}/{r['n']}", f"{r['greedy_ok']}/{r['n']}",
              f"{r['attn']:.1e}" if r["greedy_ok"] else "-",
              f"{r['logp']:.1e}" if r["greedy_ok"] else "-", r["batch"], r["loss"],
              "identical" if r["ok"] else "DIFFERS"]
             for r in rows]
    widths = [max(len(str(x)) for x in col) for col in zip(head, *table)]
    print()
    for line in [head, ["-" * w for w in widths], *table]:
        print("  ".join(str(x).ljust(w) for x, w in zip(line, widths)).rstrip())
    bad = [r["model"] + "/" + r["kernel"] for r in rows if not r["ok"]]
    if bad:
        print(f"\nfailed: {', '.join(bad)}")
    print(f"\n{len(rows) - len(bad)} passed, {len(bad)} failed")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
