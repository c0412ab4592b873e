"""Time the default stage-2 grid: every head x modality subsets x seeds, with 2 torch threads.

Data, in order of preference:

* real cached features: ``--features RESULTS/features --manifest RESULTS/manifest.parquet``
  (``load_real``: one sub-folder per encoder with its ``*.parquet`` shards, joined with the manifest
  by ``mmpipe.fusion.dataset.load_split_data``);
* an ``.npz`` file (``--npz``, see ``load_npz``) with arrays ``X_train_<mod>``, ``X_val_<mod>``,
  ``X_test_<mod>``, ``y_train``, ``y_val``, optionally ``y_test`` and ``classes``;
* otherwise synthetic data shaped like the real set (3400 train / 600 val / 511 test, text 384-d +
  image 1280-d, 3 classes 6:3:1) with a planted, partly complementary signal (``synthetic_data``).

Each fit is what ``run_ablation`` does per seed: fit on train with val for early stopping, then
predict val and test. Prints seconds per head and modality set, accuracy/macro-F1 on val, the total.

    python benchmarks/bench_heads.py [--heads a,b | --config config.yaml] [--seeds 0,1,2] [--threads 2] [--json out.json]
"""

from __future__ import annotations

import os

# Before torch is imported: idle OpenMP threads sleep instead of spinning. On a machine shared with
# other jobs, spinning threads waiting for a descheduled partner made 2-thread fits up to 10x slower.
# Set OMP_WAIT_POLICY=ACTIVE in the environment to measure the libgomp default instead.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import itertools  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from mmpipe.fusion.dataset import SplitData  # noqa: E402


def synthetic_data(seed: int = 0, n_train: int = 3400, n_val: int = 600, n_test: int = 511,
                   dims: dict[str, int] | None = None, ratio: tuple[float, ...] = (6, 3, 1),
                   classes: tuple[str, ...] = ("positive", "neutral", "negative")) -> SplitData:
    """Embedding-like features: a 3-class latent (16-d, class means apart) seen by both modalities
    through random linear maps plus modality-specific latent noise, so text and image are each
    informative, partly complementary, and the concatenation is best; float32, like real encoders."""
    dims = dims or {"text": 384, "image": 1280}
    rng = np.random.default_rng(seed)
    p = np.asarray(ratio, dtype=float) / sum(ratio)
    k, latent = len(classes), 16
    means = rng.normal(size=(k, latent))
    maps = {m: rng.normal(size=(latent, d)) / np.sqrt(latent) for m, d in dims.items()}
    strength = {m: s for m, s in zip(dims, itertools.cycle([0.45, 0.35, 0.3]))}

    def split(n: int):
        y = rng.choice(k, size=n, p=p)
        X = {}
        for m, d in dims.items():
            z = strength[m] * means[y] + rng.normal(size=(n, latent))  # each modality its own noisy view
            X[m] = (z @ maps[m] + 0.5 * rng.normal(size=(n, d))).astype(np.float32)
        return X, y

    (Xtr, ytr), (Xva, yva), (Xte, yte) = split(n_train), split(n_val), split(n_test)
    return SplitData(list(classes), Xtr, ytr, Xva, yva, Xte, yte, [f"tr{i}" for i in range(n_train)],
                     [f"va{i}" for i in range(n_val)], [f"te{i}" for i in range(n_test)])


def load_npz(path: str | Path) -> SplitData:
    """SplitData from an ``.npz``: ``X_{train,val,test}_<modality>`` (n, d) arrays, ``y_train``, ``y_val``
    (integer ids), optional ``y_test``, ``classes`` (strings; default ``class0..``), ``guids_test``."""
    z = np.load(path, allow_pickle=False)
    mods = sorted(k[len("X_train_"):] for k in z.files if k.startswith("X_train_"))
    if not mods:
        raise ValueError(f"{path}: no X_train_<modality> arrays")
    X = {s: {m: z[f"X_{s}_{m}"].astype(np.float32) for m in mods} for s in ("train", "val", "test")}
    y_tr, y_va = z["y_train"].astype(np.int64), z["y_val"].astype(np.int64)
    y_te = z["y_test"].astype(np.int64) if "y_test" in z.files else None
    k = int(max(y_tr.max(), y_va.max())) + 1
    classes = [str(c) for c in z["classes"]] if "classes" in z.files else [f"class{i}" for i in range(k)]
    n_te = X["test"][mods[0]].shape[0]
    guids = [str(g) for g in z["guids_test"]] if "guids_test" in z.files else [f"te{i}" for i in range(n_te)]
    return SplitData(classes, X["train"], y_tr, X["val"], y_va, X["test"], y_te, [], [], guids)


