#!/usr/bin/env python3
"""candle (attnscope) against the PyTorch reference on the same models, timed interleaved.

    bench/reference/.venv/bin/python bench/perf.py             # every model in models/
    bench/reference/.venv/bin/python bench/perf.py bahdanau transformer --rounds 7
    bench/reference/.venv/bin/python bench/perf.py --only train

For each model it first runs `bench/reference/check.py` on it (100 test sentences, identical
greedy translations, attention and loss within tolerance) and stops if that fails: the
comparison is the same model doing the same work. Then, round after round, it times

- latency: greedy decoding of each 10-word sentence alone (batch 1, end of sentence
  included), for the model's own attention and for soft and hard;
- throughput at batch 32 (the model's own attention),

once with `target/release/attnscope-perf` and once with the reference, one thread each
(RAYON_NUM_THREADS=1; torch.set_num_threads(1)), and

- training: target tokens per second of forward, backward, gradient clipping and AdamW
  from the shipped weights, on the same batches of 64 test pairs (grouped by length as the
  trainer groups them), two threads each (candle's batch split into two data-parallel
  shards, as `attnscope train` does by default; --train-data-parallel); and the
  matrix-multiply GFLOP/s that this
  achieves, against the machine's measured matmul peak (f32, both libraries, 1 and 2
  threads).

It reports the median over rounds and the time ratio candle / PyTorch (below 1: candle is
faster). Results go to target/bench/perf.json and Markdown tables to target/bench/perf.md
and stdout. Build first: cargo build --release -p attnscope -p attnscope-perf.
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


def candle_train(model_dir: Path, batches, threads: int, shards: int) -> dict:
    cmd = [str(REPO / "target" / "release" / "attnscope-perf"), "--model", str(model_dir),
           "--train", "--reps", "1", "--data-parallel", str(shards)]
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


def train_flops(cfg: dict, batches) -> float:
    """Matrix-multiply FLOPs of one pass of training over `batches` (forward, and twice
    that backward), counted from the shapes; element-wise work is not counted."""
    total = 0.0
    for batch in batches:
        b = len(batch)
        s = max(len(src) for src, _ in batch)
        t = max(len(tgt) + 1 for _, tgt in batch)
        n = sum(len(tgt) + 1 for _, tgt in batch)
        v = cfg["tgt_vocab_size"]
        if cfg["architecture"] == "transformer":
            d, ff, layers = cfg["embed_dim"], cfg["ff_dim"], cfg["layers"]
            enc = b * s * (8 * d * d + 4 * d * ff + 4 * s * d)
            dec = b * t * (8 * d * d + 4 * t * d + 4 * d * d + 4 * s * d + 4 * d * ff) + b * s * 4 * d * d
            fwd = layers * (enc + dec) + 2 * n * d * v
        else:
            e, h, a, r = cfg["embed_dim"], cfg["hidden_dim"], cfg["attention_dim"], cfg["readout_dim"]
            scorer = cfg["attention"]
            keys = {"additive": 2 * b * s * 2 * h * a, "general": 2 * b * s * 2 * h * h}.get(scorer, 0)
            per_step = (2 * b * h * a + 2 * b * s * a if scorer == "additive" else 2 * b * s * h) \
                + 2 * b * s * 2 * h + 2 * b * 2 * h * 3 * h + 2 * b * h * 3 * h
            fwd = (2 * 2 * b * s * e * 3 * h + 2 * 2 * b * s * h * 3 * h + 2 * b * 2 * h * h + keys
                   + 2 * b * t * e * 3 * h + t * per_step + 2 * b * t * (3 * h + e) * r + 2 * n * r * v)
        total += 3 * fwd
    return total


def candle_gemm(threads: int) -> dict:
    env = dict(os.environ, RAYON_NUM_THREADS=str(threads))
    out = subprocess.run([str(REPO / "target" / "release" / "attnscope-perf"), "--gemm"],
                         capture_output=True, text=True, env=env, check=True)
    return json.loads(out.stdout)


def torch_gemm(threads: int) -> dict:
    torch.set_num_threads(threads)

    def rate(m: int, k: int, n: int) -> float:
        a, b = torch.randn(m, k), torch.randn(k, n)
        flops = 2.0 * m * k * n
        reps = max(3, int(2e9 / flops + 0.999))
        for _ in range(3):
            a @ b
        best = 0.0
        for _ in range(5):
            began = time.perf_counter()
            for _ in range(reps):
                a @ b
            best = max(best, flops * reps / (time.perf_counter() - began) / 1e9)
        return best

    return {"square_1024_gflops": rate(1024, 1024, 1024),
            "output_layer_704x256x8000_gflops": rate(704, 256, 8000)}


def markdown(rows: list[dict], peaks: list[dict]) -> str:
    out = []
    if peaks:
        out += ["| f32 matrix multiply | threads | candle GFLOP/s | PyTorch GFLOP/s |", "|---|---|---|---|"]
        for p in peaks:
            out.append(f"| {p['what']} | {p['threads']} | {p['candle']:.1f} | {p['pytorch']:.1f} |")
        out.append("")
    train = [r for r in rows if r["what"].startswith("training")]
    if train:
        out += ["| model | training, batch 64, 2 threads | candle | PyTorch | candle / PyTorch throughput |"
                " candle GFLOP/s (% of peak) | PyTorch GFLOP/s (% of peak) |",
                "|---|---|---|---|---|---|---|"]
        for r in train:
            out.append(f"| {r['model']} | target tokens / s | {r['candle']:,.0f} | {r['pytorch']:,.0f} | "
                       f"**{r['candle'] / r['pytorch']:.2f}** | {r['candle_gflops']:.1f} ({r['candle_peak']:.0%}) | "
                       f"{r['pytorch_gflops']:.1f} ({r['pytorch_peak']:.0%}) |")
        out.append("")
    infer = [r for r in rows if not r["what"].startswith("training")]
    if infer:
        out += ["| model | measure | unit | candle | PyTorch | time ratio candle / PyTorch |",
                "|---|---|---|---|---|---|"]
        for r in infer:
            out.append(f"| {r['model']} | {r['what']} | {r['unit']} | {r['candle']:.2f} | {r['pytorch']:.2f} | "
                       f"**{r['ratio']:.2f}** |")
    return "\n".join(out) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("names", nargs="*", help="model names (default: every model in models/)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--sentences", type=int, default=20, help="ten-word sentences per model")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--train-threads", type=int, default=2)
    ap.add_argument("--train-data-parallel", type=int, default=2,
                    help="shards of candle's training batch (attnscope train --data-parallel)")
    ap.add_argument("--train-batches", type=int, default=6, help="batches of 64 per round")
    ap.add_argument("--only", choices=["infer", "train"], help="one part of the table")
    ap.add_argument("--skip-check", action="store_true", help="do not run check.py first")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    names = args.names or sorted(p.parent.name for p in (REPO / "models").glob("*/config.json"))
    rows, peaks = [], []
    if args.only != "infer":
        for threads in (1, 2):
            c, t = candle_gemm(threads), torch_gemm(threads)
            for key, what in (("square_1024_gflops", "1024 x 1024 x 1024"),
                              ("output_layer_704x256x8000_gflops", "704 x 256 x 8000 (output layer)")):
                peaks.append({"what": what, "threads": threads, "candle": c[key], "pytorch": t[key]})
        torch.set_num_threads(args.threads)
    # The practical peak at 2 threads: the better of the two libraries' square products.
    peak = {lib: max(p[lib] for p in peaks if p["threads"] == 2) for lib in ("candle", "pytorch")} if peaks else {}
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
                c_tr.append(candle_train(model_dir, batches, args.train_threads,
                                         args.train_data_parallel)["target_tokens_per_s"])
                t_tr.append(torch_train(model_dir, batches)["target_tokens_per_s"])
            c, t = statistics.median(c_tr), statistics.median(t_tr)
            tokens = sum(len(tgt) + 1 for batch in batches for _, tgt in batch)
            gflop = train_flops(model.cfg, batches) / 1e9
            c_gf, t_gf = gflop * c / tokens, gflop * t / tokens
            rows.append({"model": name, "what": f"training, batch 64, {args.train_threads} threads",
                         "unit": "target tokens / s", "candle": c, "pytorch": t, "ratio": t / c,
                         "candle_gflops": c_gf, "pytorch_gflops": t_gf,
                         "candle_peak": c_gf / peak["candle"], "pytorch_peak": t_gf / peak["pytorch"]})
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
    (out / "perf.json").write_text(json.dumps({"rows": rows, "matmul": peaks}, indent=1))
    table = markdown(rows, peaks)
    (out / "perf.md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
