#!/usr/bin/env python3
"""candle (attnscope) against the PyTorch reference on the same models, timed interleaved.

    bench/reference/.venv/bin/python bench/perf.py             # every model in models/
    bench/reference/.venv/bin/python bench/perf.py bahdanau transformer --rounds 7

For each model it first runs `bench/reference/check.py` on it (100 test sentences, identical
greedy translations, attention and loss within tolerance) and stops if that fails: the
comparison is the same model doing the same work. Then, round after round, it times

- latency: greedy decoding of each 10-word sentence alone (batch 1, end of sentence
  included), for the model's own attention and for soft and hard;
- throughput at batch 32 (the model's own attention),

once with `target/release/attnscope-perf` and once with the reference, one thread each
(RAYON_NUM_THREADS=1; torch.set_num_threads(1)), and reports the median over rounds and
the ratio candle / PyTorch (below 1: candle is faster). Results go to target/bench/perf.json
and a Markdown table on stdout. Build first: cargo build --release -p attnscope -p attnscope-perf.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE / "reference"))

import torch  # noqa: E402

import attnscope_ref as ar  # noqa: E402

TSV = REPO.parent / "shared" / "data" / "tatoeba-eng-fra.tsv"


def ten_word_sentences(name: str, n: int) -> list[str]:
    """The first `n` ten-word English sentences of the model's test split (or of the TSV)."""
    src = REPO / "runs" / name / "test.src"
    if src.is_file():
        lines = src.read_text(encoding="utf-8").splitlines()
    else:
        lines = [l.split("\t")[0] for l in TSV.read_text(encoding="utf-8").splitlines()]
    out = [l for l in lines if len(l.split()) == 10]
    return out[:n]


def candle(model_dir: Path, sentences: list[str], attention: str | None, batch: int, threads: int) -> dict:
    cmd = [str(REPO / "target" / "release" / "attnscope-perf"), "--model", str(model_dir),
           "--reps", "1", "--batch", str(batch)]
    if attention:
        cmd += ["--attention", attention]
    env = dict(os.environ, RAYON_NUM_THREADS=str(threads))
    out = subprocess.run(cmd, input="\n".join(sentences), capture_output=True, text=True,
                         env=env, check=True)
    return json.loads(out.stdout)


def training_batches(model, name: str, batch: int, count: int) -> list[list[tuple[list[int], list[int]]]]:
    """`count` batches of `batch` test pairs of the model, grouped by length as the trainer
    groups them (sorted by target then source length, so padding is small)."""
    run = REPO / "runs" / name
    if (run / "test.src").is_file() and (run / "test.ref").is_file():
        src = (run / "test.src").read_text(encoding="utf-8").splitlines()
        ref = (run / "test.ref").read_text(encoding="utf-8").splitlines()
    else:
        lines = [l.split("\t") for l in TSV.read_text(encoding="utf-8").splitlines()[:20000]]
        src, ref = [l[0] for l in lines], [l[1] for l in lines]
    pairs = [(ar.source_ids(model, s), ar.target_ids(model, r)) for s, r in zip(src, ref)
             if s.strip() and r.strip()][: batch * count]
    pairs.sort(key=lambda p: (len(p[1]), len(p[0])))
    out = [pairs[i:i + batch] for i in range(0, len(pairs) - batch + 1, batch)]
    random.Random(7).shuffle(out)
    return out


def candle_train(model_dir: Path, batches, threads: int) -> dict:
    cmd = [str(REPO / "target" / "release" / "attnscope-perf"), "--model", str(model_dir),
           "--train", "--reps", "1"]
    env = dict(os.environ, RAYON_NUM_THREADS=str(threads))
    out = subprocess.run(cmd, input=json.dumps({"batches": batches}), capture_output=True,
                         text=True, env=env, check=True)
    return json.loads(out.stdout)


def torch_train(model_dir: Path, batches) -> dict:
    """Forward, backward, gradient clipping to norm 1 and AdamW, from the shipped weights,
    as attnscope's trainer does; one untimed warm-up step."""
    model = ar.load(str(model_dir), gru_kernel="fused")
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.0, eps=1e-8)

    def step(pairs) -> int:
        batch = ar.collate(pairs)
        opt.zero_grad(set_to_none=True)
        loss = model.loss(batch)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        return batch.tokens

    step(batches[0])
    tokens, began = 0, time.perf_counter()
    for b in batches:
        tokens += step(b)
    seconds = time.perf_counter() - began
    return {"target_tokens": tokens, "target_tokens_per_s": tokens / seconds}