def load_real(features_dir: str | Path, manifest: str | Path, classes: list[str] | None = None) -> SplitData:
    """Cached features of the pipeline: ``features_dir/<encoder>/*.parquet`` shards (one sub-folder per
    modality) joined with the manifest (``manifest.parquet``) by ``mmpipe.fusion.dataset.load_split_data``."""
    from mmpipe.fusion.dataset import load_split_data

    features_dir = Path(features_dir)
    shards = {d.name: sorted(d.glob("*.parquet")) for d in sorted(features_dir.iterdir()) if d.is_dir()}
    shards = {m: s for m, s in shards.items() if s}
    if not shards:
        raise FileNotFoundError(f"{features_dir}: no <encoder>/*.parquet shards")
    return load_split_data(manifest, shards, classes)


def default_subsets(mods: list[str]) -> list[list[str]]:
    """Each single modality, then all of them together (text, image, text+image for the real set)."""
    return [[m] for m in mods] + ([list(mods)] if len(mods) > 1 else [])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--features", help="results/features folder (one sub-folder per encoder)")
    ap.add_argument("--manifest", help="manifest.parquet (with --features)")
    ap.add_argument("--npz", help="an .npz file (see load_npz)")
    ap.add_argument("--heads", help="comma-separated heads (default: all registered)")
    ap.add_argument("--config", help="take the heads and their settings from this workflow config (e.g. config.yaml)")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", help="write the timings here")
    args = ap.parse_args(argv)

    import torch

    from mmpipe.fusion.heads import HEADS, build_head
    from mmpipe.fusion.metrics import classification_metrics

    torch.set_num_threads(args.threads)
    if args.features:
        if not args.manifest:
            ap.error("--features needs --manifest")
        data, source = load_real(args.features, args.manifest), f"features {args.features}"
    elif args.npz:
        data, source = load_npz(args.npz), f"npz {args.npz}"
    else:
        data, source = synthetic_data(), "synthetic (3400/600/511, text 384 + image 1280, 6:3:1)"
    heads = args.heads.split(",") if args.heads else HEADS.names()
    settings = {h: (h, {}) for h in heads}  # variant -> (registered head, hyperparameters)
    if args.config:
        from mmpipe.core.config import load as load_config
        from mmpipe.fusion.grid import ablation_grid

        grid = ablation_grid(load_config(args.config))
        settings = {a["variant"]: (a["head"], {k: v for k, v in a["params"].items() if k != "device"})
                    for a in grid.values()}
        heads = list(settings)
    seeds = [int(s) for s in args.seeds.split(",")]
    mods = list(data.X_train)
    subsets = default_subsets(mods)
    n_fits = len(heads) * len(subsets) * len(seeds)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"load average {load:.1f} on {os.cpu_count()} CPUs; OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}")
    print(f"data: {source}; modalities {mods} dims {[data.X_train[m].shape[1] for m in mods]}; "
          f"train/val/test {len(data.y_train)}/{len(data.y_val)}/{data.X_test[mods[0]].shape[0]}; "
          f"heads {len(heads)} x subsets {len(subsets)} x seeds {len(seeds)} = {n_fits} fits; "
          f"torch threads {torch.get_num_threads()}", flush=True)

    rows, t_all = [], time.perf_counter()
    per_head: dict[str, float] = {}
    for head in heads:
        for sub in subsets:
            d = data.select(sub)
            secs, accs, f1s, epochs = [], [], [], []
            for seed in seeds:
                t0 = time.perf_counter()
                name, params = settings[head]
                model = build_head(name, {**params, "seed": seed, "threads": args.threads,
                                          "n_classes": len(data.classes)})
                model.fit(d.X_train, d.y_train, d.X_val, d.y_val)
                pv = model.predict_proba(d.X_val)
                model.predict_proba(d.X_test)
                secs.append(time.perf_counter() - t0)
                m = classification_metrics(d.y_val, pv, data.classes)
                accs.append(m["accuracy"])
                f1s.append(m["macro_f1"])
                epochs.append(model.best_epoch_)
            per_head[head] = per_head.get(head, 0.0) + sum(secs)
            row = {"head": head, "modalities": "+".join(sub), "seconds": sum(secs),
                   "seconds_per_fit": float(np.mean(secs)),
                   "val_acc": float(np.mean(accs)), "val_macro_f1": float(np.mean(f1s)), "best_epochs": epochs}
            rows.append(row)
            print(f"{head:16s} {row['modalities']:12s} {row['seconds']:6.1f}s ({row['seconds_per_fit']:4.1f}/fit)  "
                  f"val acc {row['val_acc']:.3f}  macro-F1 {row['val_macro_f1']:.3f}  best epochs {epochs}", flush=True)
    total = time.perf_counter() - t_all
    print("\nseconds per head (all subsets and seeds):")
    for h, s in sorted(per_head.items(), key=lambda kv: -kv[1]):
        print(f"  {h:16s} {s:6.1f}s  ({s / (len(subsets) * len(seeds)):.2f} s/fit)")
    load_end = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"load average at the end {load_end:.1f}")
    print(f"TOTAL {total:.1f}s for {n_fits} fits ({total / n_fits:.2f} s/fit)")
    if args.json:
        Path(args.json).write_text(json.dumps({"source": source, "total_seconds": total, "per_head": per_head,
                                               "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
