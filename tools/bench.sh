#!/usr/bin/env bash
# Side-by-side benchmark: every workload of benches/suite.rs (tessera) and tools/bench_suite.py
# (PyTorch, same random-init models and shapes, same thread count), in the same run, each in its
# own process (peak RSS per workload), tessera and PyTorch alternating. Prints one table.
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
if [ "$#" -gt 0 ]; then workloads=("$@"); else mapfile -t workloads < <("$bin" --list); fi
out=$(mktemp)
for w in "${workloads[@]}"; do
    echo "== $w" >&2
    "$bin" "$w" | tail -n 1 >>"$out"
    "$PY" tools/bench_suite.py "$w" | tail -n 1 >>"$out"
    if [ -n "${BASELINE:-}" ]; then
        "$BASELINE" "$w" | tail -n 1 | "$PY" -c 'import json,sys; r=json.loads(sys.stdin.read()); r["impl"]="baseline"; print(json.dumps(r))' >>"$out"
    fi
done
"$PY" - "$out" <<'PYEOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
by = {}
for r in rows:
    by.setdefault(r["workload"], {})[r["impl"]] = r
ceiling = by.get("matmul_2048", {}).get("tessera", {}).get("gflops")
base = any("baseline" in d for d in by.values())
head = "| workload | tessera | PyTorch | ratio | tessera GFLOP/s | % of matmul ceiling | peak RSS tessera / PyTorch (MB) |"
print(head + (" baseline | tessera / baseline |" if base else ""))
print("|---|---|---|---|---|---|---|" + ("---|---|" if base else ""))
for w, d in by.items():
    t, p = d.get("tessera"), d.get("pytorch")
    if not t or not p:
        continue
    unit = t["unit"] + "/s" if t["unit"] != "matmul" else "GFLOP/s"
    tv = t["per_s"] if t["unit"] != "matmul" else t["gflops"]
    pv = p["per_s"] if p["unit"] != "matmul" else t["gflop"] / p["median_s"]
    frac = f"{100 * t['gflops'] / ceiling:.0f}%" if ceiling else "-"
    row = (f"| {w} | {tv:.2f} {unit} | {pv:.2f} {unit} | **{tv / pv:.2f}x** | {t['gflops']:.1f} | {frac} | "
           f"{t['peak_rss_mb']:.0f} / {p['peak_rss_mb']:.0f} |")
    b = d.get("baseline")
    if b:
        bv = b["per_s"] if b["unit"] != "matmul" else b["gflops"]
        row += f" {bv:.2f} {unit} | {tv / bv:.3f}x |"
    print(row)
p0 = next(iter(by.values())).get("pytorch", {})
print(f"\nratio = tessera / PyTorch throughput (higher is better); {p0.get('threads')} threads; "
      f"PyTorch {p0.get('torch')}; GFLOP by tessera's analytic count (matmuls, 2 per multiply-add, "
      "backward = 2x forward); matmul ceiling = tessera's 2048^3 fp32 matmul in the same run; "
      "bf16 rows: tessera --dtype bf16 vs PyTorch autocast(bfloat16).")
PYEOF
rm -f "$out"
