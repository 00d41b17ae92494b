#!/usr/bin/env bash
# Fetches CLIP's BPE merges (bpe_simple_vocab_16e6.txt.gz, MIT, from OpenAI's CLIP) out of the
# open-clip-torch wheel on PyPI into assets/ (git-ignored). The tokenizer tests and the
# offline CLIP demos read it from there; hub checkpoints bring their own vocab.json/merges.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
dest=assets/bpe_simple_vocab_16e6.txt.gz
[ -s "$dest" ] && exit 0
tmp=$(mktemp -d)
python3 -m pip download -q --no-deps --only-binary=:all: -d "$tmp" open-clip-torch
python3 - "$tmp" "$dest" <<'PY'
import glob, sys, zipfile
whl = glob.glob(sys.argv[1] + "/open_clip_torch-*.whl")[0]
with zipfile.ZipFile(whl) as z:
    open(sys.argv[2], "wb").write(z.read("open_clip/bpe_simple_vocab_16e6.txt.gz"))
PY
rm -rf "$tmp"
echo "wrote $dest"
