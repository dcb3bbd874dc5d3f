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
