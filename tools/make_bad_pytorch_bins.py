"""Two malformed pytorch_model.bin files that made candle's reader allocate what they claim
(found while fuzzing `pytorch_bin`): a 4 GB string length, and a tensor declared 100000×100000
(40 GB) over 24 bytes of data. Written to fuzz/regressions/pytorch_bin/.

    .venv/bin/python tools/make_bad_pytorch_bins.py
"""
import io
import os
import struct
import zipfile

import torch

OUT = os.path.join(os.path.dirname(__file__), "..", "fuzz", "regressions", "pytorch_bin")
buf = io.BytesIO()
torch.save({"w": torch.arange(6, dtype=torch.float32).reshape(2, 3)}, buf)
src = zipfile.ZipFile(io.BytesIO(buf.getvalue()))


def rewrite(name, patch):
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as z:
        for info in src.infolist():
            data = src.read(info.filename)
            if info.filename.endswith("data.pkl"):
                new = patch(data)
                assert new != data, name
                data = new
            z.writestr(info.filename, data)
    with open(os.path.join(OUT, name), "wb") as f:
        f.write(out.getvalue())


# X <u32 len> "w": the key's length becomes 0xFFFFFF00.
rewrite("huge-string-length.bin", lambda d: d.replace(b"X\x01\x00\x00\x00w", b"X\x00\xff\xff\xffw", 1))
big = b"J" + struct.pack("<i", 100000)
# size (2, 3) and stride (3, 1) -> (100000, 100000) and (100000, 1)
rewrite("huge-tensor-shape.bin", lambda d: d.replace(b"K\x02K\x03\x86", big + big + b"\x86", 1).replace(b"K\x03K\x01\x86", big + b"K\x01\x86", 1))
print(sorted(os.listdir(OUT)))
