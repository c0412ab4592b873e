"""Check the whole CUDA path in one short run: extraction with mixed precision, head fits with mixed precision,
encoder throughput at batch sizes 32-512 and peak GPU memory, each against the CPU.

    python benchmarks/gpu_check.py                     # on a machine with a GPU; about 3 min on one H100-class GPU
    python benchmarks/gpu_check.py --npz lab5.npz      # heads on real features (benchmarks/dump_npz.py)
    python benchmarks/gpu_check.py --device cpu --n 96 --batch-sizes 32  # the same steps on the CPU (bf16 autocast)

1. **Extraction.** The default config's frozen encoders (MiniLM, EfficientNet-Lite0: offline weights) encode
   ``--n`` generated tweets and images on the CPU in float32 and on ``--device`` as an extraction job does there
   (``TorchEncoder.context``: bf16 autocast where the GPU has it, else fp16). The vectors must agree to a cosine
   of at least ``--min-cosine`` (0.995) for every sample; the maximum absolute difference is printed beside it.
2. **Throughput.** The pure forward pass (batches decoded, tokenised and collated beforehand, as in
   ``bench_extract.py``) at each batch size, in samples per second, its ratio to the CPU's at the config's batch
   size, and the peak GPU memory of each batch size.
3. **Heads.** Neural heads fitted with mixed precision on ``--device`` and in float32 on the CPU, on the same
   data: validation accuracy and macro-F1 of both (the macro-F1s must agree within 0.03) and the fit-time ratio.

Exits 1 when a check fails (vectors apart, non-finite outputs, a head's mixed-precision macro-F1 off), 2 when ``--device cuda`` and torch sees no GPU.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
import time
from pathlib import Path
from unittest import mock

import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

WORDS = ("the a i you it is was this that movie film day food love hate good bad great awful happy sad very not so "
         "and but really #mood @user http://t.co/x 😂 ❤ !!").split()


def sample_inputs(root: Path, n: int, seed: int = 0) -> dict[str, list]:
    """``n`` tweet-like texts of 3-40 words and ``n`` JPEG photos-sized images (240-480 px) written under ``root``."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    texts = [" ".join(rng.choice(WORDS, rng.integers(3, 41))) for _ in range(n)]
    paths = []
    for i in range(n):
        h, w = (int(x) for x in rng.integers(240, 481, 2))
        base = rng.integers(0, 256, (1, 1, 3))
        pixels = np.clip(base + rng.normal(0, 40, (h, w, 3)), 0, 255).astype(np.uint8)
        paths.append(root / f"{i}.jpg")
        Image.fromarray(pixels).save(paths[-1], quality=90)
    return {"text": texts, "image": [str(p) for p in paths]}


def encoder_specs(config: Path) -> dict[str, dict]:
    """The config's frozen torch encoders (``hf_text`` and image backends), by name."""
    encoders = yaml.safe_load(config.read_text())["encoders"]
    return {n: s for n, s in encoders.items() if not s.get("adapt") and s["backend"] in
            {"hf_text", "efficientnet_lite", "hf_image", "torchvision"}}


def modality(spec: dict) -> str:
    return "text" if spec["backend"] == "hf_text" else "image"


def amp_context(device: str):
    """What the encoder adds on its own on CUDA; on the CPU the check wraps bf16 autocast around it."""
    import torch

    return contextlib.nullcontext() if device.startswith("cuda") else torch.autocast("cpu", dtype=torch.bfloat16)


def check_extraction(specs: dict[str, dict], inputs: dict[str, list], device: str, min_cosine: float) -> list[dict]:
    from mmpipe.encoders import build_encoder

    rows = []
    for name, spec in specs.items():
        items = inputs[modality(spec)]
        ref = build_encoder({**spec, "device": "cpu"}).encode(items, progress=False)
        with amp_context(device):
            got = build_encoder({**spec, "device": device}).encode(items, progress=False)
        cos = (ref * got).sum(1) / (np.linalg.norm(ref, axis=1) * np.linalg.norm(got, axis=1))
        rows.append({"encoder": name, "n": len(items), "dtype": str(got.dtype), "finite": bool(np.isfinite(got).all()),
                     "min_cosine": float(cos.min()), "max_abs_diff": float(np.abs(ref - got).max()),
                     "ok": bool(np.isfinite(got).all() and got.dtype == np.float32 and cos.min() >= min_cosine)})
    return rows


def forward_rate(spec: dict, items: list, device: str, batch_size: int, amp: bool) -> tuple[float, float | None]:
    """Samples per second of ``embed`` alone over prepared batches, and the peak GPU memory in MiB (None on CPU);
    ``amp``: with mixed precision (on CUDA the encoder's own; on the CPU bf16 autocast)."""
    import torch

    from bench_extract import prepared_batches
    from mmpipe.encoders import build_encoder

    enc = build_encoder({**spec, "device": device, "batch_size": batch_size})
    batches = list(prepared_batches(enc, items))  # all on the device before the clock starts
    cuda = device.startswith("cuda")
    enc.warm_up()
    with enc.context(), amp_context(device) if amp else contextlib.nullcontext():
        enc.embed(batches[0])
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        for b in batches:
            enc.embed(b)
        if cuda:
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated() / 2**20 if cuda else None
    del enc, batches
    if cuda:
        torch.cuda.empty_cache()
    return len(items) / seconds, peak


def check_throughput(specs: dict[str, dict], inputs: dict[str, list], device: str, sizes: list[int],
                     cpu_n: int) -> list[dict]:
    rows = []
    for name, spec in specs.items():
        items = inputs[modality(spec)]
        cpu_rate, _ = forward_rate(spec, items[:cpu_n], "cpu", int(spec.get("batch_size", 32)), amp=False)
        for bs in sizes:
            rate, peak = forward_rate(spec, items, device, bs, amp=True)
            rows.append({"encoder": name, "batch_size": bs, "per_s": rate, "cpu_per_s": cpu_rate,
                         "ratio": rate / cpu_rate, "peak_mib": peak})
    return rows


