#!/usr/bin/env bash
# Checks `attnscope score` against the reference implementation, Python's sacrebleu: scores
# a hypothesis file against a reference file (one sentence per line, one reference each) with
# both, using sacrebleu's default BLEU and chrF settings, prints the two side by side, and
# exits non-zero if BLEU or chrF differ by more than 0.1.
#
# Usage: scripts/check-sacrebleu.sh --hyp FILE --ref FILE [--bin PATH]
#   --bin  the attnscope binary (default target/release/attnscope, relative to the
#          repository root; build it with `cargo build --release -p attnscope`)
# Exit status: 0 when both scores agree within 0.1, 1 when they do not, 2 on a usage error,
# a missing file, a missing sacrebleu (`pip install sacrebleu`) or a failing `attnscope score`.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tolerance=0.1

usage() {
  cat >&2 <<EOF
usage: $(basename "$0") --hyp FILE --ref FILE [--bin PATH]

Scores FILE pairs with \`attnscope score\` and with Python's sacrebleu (default BLEU and
chrF, one reference), prints both, and fails if either score differs by more than $tolerance.
  --hyp FILE   hypotheses, one sentence per line
  --ref FILE   references, one sentence per line, paired line by line with --hyp
  --bin PATH   the attnscope binary (default: target/release/attnscope)
EOF
}

die() {
  echo "check-sacrebleu: $*" >&2
  exit 2
}

hyp="" ref="" bin="$root/target/release/attnscope"
while [[ $# -gt 0 ]]; do
  case "$1" in
    --hyp) [[ $# -ge 2 ]] || { usage; exit 2; }; hyp="$2"; shift 2 ;;
    --ref) [[ $# -ge 2 ]] || { usage; exit 2; }; ref="$2"; shift 2 ;;
    --bin) [[ $# -ge 2 ]] || { usage; exit 2; }; bin="$2"; shift 2 ;;
    -h | --help) usage; exit 0 ;;
    *) echo "check-sacrebleu: unknown argument: $1" >&2; usage; exit 2 ;;
  esac
done
[[ -n "$hyp" && -n "$ref" ]] || { usage; exit 2; }
[[ -f "$hyp" ]] || die "no such file: $hyp"
[[ -f "$ref" ]] || die "no such file: $ref"
[[ -x "$bin" ]] || die "no attnscope binary at $bin: build it with \`cargo build --release -p attnscope\` or pass --bin PATH"
command -v python3 >/dev/null || die "python3 is not installed"
python3 -c 'import sacrebleu' 2>/dev/null ||
  die "the Python package sacrebleu is not installed: pip install sacrebleu"

# attnscope prints `BLEU 39.57<TAB>chrF 58.81<TAB>2000 sentences`.
ours="$("$bin" score --hyp "$hyp" --ref "$ref")" || die "\`$bin score\` failed"
read -r our_bleu our_chrf n < <(
  sed -nE 's/^BLEU ([0-9.]+)\tchrF ([0-9.]+)\t([0-9]+) sentences$/\1 \2 \3/p' <<<"$ours"
) || die "cannot parse the output of \`attnscope score\`: $ours"

# Lines are split as Rust's str::lines does (on \n, a trailing \r dropped, no empty last
# line after a final newline), so both tools see the same sentences.
python3 - "$hyp" "$ref" "$our_bleu" "$our_chrf" "$n" "$tolerance" <<'PY'
import sys

import sacrebleu
from sacrebleu.metrics import BLEU, CHRF

hyp_path, ref_path, our_bleu, our_chrf, n, tolerance = sys.argv[1:]


def lines(path):
    with open(path, encoding="utf-8", newline="") as f:
        text = f.read()
    out = text.split("\n")
    if out and out[-1] == "":
        out.pop()
    return [l[:-1] if l.endswith("\r") else l for l in out]


hyps, refs = lines(hyp_path), lines(ref_path)
if len(hyps) != len(refs):
    sys.exit(f"check-sacrebleu: {hyp_path} has {len(hyps)} lines but {ref_path} has {len(refs)}")
if len(hyps) != int(n):
    sys.exit(f"check-sacrebleu: attnscope scored {n} sentences but the files have {len(hyps)}")

bleu, chrf = BLEU(), CHRF()
theirs = {
    "BLEU": bleu.corpus_score(hyps, [refs]).score,
    "chrF": chrf.corpus_score(hyps, [refs]).score,
}
ours = {"BLEU": float(our_bleu), "chrF": float(our_chrf)}
tol = float(tolerance)

print(f"{len(hyps)} sentences: {hyp_path} against {ref_path}")
print(f"{'metric':<8}{'attnscope':>11}{'sacrebleu':>11}{'diff':>8}")
bad = []
for name in ("BLEU", "chrF"):
    # attnscope prints 2 decimals: compare with sacrebleu's score rounded the same way.
    diff = ours[name] - round(theirs[name], 2)
    print(f"{name:<8}{ours[name]:>11.2f}{theirs[name]:>11.2f}{diff:>+8.2f}")
    if abs(diff) > tol:
        bad.append(name)
print(f"sacrebleu {sacrebleu.__version__} signatures:")
print(f"  BLEU {bleu.get_signature()}")
print(f"  chrF {chrf.get_signature()}")
if bad:
    verb = "differs" if len(bad) == 1 else "differ"
    print(f"MISMATCH: {' and '.join(bad)} {verb} by more than {tol}")
    sys.exit(1)
print(f"OK: BLEU and chrF agree within {tol}")
PY
