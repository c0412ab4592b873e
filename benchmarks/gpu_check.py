"""Check the CUDA path on a GPU machine: every neural head with mixed precision, and a text encoder.

    python benchmarks/gpu_check.py --npz lab5.npz      # features dumped with benchmarks/dump_npz.py

Prints, per head, validation accuracy / macro-F1 and fit seconds on CUDA (autocast) beside the CPU,
and whether a tiny BERT and ResNet encode the same vectors on CUDA as on the CPU.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_heads import load_npz  # noqa: E402
from mmpipe.fusion.heads.base import build_head  # noqa: E402
from mmpipe.fusion.metrics import classification_metrics  # noqa: E402

NEURAL = ["concat_mlp", "proj_concat", "cross_attention", "late_fusion", "gated", "tensor_fusion", "low_rank_fusion"]


def heads(data, devices: list[str]) -> None:
    print(f"{'head':16} {'device':6} {'val acc':>8} {'val mF1':>8} {'fit s':>7}")
    for name in NEURAL:
        for device in devices:
            head = build_head(name, {"seed": 0, "device": device, "class_weight": "balanced"})
            t = time.perf_counter()
            head.fit(data.X_train, data.y_train, data.X_val, data.y_val)
            if device == "cuda":
                torch.cuda.synchronize()
            sec = time.perf_counter() - t
            m = classification_metrics(data.y_val, head.predict_proba(data.X_val), data.classes)
            print(f"{name:16} {device:6} {m['accuracy']:8.4f} {m['macro_f1']:8.4f} {sec:7.2f}", flush=True)


def encoder() -> None:
    """A tiny BERT (``hf_text``) and ResNet (``hf_image``) encode the same vectors on CUDA as on the CPU."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from PIL import Image
    from tiny_models import tiny_image_model, tiny_text_model

    from mmpipe.encoders import build_encoder

    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 256, (40, 60, 3), dtype=np.uint8)) for _ in range(12)]
    texts = ["good day", "awful movie rt", "the food is very nice"] * 10
    with tempfile.TemporaryDirectory() as tmp:
        cases = {"hf_text": (tiny_text_model(Path(tmp) / "bert"), texts),
                 "hf_image": (tiny_image_model(Path(tmp) / "resnet"), images)}
        for backend, (path, items) in cases.items():
            out = {d: build_encoder({"backend": backend, "model": str(path), "device": d}).encode(items, progress=False)
                   for d in ("cpu", "cuda")}
            print(f"{backend} cuda vs cpu: max abs diff", float(np.abs(out["cpu"] - out["cuda"]).max()),
                  "dtype", out["cuda"].dtype, "shape", out["cuda"].shape)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--npz", required=True)
    ap.add_argument("--cpu", action="store_true", help="also fit on the CPU for comparison")
    args = ap.parse_args()
    print("torch", torch.__version__, "cuda", torch.cuda.is_available(),
          torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")
    heads(load_npz(args.npz), ["cuda", "cpu"] if args.cpu else ["cuda"])
    encoder()
