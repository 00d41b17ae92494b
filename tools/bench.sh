#!/usr/bin/env bash
# Side-by-side benchmark: every workload of benches/suite.rs (tessera), tools/bench_suite.py
# (PyTorch) and tools/bench_onnx.py (ONNX Runtime and OpenVINO on the same models exported to
# ONNX): same random-init models and shapes, same thread count, in the same run, each in its own
# process (peak RSS per workload), the runtimes alternating per workload. Prints one table, with
# the machine's measured fp32 FMA and bf16-dot peaks.
# Needs the reference venv (tools/setup_reference.sh).
#   tools/bench.sh                      # all workloads
#   tools/bench.sh vit_b16_b8 clip_image_b8
#   BASELINE=/path/to/old/suite tools/bench.sh   # also an older tessera build, in the same run
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
threads=${BENCH_THREADS:-$(nproc)}
export BENCH_THREADS=$threads RAYON_NUM_THREADS=$threads
cargo build --release --bench suite >&2
bin=$(cargo bench --bench suite --no-run --message-format=json 2>/dev/null |
    "$PY" -c 'import json,sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "suite" and m.get("executable"):
        print(m["executable"])' | tail -n 1)
if [ "$#" -gt 0 ]; then
    workloads=("$@")
else
    # Tessera's workloads, then those only the other runtimes have (int8: a missed target shows).
    mapfile -t workloads < <({ "$bin" --list; "$PY" tools/bench_onnx.py supported; } | awk '!seen[$0]++')
fi
out=$(mktemp)
# Each side prints one JSON line, or nothing for a workload it lacks.
side() { "$@" 2>/dev/null | tail -n 1 | grep '^{' >>"$out" || true; }
for w in "${workloads[@]}"; do
    echo "== $w" >&2
    # Exports happen once (cached under target/bench_onnx), outside the timings.
    "$PY" tools/bench_onnx.py export "$w" >/dev/null 2>&1 || echo "   (no ONNX export for $w)" >&2
    side "$bin" "$w"
    [[ "$w" == *_peak ]] && continue
    side "$PY" tools/bench_suite.py "$w"
    side "$PY" tools/bench_onnx.py onnxruntime "$w"
    side "$PY" tools/bench_onnx.py openvino "$w"
    if [ -n "${BASELINE:-}" ]; then
        "$BASELINE" "$w" 2>/dev/null | tail -n 1 | grep '^{' | "$PY" -c 'import json,sys; r=json.loads(sys.stdin.read()); r["impl"]="baseline"; print(json.dumps(r))' >>"$out" || true
    fi
done
"$PY" - "$out" <<'PYEOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
by = {}
for r in rows:
    by.setdefault(r["workload"], {})[r["impl"]] = r
peak = lambda w: by.get(w, {}).get("tessera", {})
fma, bf16, int8 = peak("fma_peak"), peak("bf16_dot_peak"), peak("int8_dot_peak")
ceiling = by.get("matmul_2048", {}).get("tessera", {}).get("gflops")
base = any("baseline" in d for d in by.values())
others = [("pytorch", "PyTorch"), ("onnxruntime", "ONNX Runtime"), ("openvino", "OpenVINO")]


def rate(r, t):
    if r is None:
        return None
    return r["per_s"] if r["unit"] != "matmul" else t["gflop"] / r["median_s"]


head = ("| workload | tessera | PyTorch | ONNX Runtime | OpenVINO | tessera / PyTorch | tessera / best other "
        "| tessera GFLOP/s | % of peak | peak RSS MB: tessera / PyTorch / ORT / OpenVINO |")
print(head + (" baseline | tessera / baseline |" if base else ""))
print("|---" * 10 + "|" + ("---|---|" if base else ""))
for w, d in by.items():
    if w.endswith("_peak"):
        continue
    t = d.get("tessera")
    ref = t or next(iter(d.values()))
    unit = ref["unit"] + "/s" if ref["unit"] != "matmul" else "GFLOP/s"
    tv = rate(t, t) if t else None
    vals = {k: rate(d.get(k), t) if (t or d.get(k, {}).get("unit") != "matmul") else None for k, _ in others}
    fmt = lambda v: f"{v:.2f}" if v is not None else "—"  # noqa: E731
    best = max((v for v in vals.values() if v is not None), default=None)
    vs_pt = f"**{tv / vals['pytorch']:.2f}x**" if tv and vals["pytorch"] else "—"
    vs_best = f"**{tv / best:.2f}x**" if tv and best else "—"
    # bf16 (int8) work against the bf16-dot (int8-dot) peak where the CPU has one, else the FMA peak.
    p = fma.get("gflops")
    for suffix, q in (("_bf16", bf16), ("_int8", int8)):
        if w.endswith(suffix) and q.get("gflops"):
            p = q["gflops"]
    frac = f"{100 * t['gflops'] / p:.0f}%" if t and p else "—"
    gf = f"{t['gflops']:.1f}" if t else "—"
    rss = " / ".join(f"{d[k]['peak_rss_mb']:.0f}" if k in d else "—" for k in ["tessera"] + [k for k, _ in others])
    row = (f"| {w} | {fmt(tv) + ' ' + unit if tv else '—'} | {fmt(vals['pytorch'])} | {fmt(vals['onnxruntime'])} | "
           f"{fmt(vals['openvino'])} | {vs_pt} | {vs_best} | {gf} | {frac} | {rss} |")
    b = d.get("baseline")
    if b and tv:
        bv = rate(b, t)
        row += f" {bv:.2f} {unit} | {tv / bv:.3f}x |"
    print(row)
info = {}
for d in by.values():
    for k, r in d.items():
        info.setdefault(k, r)
pt, ort_, ov = info.get("pytorch", {}), info.get("onnxruntime", {}), info.get("openvino", {})
show = lambda r: f"{r['gflops']:.1f} GFLOP/s ({r['isa']})" if r.get("gflops") else "not on this CPU"  # noqa: E731
print(f"\nmeasured peaks, {fma.get('threads', '?')} threads: fp32 FMA {show(fma)}; bf16 dot {show(bf16)}; "
      f"int8 dot {show(int8).replace('GFLOP/s', 'GOP/s')}.")
print(f"ratio columns: tessera throughput / the other's (higher is better); best other = the fastest of "
      f"PyTorch {pt.get('torch', '-')}, ONNX Runtime {ort_.get('version', '-')} (ORT_ENABLE_ALL), OpenVINO "
      f"{ov.get('version', '-')} (LATENCY hint); {pt.get('threads')} threads; GFLOP by tessera's analytic count "
      "(matmuls, 2 per multiply-add, backward = 2x forward); % of peak = tessera GFLOP/s over the measured FMA "
      "peak (bf16 rows: over the bf16-dot peak, int8 rows: over the int8-dot peak, where the CPU has one); matmul_2048 = tessera's 2048^3 fp32 "
      "matmul. bf16 rows: tessera --dtype bf16, PyTorch autocast(bfloat16), OpenVINO's bf16 precision hint "
      f"(compiled as {by.get('vit_b16_b8_bf16', {}).get('openvino', {}).get('precision', '-')}). int8 rows: "
      "tessera --dtype int8 (per-channel int8 weights, per-row dynamic u8 activations), ONNX Runtime "
      "quantize_dynamic (per-channel QInt8 weights; OpenVINO runs that model), PyTorch "
      "torch.ao.quantization.quantize_dynamic on every nn.Linear; — = not run by that runtime.")
PYEOF
rm -f "$out"
