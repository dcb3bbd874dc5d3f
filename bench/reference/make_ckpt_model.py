#!/usr/bin/env python3
"""Turns a training checkpoint (`runs/<name>/checkpoint.safetensors`) into a model folder
that `attnscope translate --models OUT` and `attnscope_ref.load` both read, so the reference
can be checked against a model that is still training (the Transformer).

    PY="nice -n 10 bench/reference/.venv/bin/python"
    $PY bench/reference/make_ckpt_model.py transformer /tmp/attnscope-ref-models
    $PY bench/reference/check.py --models /tmp/attnscope-ref-models --sentences runs/bahdanau/test.src

It writes OUT/<name>/: config.json (as train.rs `TrainOptions::model_config` builds it
from the run's options.json), both tokenizers, and model.safetensors with the weights only
(the checkpoint's `adam.*` moments left out). Write OUT outside the repository.
"""

import argparse
import json
import shutil
import sys
from pathlib import Path

from safetensors.torch import load_file, save_file
from tokenizers import Tokenizer

REPO = Path(__file__).resolve().parent.parent.parent


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("name", help="run name (a folder under runs/)")
    ap.add_argument("out", help="models folder to write OUT/<name>/ into")
    ap.add_argument("--runs", default=str(REPO / "runs"))
    args = ap.parse_args()
    run = Path(args.runs) / args.name
    out = Path(args.out) / args.name
    if out.resolve().is_relative_to(REPO):
        sys.exit("write the checkpoint model outside the repository")
    o = json.loads((run / "options.json").read_text())
    src_tok = f"tokenizer.{o['source_lang']}.json"
    tgt_tok = f"tokenizer.{o['target_lang']}.json"
    vocab = lambda f: Tokenizer.from_file(str(run / f)).get_vocab_size(True)  # noqa: E731
    cfg = {
        "architecture": o["architecture"],
        "attention": "scaled-dot" if o["architecture"] == "transformer" else o["attention"],
        "attention_training": o["attention_training"],
        "source_lang": o["source_lang"], "target_lang": o["target_lang"],
        "src_vocab_size": vocab(src_tok), "tgt_vocab_size": vocab(tgt_tok),
        "embed_dim": o["embed_dim"], "hidden_dim": o["hidden_dim"],
        # ModelConfig::transformer keeps the defaults (256); a GRU run uses hidden_dim.
        "attention_dim": 256 if o["architecture"] == "transformer" else o["hidden_dim"],
        "readout_dim": 256 if o["architecture"] == "transformer" else o["hidden_dim"],
        "layers": o["layers"] if o["architecture"] == "transformer" else 0,
        "heads": o["heads"] if o["architecture"] == "transformer" else 0,
        "ff_dim": o["ff_dim"] if o["architecture"] == "transformer" else 0,
        "dropout": o["dropout"], "max_len": o["max_len"],
        "source_tokenizer": src_tok, "target_tokenizer": tgt_tok,
    }
    step = json.loads((run / "checkpoint.json").read_text())["step"]
    weights = {k: v for k, v in load_file(str(run / "checkpoint.safetensors")).items()
               if not k.startswith("adam.")}
    out.mkdir(parents=True, exist_ok=True)
    for f in (src_tok, tgt_tok):
        shutil.copyfile(run / f, out / f)
    save_file(weights, str(out / "model.safetensors"))
    (out / "config.json").write_text(json.dumps(cfg, indent=2) + "\n")
    print(f"{out}: step {step}, {len(weights)} tensors, "
          f"{sum(v.numel() for v in weights.values()):,} parameters")


if __name__ == "__main__":
    main()
