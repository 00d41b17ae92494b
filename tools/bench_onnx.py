"""ONNX Runtime and OpenVINO halves of the benchmark suite (benches/suite.rs): the same random-init
transformers models as tools/bench_suite.py (torch.manual_seed(0), same configs), exported with
torch.onnx.export, same shapes, same thread count. One workload per process (peak RSS is per
workload):
    .venv/bin/python tools/bench_onnx.py export WORKLOAD     # writes target/bench_onnx/*.onnx once
    .venv/bin/python tools/bench_onnx.py onnxruntime WORKLOAD
    .venv/bin/python tools/bench_onnx.py openvino WORKLOAD
Prints one JSON line with the same fields as the Rust side (nothing for a workload the runtime
does not run: `supported` lists them).

Settings as their users would pick for latency: ONNX Runtime with ORT_ENABLE_ALL, intra-op threads
= BENCH_THREADS, sequential execution; OpenVINO with the LATENCY hint, INFERENCE_NUM_THREADS and
INFERENCE_PRECISION_HINT f32 (bf16 for the *_bf16 workloads, which OpenVINO runs in f32 on a CPU
without bf16 instructions: the JSON says which precision it compiled). int8: ONNX Runtime's
`quantize_dynamic` (per-channel QInt8 weights, activations quantised per call), the model
`transformers` users get from `optimum`'s dynamic quantisation; OpenVINO runs the same QDQ model."""
import json
import os
import resource
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_common  # noqa: E402

threads = int(os.environ.get("BENCH_THREADS", os.cpu_count()))
reps = int(os.environ.get("BENCH_STEPS", "5"))
root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
cache = os.path.join(root, "target", "bench_onnx")

# workload -> (exported model, batch, unit, inputs)
B8 = 8
WORKLOADS = {
    "vit_b16_b1": ("vit_b16_b1", 1, "img"),
    "vit_b16_b8": ("vit_b16_b8", B8, "img"),
    "vit_b16_b8_bf16": ("vit_b16_b8", B8, "img"),
    "vit_b16_b8_int8": ("vit_b16_b8_int8", B8, "img"),
    "clip_image_b8": ("clip_image_b8", B8, "img"),
    "clip_image_b8_int8": ("clip_image_b8_int8", B8, "img"),
    "clip_text77_b8": ("clip_text77_b8", B8, "text"),
    "clip_text16_b8": ("clip_text16_b8", B8, "text"),
    "detr_r50_800x1066_b1": ("detr_r50_800x1066_b1", 1, "img"),
}
# OpenVINO has no bf16 ONNX Runtime counterpart on CPU; ORT's bf16 would be a different model.
ORT_SKIP = {"vit_b16_b8_bf16"}


def ids(b, t):
    import numpy as np
    x = np.array([[400 + (i * 31 + j * 7) % 40000 for j in range(t)] for i in range(b)], dtype=np.int64)
    x[:, 0] = 49406
    x[:, -1] = 49407
    return x


def inputs(name):
    import numpy as np
    rng = np.random.default_rng(0)
    if name.startswith("clip_text"):
        return {"input_ids": ids(B8, 77 if "77" in name else 16)}
    if name.startswith("detr"):
        return {"pixel_values": rng.standard_normal((1, 3, 800, 1066), dtype=np.float32)}
    b = 1 if name == "vit_b16_b1" else B8
    return {"pixel_values": rng.standard_normal((b, 3, 224, 224), dtype=np.float32)}


def path(name):
    return os.path.join(cache, name + ".onnx")


