"""Makes the tiny random Marian fixture of the Hugging Face import (benchmark-only Python).

A real opus-mt folder is what `save_pretrained` writes for a `MarianMTModel` and its
`MarianTokenizer`; this script makes one the same way, at a tiny size, so that the Rust
import can be checked against `transformers` in CI without a download:

1. two SentencePiece unigram models (English and French) trained on a few sentences, and the
   joint `vocab.json` Marian's tokenizer maps their pieces through (`</s>` 0, `<unk>` 1, the
   pieces, `<pad>` last, as opus-mt folders have them);
2. a `MarianMTModel` with random weights (seeded; swish activation, scaled embeddings,
   shared embeddings, `<pad>` as decoder start and a banned word, as opus-mt configs say),
   saved with `save_pretrained` (config.json, model.safetensors, generation_config.json)
   beside the tokenizer files;
3. `expected.json`: per sentence, the tokenizer's source pieces and ids, the teacher-forced
   logits, every layer's cross-attention and the encoder's and decoder's self-attention,
   and the greedy output of `generate`.

    bench/reference/.venv/bin/python bench/reference/make_marian_fixture.py \
        crates/model/tests/fixtures/marian-tiny [--seed 0] [--d-model 16]

The folder is committed (a few hundred KB); `crates/model/tests/marian.rs` imports it and
compares. A second folder made with another seed and sizes is how an independent check can
tell the importer is general.
"""

import argparse
import json
import os
import tempfile

import sentencepiece as spm
import torch
from transformers import MarianConfig, MarianMTModel, MarianTokenizer

EN = [
    "I am cold.", "Where is the cat?", "The dog is sleeping.", "We are here.",
    "Is it cold?", "A man is reading a book.", "Two children play in the snow.",
    "She reads every evening.", "The old man gave my sister a red bicycle.",
    "They are eating in the garden.", "He likes music.", "Tom is late.",
]
FR = [
    "J'ai froid.", "Où est le chat ?", "Le chien dort.", "Nous sommes ici.",
    "Fait-il froid ?", "Un homme lit un livre.", "Deux enfants jouent dans la neige.",
    "Elle lit tous les soirs.", "Le vieil homme a donné un vélo rouge à ma sœur.",
    "Ils mangent dans le jardin.", "Il aime la musique.", "Tom est en retard.",
]
SENTENCES = [
    ("I am cold.", "J'ai froid."),
    ("Where is the cat?", "Où est le chat ?"),
    ("Two children play in the snow near the old garden.", "Deux enfants jouent dans la neige."),
    ("Tom likes cold music, café and ÿ.", "Tom aime la musique."),
]


def train_spm(lines, prefix, size):
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
        f.write("\n".join(lines * 4) + "\n")
        path = f.name
    spm.SentencePieceTrainer.train(
        input=path, model_prefix=prefix, vocab_size=size, model_type="unigram",
        character_coverage=1.0, unk_id=1, eos_id=0, bos_id=-1, pad_id=-1,
        hard_vocab_limit=False, minloglevel=2,
    )
    os.unlink(path)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--d-model", type=int, default=16)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--heads", type=int, default=2)
    ap.add_argument("--ffn", type=int, default=32)
    ap.add_argument("--activation", default="swish")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    work = tempfile.mkdtemp()
    train_spm(EN, os.path.join(work, "source"), 60)
    train_spm(FR, os.path.join(work, "target"), 70)

    vocab = {"</s>": 0, "<unk>": 1}
    for side in ("source", "target"):
        sp = spm.SentencePieceProcessor(model_file=os.path.join(work, f"{side}.model"))
        for i in range(sp.get_piece_size()):
            p = sp.id_to_piece(i)
            if p not in vocab:
                vocab[p] = len(vocab)
    vocab[">>fra<<"] = len(vocab)
    vocab["<pad>"] = len(vocab)
    with open(os.path.join(work, "vocab.json"), "w") as f:
        json.dump(vocab, f, ensure_ascii=False)
    tok = MarianTokenizer(
        os.path.join(work, "source.model"), os.path.join(work, "target.model"),
        os.path.join(work, "vocab.json"), source_lang="en", target_lang="fr",
    )
    pad = vocab["<pad>"]
    config = MarianConfig(
        vocab_size=len(vocab), decoder_vocab_size=len(vocab), d_model=args.d_model,
        encoder_layers=args.layers, decoder_layers=args.layers,
        encoder_attention_heads=args.heads, decoder_attention_heads=args.heads,
        encoder_ffn_dim=args.ffn, decoder_ffn_dim=args.ffn,
        activation_function=args.activation, max_position_embeddings=128,
        pad_token_id=pad, eos_token_id=0, decoder_start_token_id=pad,
        forced_eos_token_id=0, bad_words_ids=[[pad]], scale_embedding=True,
        share_encoder_decoder_embeddings=True, init_std=0.4, max_length=40,
        num_beams=1,
    )
    torch.manual_seed(args.seed)
    config._attn_implementation = "eager"
    model = MarianMTModel(config).eval()
    with torch.no_grad():
        # Random biases too (the default initialisation sets them to 0, which would hide a
        # bias that is loaded into the wrong place).
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.normal_(0.0, 0.2)
        model.final_logits_bias.normal_(0.0, 0.5)
    # As opus-mt folders have it: `<pad>` (the decoder's start) is never generated.
    model.generation_config.bad_words_ids = [[pad]]
    model.save_pretrained(args.out, safe_serialization=True)
    tok.save_pretrained(args.out)

    out = {"transformers": __import__("transformers").__version__, "sentences": []}
    for src, tgt in SENTENCES:
        enc = tok(src, return_tensors="pt")
        labels = tok(text_target=tgt, return_tensors="pt").input_ids
        dec_in = torch.cat([torch.tensor([[pad]]), labels[:, :-1]], dim=1)
        with torch.no_grad():
            r = model(input_ids=enc.input_ids, attention_mask=enc.attention_mask,
                      decoder_input_ids=dec_in, output_attentions=True)
            # The folder's own generation settings: greedy, max_length 20 by default, the
            # forced </s> at the limit.
            gen = model.generate(**enc, num_beams=1, do_sample=False)
        ids = enc.input_ids[0].tolist()
        out["sentences"].append({
            "source": src,
            "source_ids": ids,
            "source_pieces": tok.convert_ids_to_tokens(ids),
            "target": tgt,
            "target_ids": labels[0].tolist(),
            "logits": [[round(x, 5) for x in row] for row in r.logits[0].tolist()],
            "cross_attentions": [[[[round(x, 6) for x in q] for q in h] for h in a[0].tolist()]
                                 for a in r.cross_attentions],
            "encoder_attentions": [[[[round(x, 6) for x in q] for q in h] for h in a[0].tolist()]
                                   for a in r.encoder_attentions],
            "decoder_attentions": [[[[round(x, 6) for x in q] for q in h] for h in a[0].tolist()]
                                   for a in r.decoder_attentions],
            "greedy_ids": gen[0].tolist(),
            "greedy_text": tok.decode(gen[0], skip_special_tokens=True),
        })
    with open(os.path.join(args.out, "expected.json"), "w") as f:
        json.dump(out, f, ensure_ascii=False)
    print(f"wrote {args.out}: vocab {len(vocab)}, d_model {args.d_model}")
    for s in out["sentences"]:
        print(s["source"], s["source_pieces"], "->", s["greedy_text"])


if __name__ == "__main__":
    main()
