"""Load test of `tessera serve` with oha (loopback only, bounded in time), side by side with
infinity (`infinity-emb` from PyPI) serving the same random-init CLIP B/32 in the same run.

Workloads: image embeddings (one JPEG data URI per request, OpenAI /v1/embeddings with
infinity's "modality": "image") and zero-shot (one image, four labels; tessera only: infinity has
no zero-shot route). Concurrency 1 / 8 / 64; tessera with dynamic batching (--max-batch 32) and
with batch size 1; infinity with --batch-size 32. Prints a markdown table and writes JSON.

    python3 tools/serve_load.py --model DIR [--infinity PATH/TO/infinity_emb] [--seconds 15]
"""
import argparse
import base64
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def jpeg_uri():
    # A 320x240 JPEG (a smooth gradient, 5.5 kB): decoding and resizing cost like a small photo's.
    path = os.path.join(ROOT, "tests", "fixtures", "serve_load.jpg")
    if not os.path.exists(path):
        raise SystemExit(f"{path} missing")
    return "data:image/jpeg;base64," + base64.b64encode(open(path, "rb").read()).decode()


def wait_ready(url, proc, timeout=600):
    t0 = time.time()
    while time.time() - t0 < timeout:
        if proc.poll() is not None:
            raise SystemExit(f"server exited: {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return time.time() - t0
        except Exception:
            pass
        time.sleep(0.5)
    raise SystemExit(f"{url} not ready after {timeout} s")


def rss_mb(pid):
    out = {}
    for line in open(f"/proc/{pid}/status"):
        k, _, v = line.partition(":")
        if k in ("VmRSS", "VmHWM"):
            out[k] = int(v.split()[0]) / 1024
    return out


def oha(url, body, conc, seconds):
    with open("/tmp/serve_load_body.json", "w") as f:
        json.dump(body, f)
    cmd = ["oha", "-z", f"{seconds}s", "-c", str(conc), "-m", "POST", "-T", "application/json",
           "-D", "/tmp/serve_load_body.json", "--no-tui", "--output-format", "json", url]
    d = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
    p = d["latencyPercentiles"]
    codes = d.get("statusCodeDistribution", {})
    return {
        "rps": d["summary"]["requestsPerSec"],
        "p50_ms": (p.get("p50") or 0) * 1000,
        "p99_ms": (p.get("p99") or 0) * 1000,
        "success": d["summary"]["successRate"],
        "codes": codes,
    }


def start(cmd, env=None):
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=open("/tmp/serve_load_server.log", "a"),
                            env={**os.environ, **(env or {})}, preexec_fn=os.setsid)


def stop(proc):
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        return proc.wait(60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        return proc.wait()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--tessera", default=os.path.join(ROOT, "target", "release", "tessera"))
    ap.add_argument("--infinity", default=shutil.which("infinity_emb"))
    ap.add_argument("--seconds", type=int, default=15)
    ap.add_argument("--concurrency", default="1,8,64")
    ap.add_argument("--out", default=os.path.join(ROOT, "runs", "serve_load.json"))
    a = ap.parse_args()
    uri = jpeg_uri()
    concs = [int(c) for c in a.concurrency.split(",")]
    emb = {"model": "clip", "modality": "image", "input": [uri]}
    zs = {"model": "clip", "images": [uri], "labels": ["a cat", "a dog", "a car", "a tree"]}
    results = []
    servers = [
        ("tessera, dynamic batching (--max-batch 32)", [a.tessera, "serve", "--model", f"clip={a.model}",
         "--port", "18090", "--max-batch", "32", "--max-queue", "4096"], "http://127.0.0.1:18090", "/v1"),
        ("tessera, batch size 1 (--max-batch 1)", [a.tessera, "serve", "--model", f"clip={a.model}",
         "--port", "18090", "--max-batch", "1", "--max-queue", "4096"], "http://127.0.0.1:18090", "/v1"),
    ]
    if a.infinity:
        servers.append(("infinity 0.0.78 (torch, --batch-size 32)", [a.infinity, "v2", "--model-id", a.model,
                        "--port", "18091", "--engine", "torch", "--device", "cpu", "--batch-size", "32"],
                        "http://127.0.0.1:18091", ""))
    for name, cmd, base, prefix in servers:
        proc = start(cmd, {"HF_HUB_OFFLINE": "1", "INFINITY_ANONYMOUS_USAGE_STATS": "0",
                           "DO_NOT_TRACK": "1"})
        ready_s = wait_ready(base + "/health", proc)
        if "tessera" in name:
            wait_ready(base + "/ready", proc)
        model = "clip" if "tessera" in name else a.model.lstrip("/")
        work = [("image embeddings", f"{base}{prefix}/embeddings", {**emb, "model": model})]
        if "tessera" in name:
            work.append(("zero-shot (4 labels)", f"{base}{prefix}/zero-shot", zs))
        for wname, url, body in work:
            oha(url, body, 4, 2)  # warm-up
            for c in concs:
                r = oha(url, body, c, a.seconds)
                r.update(server=name, workload=wname, concurrency=c, ready_s=ready_s, **rss_mb(proc.pid))
                results.append(r)
                print(f"{name:44} {wname:22} c={c:<3} {r['rps']:7.1f} req/s  p50 {r['p50_ms']:7.1f} ms  "
                      f"p99 {r['p99_ms']:7.1f} ms  ok {r['success']:.3f} {r['codes']}", flush=True)
        rc = stop(proc)
        print(f"{name}: exit {rc} after SIGTERM", flush=True)
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    json.dump({"cpu": open("/proc/cpuinfo").read().split("model name")[1].split("\n")[0].strip(": "),
               "seconds": a.seconds, "results": results}, open(a.out, "w"), indent=1)
    print("\n| server | workload | concurrency | req/s | p50 ms | p99 ms | 2xx |\n|---|---|---|---|---|---|---|")
    for r in results:
        ok = sum(v for k, v in r["codes"].items() if k.startswith("2"))
        tot = sum(r["codes"].values())
        print(f"| {r['server']} | {r['workload']} | {r['concurrency']} | {r['rps']:.1f} | {r['p50_ms']:.0f} | "
              f"{r['p99_ms']:.0f} | {ok}/{tot} |")


if __name__ == "__main__":
    sys.exit(main())
