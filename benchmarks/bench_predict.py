"""``mmpipe predict`` end to end on raw samples against the pure forward passes it is made of, and the latency of
``mmpipe serve``, measured side by side in one run.

1. A lab-layout folder is made from a real lab-layout set (default ``../shared/data/mvsa_single_lab5``):
   ``--train`` labelled samples, and ``--n`` (500) samples of its test list as the new samples to predict.
2. The workflow builds the model bundle on the labelled part with the default encoders (MiniLM, EfficientNet-Lite0)
   and one ``svm`` head on text+image (setup, not timed).
3. Timed: ``mmpipe predict BUNDLE FOLDER --no-cache`` as a user runs it (a new process: interpreter start, imports,
   model loading, decoding, encoding, the head), and ``mmpipe predict`` of ONE sample (start-up and loading alone).
4. Timed: the pure forward passes over the same samples, decoded and tokenised beforehand, batched as the encoders
   batch them (``collate`` done before the clock starts; only ``embed``), plus the head's ``predict_proba``.
5. ``mmpipe serve`` on 127.0.0.1: ``--requests`` single-sample JSON requests (text + base64 image), one at a time
   (p50 / p99 latency), then the same number from 8 client threads (throughput).

Prints the samples per second of each and the ratio pure / end to end (1.0: predict adds nothing to the forward
passes). Run it alone on the machine: ``python benchmarks/bench_predict.py [--data DIR] [--n 500] [--json out.json]``
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_WAIT_POLICY": "PASSIVE"}


def make_folder(src: Path, dst: Path, n_train: int, n_new: int) -> tuple[Path, list[str]]:
    """A lab folder with ``n_train`` labelled and ``n_new`` test-list samples of ``src`` (data files linked)."""
    train = (src / "train.txt").read_text(encoding="utf-8").splitlines()[1:n_train + 1]
    test = [line.split(",")[0] for line in (src / "test_without_label.txt").read_text().splitlines()[1:n_new + 1]]
    (dst / "data").mkdir(parents=True)
    for guid in [line.split(",")[0] for line in train] + test:
        for suffix in (".txt", ".jpg"):
            if (src / "data" / f"{guid}{suffix}").exists():
                os.symlink(src / "data" / f"{guid}{suffix}", dst / "data" / f"{guid}{suffix}")
    (dst / "train.txt").write_text("guid,tag\n" + "\n".join(train) + "\n")
    (dst / "test_without_label.txt").write_text("guid,tag\n" + "".join(f"{g},null\n" for g in test))
    return dst, test


def build_bundle(work: Path, folder: Path) -> Path:
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    config.update(data=str(folder), heads={"svm": {}}, ablations={"modalities": [["text", "image"]], "heads": None},
                  training={**config["training"], "seeds": [0]}, selection={**config["selection"], "folds": 3,
                                                                          "repeats": 1})
    (work / "config.yaml").write_text(yaml.safe_dump(config))
    subprocess.run([sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(work), "--configfile",
                    str(work / "config.yaml"), "--cores", "2", "model"], check=True, env=ENV, capture_output=True)
    return work / "results" / folder.name / "model"


def timed(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, env=ENV, capture_output=True)
    return time.perf_counter() - start


def pure_forward(bundle: Path, folder: Path, guids: list[str]) -> dict[str, float]:
    """Seconds of each encoder's ``embed`` over pre-collated batches, and of the head, on ``guids``."""
    import torch

    from mmpipe.encoders.base import build_encoder
    from mmpipe.fusion.heads.base import HEADS
    from mmpipe.ingest.decode import decode_file

    torch.set_num_threads(2)
    model = json.loads((bundle / "model.json").read_text())
    out, X = {}, {}
    for name, entry in model["encoders"].items():
        enc = build_encoder(dict(entry["spec"]))
        col = entry["modality"]
        items = ([decode_file(folder / "data" / f"{g}.txt").text for g in guids] if col == "text"
                 else [str(folder / "data" / f"{g}.jpg") for g in guids])
        items = enc.inputs(items)
        order = enc.order(items)
        if order is not None:
            items = [items[i] for i in order]
        loaded = [enc.load(i) for i in items]
        batches = [enc.collate(loaded[i:i + enc.batch_size]) for i in range(0, len(loaded), enc.batch_size)]
        enc.model  # loaded before the clock starts  # noqa: B018
        with torch.inference_mode():
            enc.embed(batches[0])  # warm-up
            start = time.perf_counter()
            vecs = [enc.embed(b).float().numpy() for b in batches]
            out[name] = time.perf_counter() - start
        V = np.concatenate(vecs)
        X[name] = V if order is None else V[np.argsort(order)]
    head = model["heads"][0]
    models = [HEADS.get(head["head"]).load(bundle / f) for f in head["files"]]
    start = time.perf_counter()
    for m in models:
        m.predict_proba({k: X[k] for k in head["modalities"]})
    out["head"] = time.perf_counter() - start
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve_latency(bundle: Path, folder: Path, guids: list[str], n: int) -> dict[str, float]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "mmpipe.cli", "serve", str(bundle), "--port", str(port)], env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                urllib.request.urlopen(f"{url}/health", timeout=1).read()
                break
            except OSError:
                time.sleep(0.5)
        bodies = []
        for g in (guids * (n // len(guids) + 1))[:n]:
            img = base64.b64encode((folder / "data" / f"{g}.jpg").read_bytes()).decode()
            text = (folder / "data" / f"{g}.txt").read_bytes().decode("utf-8", "replace")
            bodies.append(json.dumps({"guid": g, "text": text, "image": img}).encode())

        def send(body: bytes) -> float:
            req = urllib.request.Request(f"{url}/predict", data=body, headers={"content-type": "application/json"})
            start = time.perf_counter()
            urllib.request.urlopen(req, timeout=120).read()
            return time.perf_counter() - start

        send(bodies[0])  # warm-up
        lat = np.array([send(b) for b in bodies])
        start = time.perf_counter()
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(send, bodies))
        wall = time.perf_counter() - start
        return {"p50_ms": float(np.percentile(lat, 50) * 1e3), "p99_ms": float(np.percentile(lat, 99) * 1e3),
                "sequential_per_s": n / float(lat.sum()), "concurrent8_per_s": n / wall}
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "mvsa_single_lab5"))
    ap.add_argument("--n", type=int, default=500, help="new samples to predict")
    ap.add_argument("--train", type=int, default=600, help="labelled samples the bundle is trained on")
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--json", help="also write the figures here")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        folder, guids = make_folder(Path(args.data), work / "lab", args.train, args.n)
        t0 = time.perf_counter()
        bundle = build_bundle(work, folder)
        print(f"setup: bundle built in {time.perf_counter() - t0:.0f} s (not timed below)", flush=True)
        cli = [sys.executable, "-m", "mmpipe.cli", "predict", str(bundle)]
        e2e = timed([*cli, str(folder), "--no-cache", "--threads", "2", "-o", str(work / "p.csv")])
        g = guids[0]
        one = timed([*cli, "--text-file", str(folder / "data" / f"{g}.txt"), "--image",
                     str(folder / "data" / f"{g}.jpg"), "--threads", "2"])
        pure = pure_forward(bundle, folder, guids)
        total = sum(pure.values())
        serve = serve_latency(bundle, folder, guids, args.requests)
    n = len(guids)
    fig = {"n": n, "predict_end_to_end_s": e2e, "predict_one_sample_s": one, "pure_forward_s": pure,
           "pure_total_s": total, "end_to_end_per_s": n / e2e, "pure_per_s": n / total, "ratio": total / e2e,
           "ratio_without_startup": total / max(e2e - one, 1e-9), "serve": serve, "load": os.getloadavg()}
    print(f"mmpipe predict, {n} raw samples end to end: {e2e:.1f} s ({n / e2e:.1f} samples/s); one sample (start-up "
          f"and model loading): {one:.1f} s")
    print("pure forward passes: " + ", ".join(f"{k} {v:.1f} s" for k, v in pure.items())
          + f"; total {total:.1f} s ({n / total:.1f} samples/s)")
    print(f"ratio pure / end to end: {fig['ratio']:.2f}; without start-up: {fig['ratio_without_startup']:.2f}")
    print(f"mmpipe serve, {args.requests} single-sample requests: p50 {serve['p50_ms']:.0f} ms, p99 "
          f"{serve['p99_ms']:.0f} ms, {serve['sequential_per_s']:.1f}/s one at a time, "
          f"{serve['concurrent8_per_s']:.1f}/s from 8 threads")
    print(f"load average at the end: {fig['load']}")
    if args.json:
        Path(args.json).write_text(json.dumps(fig, indent=1))


if __name__ == "__main__":
    main()