def export(w):
    name = WORKLOADS[w][0]
    if os.path.exists(path(name)):
        return
    os.makedirs(cache, exist_ok=True)
    if name.endswith("_int8"):
        base = name[: -len("_int8")]
        export(base)
        from onnxruntime.quantization import QuantType, quantize_dynamic
        tmp = path(name) + ".tmp"
        quantize_dynamic(path(base), tmp, weight_type=QuantType.QInt8, per_channel=True)
        os.replace(tmp, path(name))
        return
    import torch
    torch.manual_seed(0)
    torch.set_num_threads(threads)
    x = {k: torch.from_numpy(v) for k, v in inputs(name).items()}
    if name.startswith("vit"):
        from transformers import ViTConfig, ViTForImageClassification
        m = ViTForImageClassification(ViTConfig(num_labels=1000))
    elif name.startswith("clip"):
        from transformers import CLIPConfig, CLIPModel
        m = CLIPModel(CLIPConfig())
    elif name.startswith("detr"):
        from transformers import DetrConfig, DetrForObjectDetection
        m = DetrForObjectDetection(DetrConfig(use_pretrained_backbone=False))
    else:
        raise SystemExit(f"no export for {name}")

    class F(torch.nn.Module):
        """The call bench_suite.py times, as one module."""

        def __init__(self):
            super().__init__()
            self.m = m

        def forward(self, pixel_values=None, input_ids=None):
            if name.startswith("vit"):
                return self.m(pixel_values=pixel_values).logits
            # transformers 5 returns the projected embeddings as `pooler_output`.
            if name.startswith("clip_text"):
                return self.m.get_text_features(input_ids=input_ids).pooler_output
            if name.startswith("clip"):
                return self.m.get_image_features(pixel_values=pixel_values).pooler_output
            o = self.m(pixel_values=pixel_values)
            return o.logits, o.pred_boxes

    f = F().eval().requires_grad_(False)
    tmp = path(name) + ".tmp.onnx"
    try:
        check_and_save(f, x, name, tmp)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def check_and_save(f, x, name, tmp):
    """Exports `f` to `tmp`, checks it against PyTorch, saves it under its cached name."""
    import torch
    with torch.no_grad():
        # The TorchScript exporter: its graphs are the ones ONNX Runtime's and OpenVINO's
        # transformer fusions (attention, LayerNorm, GELU) were written for.
        torch.onnx.export(f, (), tmp, kwargs=x, input_names=list(x), opset_version=17,
                          dynamo=False)
    import onnx
    model = onnx.load(tmp, load_external_data=True)
    data = os.path.basename(path(name)) + ".data"
    # The exported graph must compute what PyTorch computes, or the comparison means nothing.
    import onnxruntime as ort
    with torch.no_grad():
        want = f(**x)
    want = [want] if torch.is_tensor(want) else list(want)
    got = ort.InferenceSession(model.SerializeToString() if model.ByteSize() < 1_900_000_000 else tmp,
                               providers=["CPUExecutionProvider"]).run(None, inputs(name))
    for w_, g in zip(want, got):
        err = float((w_ - torch.from_numpy(g)).abs().max() / w_.abs().max().clamp_min(1e-6))
        print(f"{name}: ONNX Runtime vs PyTorch max error {err:.1e} of the largest output", file=sys.stderr)
        if err > 1e-4:
            raise SystemExit(f"{name}: the exported model disagrees with PyTorch ({err:.1e})")
    onnx.save(model, path(name), save_as_external_data=model.ByteSize() > 1_900_000_000, location=data)


def bench(runtime, w):
    name, items, unit = WORKLOADS[w]
    feed = inputs(name[: -len("_int8")] if name.endswith("_int8") else name)
    extra = {}
    if runtime == "onnxruntime":
        import onnxruntime as ort
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        s = ort.InferenceSession(path(name), so, providers=["CPUExecutionProvider"])
        f = lambda: s.run(None, feed)  # noqa: E731
        extra["version"] = ort.__version__
    else:
        import openvino as ov
        core = ov.Core()
        precision = "bf16" if w.endswith("_bf16") else "f32"
        c = core.compile_model(path(name), "CPU", {
            "PERFORMANCE_HINT": "LATENCY",
            "INFERENCE_NUM_THREADS": threads,
            "INFERENCE_PRECISION_HINT": precision,
        })
        req = c.create_infer_request()
        f = lambda: req.infer(feed)  # noqa: E731
        extra["version"] = ov.__version__
        extra["precision"] = str(c.get_property("INFERENCE_PRECISION_HINT"))
    text = unit == "text"
    s = bench_common.timed(f, 2 if text else 1, max(reps, 10) if text else (min(reps, 5) if "detr" in w else reps))
    print(json.dumps({"workload": w, "impl": runtime, "median_s": s, "items": items, "unit": unit,
                      "per_s": items / s,
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      "threads": threads, **extra}))


if __name__ == "__main__":
    if sys.argv[1:] == ["supported"]:
        print("\n".join(WORKLOADS))
        raise SystemExit(0)
    what, w = sys.argv[1], sys.argv[2]
    if w not in WORKLOADS:
        raise SystemExit(0)
    if what == "export":
        export(w)
    elif what in ("onnxruntime", "openvino"):
        if what == "onnxruntime" and w in ORT_SKIP:
            raise SystemExit(0)
        bench(what, w)
    else:
        raise SystemExit(f"unknown command {what}")