def head_amp(device: str):
    """On CUDA the neural heads autocast their forward passes themselves (``NeuralHead._autocast``); on the CPU
    the check has them do the same in bf16, so the training loop runs as it would on the GPU."""
    import torch

    from mmpipe.fusion.heads.neural import NeuralHead

    if device.startswith("cuda"):
        return contextlib.nullcontext()
    return mock.patch.object(NeuralHead, "_autocast", lambda self: torch.autocast("cpu", dtype=torch.bfloat16))


def check_heads(data, heads: list[str], device: str) -> list[dict]:
    import torch

    from mmpipe.fusion.heads.base import build_head
    from mmpipe.fusion.metrics import classification_metrics

    rows = []
    for name in heads:
        out = {"head": name}
        for key, where in (("amp", device), ("cpu", "cpu")):
            head = build_head(name, {"seed": 0, "device": where, "class_weight": "balanced"})
            if where.startswith("cuda"):
                torch.cuda.reset_peak_memory_stats()
            start = time.perf_counter()
            with head_amp(where) if key == "amp" else contextlib.nullcontext():
                head.fit(data.X_train, data.y_train, data.X_val, data.y_val)
                p = head.predict_proba(data.X_val)
            if where.startswith("cuda"):
                torch.cuda.synchronize()
                out["peak_mib"] = torch.cuda.max_memory_allocated() / 2**20
            m = classification_metrics(data.y_val, p, data.classes)
            out.update({f"{key}_s": time.perf_counter() - start, f"{key}_acc": m["accuracy"],
                        f"{key}_macro_f1": m["macro_f1"], f"{key}_finite": bool(np.isfinite(p).all())})
        out["ratio"] = out["cpu_s"] / out["amp_s"]
        rows.append(out)
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--config", default=str(REPO / "config.yaml"), help="whose frozen encoders to check")
    ap.add_argument("--n", type=int, default=1024, help="samples per modality")
    ap.add_argument("--cpu-n", type=int, default=128, help="samples for the CPU throughput baseline")
    ap.add_argument("--batch-sizes", default="32,64,128,256,512")
    ap.add_argument("--min-cosine", type=float, default=0.995)
    ap.add_argument("--heads", default="concat_mlp,cross_attention,tensor_fusion")
    ap.add_argument("--npz", default=None, help="features for the head fits (default: synthetic, lab-5 shaped)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()

    import torch

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("torch sees no CUDA device: nothing to check here (use --device cpu to run the steps on the CPU)")
        return 2
    print("torch", torch.__version__, "device", args.device,
          torch.cuda.get_device_name(0) if args.device.startswith("cuda") else "", flush=True)
    specs = encoder_specs(Path(args.config))
    sizes = [int(x) for x in args.batch_sizes.split(",")]
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        inputs = sample_inputs(Path(tmp), args.n)
        extraction = check_extraction(specs, {k: v[:min(256, args.n)] for k, v in inputs.items()}, args.device,
                                      args.min_cosine)
        print(f"\nextraction, {args.device} with mixed precision vs CPU float32 (pass: every cosine >= "
              f"{args.min_cosine}):")
        for r in extraction:
            print(f"  {r['encoder']:<8} n={r['n']:<5} min cosine {r['min_cosine']:.5f}  max |diff| "
                  f"{r['max_abs_diff']:.2e}  {r['dtype']}  {'ok' if r['ok'] else 'FAIL'}", flush=True)
        throughput = check_throughput(specs, inputs, args.device, sizes, min(args.cpu_n, args.n))
    print("\nthroughput of the pure forward pass (samples/s), against the CPU at the config's batch size:")
    print(f"  {'encoder':<8}{'batch':>6}{'per s':>10}{'cpu/s':>9}{'ratio':>8}{'peak MiB':>10}")
    for r in throughput:
        peak = f"{r['peak_mib']:.0f}" if r["peak_mib"] is not None else "-"
        print(f"  {r['encoder']:<8}{r['batch_size']:>6}{r['per_s']:>10.1f}{r['cpu_per_s']:>9.1f}{r['ratio']:>8.1f}"
              f"{peak:>10}", flush=True)

    from bench_heads import load_npz, synthetic_data

    data = load_npz(args.npz) if args.npz else synthetic_data()
    heads = check_heads(data, args.heads.split(","), args.device)
    print(f"\nheads, fitted with mixed precision on {args.device} and in float32 on the CPU (validation scores):")
    for r in heads:
        print(f"  {r['head']:<16} amp acc {r['amp_acc']:.4f} mF1 {r['amp_macro_f1']:.4f} {r['amp_s']:6.1f} s | "
              f"cpu acc {r['cpu_acc']:.4f} mF1 {r['cpu_macro_f1']:.4f} {r['cpu_s']:6.1f} s | speed-up "
              f"{r['ratio']:.1f}x" + (f" | peak {r['peak_mib']:.0f} MiB" if "peak_mib" in r else ""), flush=True)
    ok = all(r["ok"] for r in extraction) and all(r["amp_finite"] and abs(r["amp_macro_f1"] - r["cpu_macro_f1"]) <= 0.03
                                                   for r in heads)
    print(f"\n{'all checks passed' if ok else 'CHECKS FAILED'} in {time.perf_counter() - start:.0f} s")
    if args.json:
        Path(args.json).write_text(json.dumps({"device": args.device, "extraction": extraction,
                                               "throughput": throughput, "heads": heads, "ok": ok}, indent=1))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
