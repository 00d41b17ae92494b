"""Faults under load and a memory soak for `tessera serve` (loopback only, bounded in time).

Phase A (--seconds, default 600): oha sends good image-embedding requests at concurrency 8
while this script injects faults round-robin: malformed JSON, non-image bytes, oversized
bodies, requests without the API key, clients that send a 16-image request and hang up at
once, clients that time out while their request is queued. Good requests must all be 200,
every fault its 4xx with a JSON error; VmRSS is sampled every 10 s.
Phase B: a full queue: bursts of 16-image requests past --max-queue get 429 with Retry-After
at once, admitted ones 200, and good requests succeed right after.
Phase C: SIGTERM while requests are in flight: they are answered, the server exits 0.

    python3 tools/serve_soak.py --model DIR [--seconds 600]
"""
import argparse
import base64
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KEY = "soak-key"
PORT = 18095


def rss(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def request(body: bytes, key=KEY, timeout=120, path="/v1/embeddings"):
    c = http.client.HTTPConnection("127.0.0.1", PORT, timeout=timeout)
    h = {"Content-Type": "application/json"}
    if key:
        h["Authorization"] = f"Bearer {key}"
    c.request("POST", path, body=body, headers=h)
    r = c.getresponse()
    data = r.read()
    c.close()
    return r.status, data, r.getheader("Retry-After")


def json_error(data):
    try:
        return "message" in json.loads(data)["error"]
    except Exception:
        return False


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--tessera", default=os.path.join(ROOT, "target", "release", "tessera"))
    ap.add_argument("--seconds", type=int, default=600)
    ap.add_argument("--out", default=os.path.join(ROOT, "runs", "serve_soak.json"))
    a = ap.parse_args()
    img = open(os.path.join(ROOT, "tests", "fixtures", "serve_load.jpg"), "rb").read()
    uri = "data:image/jpeg;base64," + base64.b64encode(img).decode()
    good = json.dumps({"model": "clip", "modality": "image", "input": [uri]}).encode()
    big16 = json.dumps({"model": "clip", "modality": "image", "input": [uri] * 16}).encode()
    log = open("/tmp/serve_soak_server.log", "w")
    srv = subprocess.Popen([a.tessera, "serve", "--model", f"clip={a.model}", "--port", str(PORT),
                            "--api-key", KEY, "--max-queue", "64", "--max-client-batch", "16",
                            "--payload-limit", str(4 << 20)], stderr=log, stdout=log)
    t0 = time.time()
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{PORT}/ready", timeout=2) as r:
                if r.status == 200:
                    break
        except Exception:
            if srv.poll() is not None or time.time() - t0 > 300:
                raise SystemExit("server did not become ready")
            time.sleep(0.5)
    report = {"phase_a": {}, "phase_b": {}, "phase_c": {}}

    # ---- Phase A: good load + faults, memory sampled.
    with open("/tmp/serve_soak_good.json", "wb") as f:
        f.write(good)
    oha = subprocess.Popen(["oha", "-z", f"{a.seconds}s", "-c", "8", "-m", "POST", "-T", "application/json",
                            "-H", f"Authorization: Bearer {KEY}", "-D", "/tmp/serve_soak_good.json",
                            "--no-tui", "--output-format", "json", f"http://127.0.0.1:{PORT}/v1/embeddings"],
                           stdout=subprocess.PIPE, text=True)
    samples = []
    faults = {}
    bad = []
    stop = threading.Event()

    def sampler():
        while not stop.is_set():
            samples.append((round(time.time() - t_a, 1), rss(srv.pid)))
            stop.wait(10)

    def hangup():
        s = socket.create_connection(("127.0.0.1", PORT))
        s.sendall(f"POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  f"Authorization: Bearer {KEY}\r\nContent-Length: {len(big16)}\r\n\r\n".encode() + big16)
        s.close()
        return "hung up", None, None

    def oversized():
        try:
            return request(json.dumps({"input": "x" * (5 << 20)}).encode())
        except (BrokenPipeError, ConnectionResetError):
            return "closed by the server mid-upload", None, None

    def queued_timeout():
        try:
            return request(big16, timeout=0.05)
        except (socket.timeout, TimeoutError):
            return "timed out", None, None

    cases = [
        ("malformed JSON", lambda: request(b'{"input": [', ), {400}),
        ("non-image bytes", lambda: request(json.dumps({"modality": "image", "input": [
            "data:image/png;base64," + base64.b64encode(os.urandom(3000)).decode()]}).encode()), {422}),
        # The server answers 413 from the Content-Length alone and closes; a client still
        # uploading (http.client sends the whole body first) may see the close as EPIPE.
        ("oversized body", oversized, {413, "closed by the server mid-upload"}),
        ("no API key", lambda: request(good, key=None), {401}),
        ("wrong API key", lambda: request(good, key="nope"), {401}),
        ("client hangs up", hangup, {"hung up"}),
        ("client times out while queued", queued_timeout, {"timed out", 200}),
    ]
    t_a = time.time()
    threading.Thread(target=sampler, daemon=True).start()
    i = 0
    while time.time() - t_a < a.seconds:
        name, fn, want = cases[i % len(cases)]
        try:
            status, data, _ = fn()
        except Exception as e:  # a refused connection would be a server failure
            status, data = f"error {e}", None
        f = faults.setdefault(name, {})
        f[str(status)] = f.get(str(status), 0) + 1
        if status not in want or (isinstance(status, int) and status >= 400 and not json_error(data)):
            bad.append((name, str(status)))
        i += 1
        time.sleep(0.2)
    out, _ = oha.communicate()
    stop.set()
    d = json.loads(out)
    samples.append((round(time.time() - t_a, 1), rss(srv.pid)))
    report["phase_a"] = {
        "seconds": a.seconds,
        "good": {"codes": d.get("statusCodeDistribution"), "errors": d.get("errorDistribution"),
                 "rps": d["summary"]["requestsPerSec"],
                 "p50_ms": d["latencyPercentiles"]["p50"] * 1000, "p99_ms": d["latencyPercentiles"]["p99"] * 1000},
        "faults": faults, "unexpected": bad,
        "rss_mb_first": samples[0][1], "rss_mb_last": samples[-1][1],
        "rss_mb_max": max(s[1] for s in samples), "rss_samples": samples,
    }
    print(json.dumps({k: v for k, v in report["phase_a"].items() if k != "rss_samples"}, indent=1), flush=True)

    # ---- Phase B: a full queue.
    results = []

    def burst():
        t = time.time()
        s, data, retry = request(big16)
        results.append((s, retry, time.time() - t, json_error(data) if s != 200 else True))

    threads = [threading.Thread(target=burst) for _ in range(16)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    after = [request(good)[0] for _ in range(5)]
    codes = {}
    for s, *_ in results:
        codes[str(s)] = codes.get(str(s), 0) + 1
    shed = [r for r in results if r[0] == 429]
    report["phase_b"] = {
        "burst_codes": codes,
        "429_with_retry_after": all(r[1] == "1" and r[3] for r in shed),
        "429_max_latency_ms": max((r[2] * 1000 for r in shed), default=None),
        "200_max_latency_ms": max((r[2] * 1000 for r in results if r[0] == 200), default=None),
        "good_after": after,
    }
    print(json.dumps(report["phase_b"], indent=1), flush=True)

    # ---- Phase C: SIGTERM with requests in flight.
    inflight = []

    def one():
        try:
            inflight.append(request(big16)[0])
        except Exception as e:
            inflight.append(f"error {e}")

    threads = [threading.Thread(target=one) for _ in range(3)]
    [t.start() for t in threads]
    time.sleep(0.3)
    t = time.time()
    srv.send_signal(signal.SIGTERM)
    rc = srv.wait(120)
    [th.join() for th in threads]
    report["phase_c"] = {"inflight_codes": inflight, "exit_code": rc, "exit_seconds": round(time.time() - t, 2)}
    print(json.dumps(report["phase_c"], indent=1), flush=True)
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    json.dump(report, open(a.out, "w"), indent=1)
    ok = (not bad and list(report["phase_a"]["good"]["codes"].keys()) == ["200"]
          and set(codes) <= {"200", "429"} and all(s == 200 for s in after)
          and all(s == 200 for s in inflight) and rc == 0)
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
