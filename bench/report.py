#!/usr/bin/env python3
"""Writes the results of `scripts/bench-all.sh` (target/bench/) into docs/BENCHMARKS.md,
between its `bench-all:begin` and `bench-all:end` markers; the rest of the file is left as
it is."""

from __future__ import annotations

import datetime
import json
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "target" / "bench"
DOC = REPO / "docs" / "BENCHMARKS.md"
BEGIN, END = "<!-- bench-all:begin -->", "<!-- bench-all:end -->"


def read(name: str) -> str:
    path = OUT / name
    if not path.is_file():
        sys.exit(f"report: {path} is missing; run scripts/bench-all.sh")
    return path.read_text(encoding="utf-8")


def page_table() -> str:
    rows = ["| figure | value |", "|---|---|"]
    for line in read("page.txt").splitlines():
        m = re.match(r"^dist/(\S+)\s+(\d+) B raw\s+(\d+) B gzip -9$", line.strip())
        if m:
            name = re.sub(r"-[0-9a-f]{16}", "", m.group(1))
            rows.append(f"| `{name}`, raw / gzip -9 | {int(m.group(2)):,} B / {int(m.group(3)):,} B |")
    frames = json.loads(read("frames.json"))
    rows.append(f"| frame time while streaming {frames['source_pieces']} source x {frames['target_pieces']} "
                f"target pieces, p50 / p95 / max | {frames['frame_ms_p50']:.1f} / {frames['frame_ms_p95']:.1f} / "
                f"{frames['frame_ms_max']:.1f} ms |")
    rows.append(f"| late frames (over 17 ms) in that stream | {frames['frames_late']} of {frames['frames']} |")
    return "\n".join(rows)


def wire_table() -> str:
    lines = read("wire.txt").splitlines()
    rows = ["| what | packed (as sent) | nested JSON numbers |", "|---|---|---|"]
    for line in lines:
        m = re.match(r"bytes per step event: packed (\d+), nested JSON (\d+) \(([\d.]+)x\)", line)
        if m:
            rows.append(f"| one Transformer `step` event, mean | {int(m.group(1)):,} B | {int(m.group(2)):,} B ({m.group(3)}x) |")
        m = re.match(r"encoder self-attention (\[.*\]): packed (\d+) B, nested (\d+) B", line)
        if m:
            rows.append(f"| encoder self-attention `{m.group(1)}` (in `done`) | {int(m.group(2)):,} B | {int(m.group(3)):,} B |")
    return f"{lines[0]}:\n\n" + "\n".join(rows) if lines else "\n".join(rows)


def main() -> None:
    doc = DOC.read_text(encoding="utf-8")
    if BEGIN not in doc or END not in doc:
        sys.exit(f"report: {DOC} lacks the {BEGIN} / {END} markers")
    today = datetime.date.today().isoformat()
    body = "\n".join([
        BEGIN,
        f"Generated {today} by `scripts/bench-all.sh` (do not edit between the markers).",
        "",
        "### candle against PyTorch",
        "",
        read("perf.md").rstrip(),
        "",
        "### Server under load",
        "",
        "Greedy translations in shared batches (the default, `--batch-rows 256`):",
        "",
        read("load.md").rstrip(),
        "",
        "The same with every translation decoded alone (`--batch-rows 1`):",
        "",
        read("load-alone.md").rstrip(),
        "",
        "### Wire size of a Transformer step",
        "",
        wire_table(),
        "",
        "### The page",
        "",
        page_table(),
        "",
        "### What attribution costs",
        "",
        "`attnscope translate --format json` of five sentences (2 to 18 words), with no",
        "attribution and with each method; one process per row, so loading is in every row:",
        "the difference to the first row of a model is the attribution's cost.",
        "",
        read("explain.md").rstrip(),
        END,
    ])
    start, end = doc.index(BEGIN), doc.index(END) + len(END)
    DOC.write_text(doc[:start] + body + doc[end:], encoding="utf-8")
    print(f"report: wrote {DOC.relative_to(REPO)}")


if __name__ == "__main__":
    main()
