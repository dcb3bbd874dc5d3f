"""Bytes per streamed step of a Transformer translation: packed heads (as sent) against the
same step with every head as nested JSON numbers (what serde_json would write for f32).

    curl -s -H 'content-type: application/json' http://127.0.0.1:8080/api/translate \
         -d '{"text": "...", "model": "transformer"}' | bench/reference/.venv/bin/python bench/reference/wire_size.py
"""
import base64
import json
import sys

import numpy as np


def unpack(p):
    a = np.frombuffer(base64.b64decode(p["f16"]), dtype="<f2").astype(np.float32)
    return a.reshape(p["shape"])


def f32json(x):
    """A nested array as serde_json writes f32 values (shortest round-trip digits)."""
    if isinstance(x, np.ndarray):
        return "[" + ",".join(f32json(v) for v in x) + "]"
    s = np.format_float_positional(np.float32(x), unique=True, trim="0")
    return s + "0" if s.endswith(".") else s


def main():
    r = json.load(sys.stdin)
    packed = nested = 0
    for st in r["steps"]:
        event = json.dumps(st, separators=(",", ":"), ensure_ascii=False).encode()
        h = st["heads"]
        heads_nested = '{"cross":' + f32json(unpack(h["cross"])) + ',"self":' + f32json(unpack(h["self"])) + "}"
        packed += len(event)
        nested += len(event) - len(json.dumps(h, separators=(",", ":"))) + len(heads_nested)
    n = len(r["steps"])
    layers, heads = r["steps"][0]["heads"]["cross"]["shape"][:2]
    print(f"{len(r['source_tokens'])} source x {n} target tokens, {layers} layers x {heads} heads")
    print(f"bytes per step event: packed {packed / n:.0f}, nested JSON {nested / n:.0f} ({nested / packed:.2f}x)")
    enc = r["encoder_attention"]
    print(f"encoder self-attention {enc['shape']}: packed {len(json.dumps(enc))} B, nested {len(f32json(unpack(enc)))} B")


if __name__ == "__main__":
    main()
