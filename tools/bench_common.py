"""What the Python halves of the benchmark suite share (tools/bench_suite.py, tools/bench_onnx.py)."""
import statistics
import time


def timed(f, warmup, n):
    """Median seconds of `n` calls of `f` after `warmup` calls."""
    for _ in range(warmup):
        f()
    ts = []
    for _ in range(n):
        s = time.perf_counter()
        f()
        ts.append(time.perf_counter() - s)
    return statistics.median(ts)