def torch_latency(model, ids: list[list[int]], mode: str) -> float:
    times = []
    with torch.inference_mode():
        for x in ids:
            began = time.perf_counter()
            ar.greedy(model, x, mode)
            times.append((time.perf_counter() - began) * 1e3)
    return statistics.median(times)


def torch_throughput(model, ids: list[list[int]], batch: int) -> float:
    with torch.inference_mode():
        began = time.perf_counter()
        for i in range(0, len(ids), batch):
            ar.greedy_batch(model, ids[i:i + batch])
        return len(ids) / (time.perf_counter() - began)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("names", nargs="*", help="model names (default: every model in models/)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--sentences", type=int, default=20, help="ten-word sentences per model")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--train-threads", type=int, default=2)
    ap.add_argument("--train-batches", type=int, default=6, help="batches of 64 per round")
    ap.add_argument("--only", choices=["infer", "train"], help="one part of the table")
    ap.add_argument("--skip-check", action="store_true", help="do not run check.py first")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    names = args.names or sorted(p.parent.name for p in (REPO / "models").glob("*/config.json"))
    rows = []
    for name in names:
        model_dir = REPO / "models" / name
        if not args.skip_check:
            check = subprocess.run([sys.executable, str(HERE / "reference" / "check.py"), name],
                                   capture_output=True, text=True)
            if check.returncode != 0:
                sys.exit(f"{name}: the reference does not match attnscope, so nothing is timed:\n"
                         + check.stdout[-2000:] + check.stderr[-2000:])
        # PyTorch at its fastest: the fused GRU kernel (same translations as the step loop).
        model = ar.load(str(model_dir), gru_kernel="fused")
        own = ar.default_mode(model)
        if args.only != "infer":
            torch.set_num_threads(args.train_threads)
            batches = training_batches(model, name, 64, args.train_batches)
            c_tr, t_tr = [], []
            for _ in range(args.rounds):
                c_tr.append(candle_train(model_dir, batches, args.train_threads)["target_tokens_per_s"])
                t_tr.append(torch_train(model_dir, batches)["target_tokens_per_s"])
            c, t = statistics.median(c_tr), statistics.median(t_tr)
            rows.append({"model": name, "what": f"training, batch 64, {args.train_threads} threads",
                         "unit": "target tokens / s", "candle": c, "pytorch": t, "ratio": t / c})
            torch.set_num_threads(args.threads)
        if args.only == "train":
            print(f"{name}: done", file=sys.stderr)
            continue
        sentences = ten_word_sentences(name, args.sentences)
        ids = [ar.source_ids(model, s) for s in sentences]
        torch_latency(model, ids, own)  # warm-up
        for mode in dict.fromkeys([own, "soft", "hard"]):
            c_lat, t_lat = [], []
            for _ in range(args.rounds):
                c_lat.append(candle(model_dir, sentences, mode, 0, args.threads)["latency_ms_median"])
                t_lat.append(torch_latency(model, ids, mode))
            c, t = statistics.median(c_lat), statistics.median(t_lat)
            rows.append({"model": name, "what": f"latency, batch 1, {mode}", "unit": "ms / sentence",
                         "candle": c, "pytorch": t, "ratio": c / t})
        c_thr, t_thr = [], []
        for _ in range(args.rounds):
            c_thr.append(candle(model_dir, sentences * 8, None, 32, args.threads)["throughput_sentences_per_s"])
            t_thr.append(torch_throughput(model, ids * 8, 32))
        c, t = statistics.median(c_thr), statistics.median(t_thr)
        # For throughput, candle / PyTorch above 1 means candle is faster: report time ratio.
        rows.append({"model": name, "what": f"throughput, batch 32, {own}", "unit": "sentences / s",
                     "candle": c, "pytorch": t, "ratio": t / c})
        print(f"{name}: done", file=sys.stderr)
    out = REPO / "target" / "bench"
    out.mkdir(parents=True, exist_ok=True)
    (out / "perf.json").write_text(json.dumps(rows, indent=1))
    print("| model | measure | unit | candle | PyTorch | time ratio candle / PyTorch |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['model']} | {r['what']} | {r['unit']} | {r['candle']:.2f} | {r['pytorch']:.2f} | {r['ratio']:.2f} |")


if __name__ == "__main__":
    main()
