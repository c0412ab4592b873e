"""Encoders adapted to the task (PEFT LoRA / DoRA / rsLoRA, or full fine-tuning), cross-fitted.

An ``encoders.<name>`` entry with an ``adapt:`` section (``hf_text``; ``efficientnet_lite`` through
``mmpipe.encoders.adapt_image``) is trained once per fold of the data set's shared folds
(``results/<ds>/folds.parquet``, repeat 0): the adapter of fold ``k`` learns from the
labels of every pool sample outside fold ``k`` and is saved under ``results/<ds>/adapters/<name>/fold<k>/``.
Each pool sample's feature then comes from the adapter of its own fold, which never saw its label; samples
outside the pool (test, and validation with ``selection.method: split``) get the mean over the fold adapters.
The feature is the pooled sentence vector followed by the adapter's class probabilities (regression: its
predicted score), an ordinary feature set for the heads.

Text settings (``adapt:``; the image ones are in ``mmpipe.encoders.adapt_image``): ``method`` (``lora`` |
``dora`` | ``full``), ``rslora``, ``r``, ``alpha``, ``dropout``, ``target_modules`` (null: peft's default for the
model type), ``epochs``, ``lr``, ``batch_size``, ``weight_decay``, ``warmup`` (share of the steps),
``label_smoothing``, ``seed``. Training shows a progress bar and uses CUDA with bf16/fp16 autocast when the
encoder's ``device`` is cuda (or auto with a GPU).
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
from numbers import Real
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from mmpipe.core.errors import ConfigError
from mmpipe.core.precision import autocast, grad_scaler

log = logging.getLogger(__name__)

METHODS = ("lora", "dora", "full")
DEFAULTS: dict[str, Any] = {"method": "lora", "rslora": True, "r": 8, "alpha": 16, "dropout": 0.1,
                            "target_modules": None, "epochs": 2, "lr": None, "batch_size": 32,
                            "weight_decay": 0.01, "warmup": 0.06, "label_smoothing": 0.1, "seed": 0}
DEFAULT_LR = {"lora": 5e-4, "dora": 5e-4, "full": 8e-5}
TEXT_BACKENDS = ("hf_text",)
IMAGE_BACKENDS = ("efficientnet_lite",)  # mmpipe.encoders.adapt_image
BACKENDS = TEXT_BACKENDS + IMAGE_BACKENDS
FORMAT = 1


def is_image(spec: dict[str, Any]) -> bool:
    """Whether the entry's adapters are image ones (``mmpipe.encoders.adapt_image``)."""
    return spec.get("backend") in IMAGE_BACKENDS


def settings(spec: dict[str, Any], name: str = "encoder") -> dict[str, Any]:
    """The ``adapt:`` settings of an encoder entry, defaults filled in; a ``ConfigError`` names what is wrong."""
    raw = spec.get("adapt")
    where = f"encoders.{name}.adapt"
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping of settings, got {raw!r}")
    if spec.get("backend") not in BACKENDS:
        raise ConfigError(f"{where}: adaptation is available for the {', '.join(BACKENDS)} backend(s), "
                          f"not {spec.get('backend')!r}")
    if is_image(spec):
        from mmpipe.encoders.adapt_image import settings as image_settings

        return image_settings(raw, where)
    unknown = sorted(set(raw) - set(DEFAULTS))
    if unknown:
        raise ConfigError(f"{where}: unknown setting(s) {', '.join(unknown)}; known: {', '.join(sorted(DEFAULTS))}")
    a = {**DEFAULTS, **raw}
    if a["method"] not in METHODS:
        raise ConfigError(f"{where}: method must be one of {', '.join(METHODS)}, got {a['method']!r}")
    for key in ("r", "epochs", "batch_size"):
        if isinstance(a[key], bool) or not isinstance(a[key], int) or a[key] < 1:
            raise ConfigError(f"{where}: {key} must be a positive integer, got {a[key]!r}")
    a["lr"] = DEFAULT_LR[a["method"]] if a["lr"] is None else a["lr"]
    for key in ("alpha", "lr"):
        if not isinstance(a[key], Real) or a[key] <= 0:
            raise ConfigError(f"{where}: {key} must be a positive number, got {a[key]!r}")
    for key in ("dropout", "warmup", "label_smoothing"):
        if not isinstance(a[key], Real) or not 0 <= a[key] < 1:
            raise ConfigError(f"{where}: {key} must be a number in [0, 1), got {a[key]!r}")
    return a


def base_spec(spec: dict[str, Any]) -> dict[str, Any]:
    """The frozen encoder the adapters start from (the entry without ``adapt``)."""
    return {k: v for k, v in spec.items() if k != "adapt"}


def labels_digest(guids: Sequence[str], targets: Sequence[Any]) -> str:
    h = hashlib.sha256()
    for g, t in zip(guids, targets):
        h.update(f"{g}\x1f{t}\x1e".encode())
    return h.hexdigest()[:16]


def _dir_digest(path: Path) -> str:
    h = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*") if p.is_file() and p.name != "adapter.json"):
        h.update(f.relative_to(path).as_posix().encode())
        h.update(hashlib.sha256(f.read_bytes()).digest())
    return h.hexdigest()[:16]


def head_loss(out: Any, y: Any, regression: bool, label_smoothing: float) -> Any:
    """The fold head's training loss: L1 on the score (regression), else label-smoothed cross-entropy."""
    import torch.nn.functional as F

    if regression:
        return F.l1_loss(out[:, 0], y)
    return F.cross_entropy(out, y, label_smoothing=label_smoothing)


def run_epochs(forward: Callable[[list[int]], Any], y: Any, n: int, a: dict[str, Any], opt: Any, sched: Any,
               info: dict[str, Any], regression: bool, device: Any, progress: bool = True) -> list[float]:
    """The fold's training loop, shared by text and image adapters: ``a["epochs"]`` shuffled passes (seeded by
    ``a["seed"]``) over ``n`` samples in batches of ``a["batch_size"]``; ``forward(rows)`` gives the head's outputs
    for those rows, run under mixed precision on CUDA (``core.precision``). Shows progress and logs each epoch;
    returns the mean training loss per epoch."""
    import torch
    from tqdm.auto import tqdm

    bs, start, losses = int(a["batch_size"]), time.perf_counter(), []
    scaler = grad_scaler(device)
    gen = torch.Generator().manual_seed(int(a["seed"]))
    steps = a["epochs"] * ((n + bs - 1) // bs)
    with tqdm(total=steps, disable=not progress, unit="step", desc=f"adapt {info.get('encoder', '')} "
              f"fold {info.get('fold', '')}") as bar:
        for epoch in range(a["epochs"]):
            perm, total = torch.randperm(n, generator=gen).tolist(), 0.0
            for s in range(0, n, bs):
                rows = perm[s:s + bs]
                with autocast(device):
                    out = forward(rows)
                loss = head_loss(out.float(), y[rows], regression, float(a["label_smoothing"]))
                opt.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()  # a disabled scaler (CPU, bf16) passes the loss and step through
                scaler.step(opt)
                scaler.update()
                sched.step()
                total += float(loss.detach()) * len(rows)
                bar.update(1)
            losses.append(total / max(n, 1))
            log.info("fold %s epoch %d: train loss %.4f (%.0f s)", info.get("fold"), epoch + 1, losses[-1],
                     time.perf_counter() - start)
    return losses


def _peft_model(base: Any, a: dict[str, Any]) -> Any:
    if a["method"] == "full":
        return base
    from peft import LoraConfig, get_peft_model

    cfg = LoraConfig(r=int(a["r"]), lora_alpha=float(a["alpha"]), lora_dropout=float(a["dropout"]),
                     target_modules=a["target_modules"], use_rslora=bool(a["rslora"]),
                     use_dora=a["method"] == "dora", bias="none")
    return get_peft_model(base, cfg)


def train_fold(spec: dict[str, Any], texts: Sequence[str], targets: np.ndarray, n_out: int, out_dir: str | Path,
               info: dict[str, Any], threads: int | None = None, progress: bool = True) -> dict[str, Any]:
    """Fine-tune the entry's encoder (with a linear head of ``n_out`` outputs: class logits, or one score when
    ``targets`` are floats) on ``texts``; write the adapter, the head and ``adapter.json`` (``info`` plus the
    settings, the loss per epoch and a digest of the weights) to ``out_dir`` atomically (a temp folder, then a
    rename). Returns what ``adapter.json`` holds. Image entries: ``mmpipe.encoders.adapt_image.train_fold`` on
    image paths."""
    if is_image(spec):
        from mmpipe.encoders.adapt_image import train_fold as train_image_fold

        return train_image_fold(spec, texts, targets, n_out, out_dir, info, threads=threads, progress=progress)
    import torch
    from transformers import get_linear_schedule_with_warmup

    from mmpipe.encoders.base import build_encoder

    a = settings(spec)
    regression = np.asarray(targets).dtype.kind == "f"
    enc = build_encoder({**base_spec(spec), **({"threads": threads} if threads else {})})
    texts = enc.inputs(list(texts))
    seed = int(a["seed"])
    torch.manual_seed(seed)
    model = _peft_model(enc.pretrained(), a).to(enc.device)
    enc._model = model
    head = torch.nn.Sequential(torch.nn.Dropout(0.1), torch.nn.Linear(enc.dim, n_out)).to(enc.device)
    trainable = [p for p in model.parameters() if p.requires_grad] + list(head.parameters())
    opt = torch.optim.AdamW(trainable, lr=float(a["lr"]), weight_decay=float(a["weight_decay"]))
    bs, n = int(a["batch_size"]), len(texts)
    steps = a["epochs"] * ((n + bs - 1) // bs)
    sched = get_linear_schedule_with_warmup(opt, int(a["warmup"] * steps), steps)
    y = torch.as_tensor(np.asarray(targets), dtype=torch.float32 if regression else torch.long, device=enc.device)
    start = time.perf_counter()
    model.train()
    head.train()

    def forward(rows: list[int]) -> Any:
        return head(enc.embed(enc.collate([texts[i] for i in rows])))

    losses = run_epochs(forward, y, n, a, opt, sched, info, regression, enc.device, progress)

    out_dir = Path(out_dir)
    tmp = out_dir.with_name(f".{out_dir.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    if a["method"] == "full":
        torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, tmp / "encoder.pt")
    else:
        model.save_pretrained(tmp / "adapter")
    torch.save({k: v.detach().cpu() for k, v in head.state_dict().items()}, tmp / "head.pt")
    meta = {"format": FORMAT, **info, "settings": a, "n_train": n, "n_out": n_out,
            "task": "regression" if regression else "classification", "train_loss": losses,
            "train_seconds": round(time.perf_counter() - start, 1), "weights": _dir_digest(tmp)}
    (tmp / "adapter.json").write_text(json.dumps(meta, indent=1, default=str) + "\n", encoding="utf-8")
    shutil.rmtree(out_dir, ignore_errors=True)
    tmp.rename(out_dir)
    return meta


class FoldModel:
    """One trained fold: the adapted encoder and its head, for encoding."""

    def __init__(self, spec: dict[str, Any], path: str | Path, threads: int | None = None):
        import torch

        from mmpipe.encoders.base import build_encoder

        self.path = Path(path)
        self.meta = json.loads((self.path / "adapter.json").read_text(encoding="utf-8"))
        self.encoder = enc = build_encoder({**base_spec(spec), **({"threads": threads} if threads else {})})
        base = enc.pretrained()
        if (self.path / "encoder.pt").exists():
            base.load_state_dict(torch.load(self.path / "encoder.pt", map_location="cpu", weights_only=True))
            model = base
        else:
            from peft import PeftModel

            model = PeftModel.from_pretrained(base, self.path / "adapter").merge_and_unload()
        enc._model = model.eval().to(enc.device)
        n_out = int(self.meta["n_out"])
        self.head = torch.nn.Sequential(torch.nn.Dropout(0.1), torch.nn.Linear(enc.dim, n_out))
        self.head.load_state_dict(torch.load(self.path / "head.pt", map_location="cpu", weights_only=True))
        self.head.eval()
        self.regression = self.meta["task"] == "regression"

    def encode(self, texts: Sequence[str], progress: bool = True) -> np.ndarray:
        """Pooled vectors followed by the head's class probabilities (or score), float32."""
        import torch

        emb = self.encoder.encode(list(texts), progress=progress)
        with torch.inference_mode():
            out = self.head(torch.from_numpy(emb)).float()
            out = out if self.regression else torch.softmax(out, dim=1)
        return np.concatenate([emb, out.numpy()], axis=1).astype(np.float32)


def fold_model(spec: dict[str, Any], path: str | Path, threads: int | None = None) -> Any:
    """The trained fold at ``path``: a ``FoldModel``, or an ``ImageFoldModel`` for image entries."""
    if is_image(spec):
        from mmpipe.encoders.adapt_image import ImageFoldModel

        return ImageFoldModel(spec, path, threads)
    return FoldModel(spec, path, threads)


def fold_dirs(adapter_dirs: Sequence[str | Path]) -> list[Path]:
    """The adapter folders ordered by fold number (``.../fold<k>``)."""
    return sorted(map(Path, adapter_dirs), key=lambda p: int(p.name.removeprefix("fold")))


def encode_crossfitted(spec: dict[str, Any], adapter_dirs: Sequence[str | Path], guids: Sequence[str],
                       texts: Sequence[str], fold_of: dict[str, int], threads: int | None = None,
                       progress: bool = True) -> tuple[np.ndarray, dict[str, Any]]:
    """Cross-fitted vectors of ``texts`` (see the module docstring) and the fingerprint of the feature set."""
    dirs = fold_dirs(adapter_dirs)
    out: np.ndarray | None = None
    outside = [i for i, g in enumerate(guids) if g not in fold_of]
    metas = []
    for k, path in enumerate(dirs):
        model = fold_model(spec, path, threads)
        metas.append(model.meta)
        if int(model.meta["fold"]) != k:
            raise ConfigError(f"{path}: holds the adapter of fold {model.meta['fold']}, expected fold {k}")
        own = [i for i, g in enumerate(guids) if fold_of.get(g) == k]
        rows = own + outside
        vec = model.encode([texts[i] for i in rows], progress=progress) if rows else None
        if vec is None:
            continue
        if out is None:
            out = np.zeros((len(guids), vec.shape[1]), dtype=np.float64)
        out[own] = vec[:len(own)]
        out[outside] += vec[len(own):] / len(dirs)
        log.info("fold %d: %d own samples, %d outside the folds (mean over %d adapters)", k, len(own), len(outside),
                 len(dirs))
    if out is None:
        out = np.zeros((0, 0))
    return out.astype(np.float32), crossfit_fingerprint(spec, metas)


def crossfit_fingerprint(spec: dict[str, Any], metas: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The fingerprint of a cross-fitted feature set, from its fold adapters' ``adapter.json``."""
    return {"adapted": metas[0]["base_fingerprint"] if metas else None, "settings": settings(spec),
            "folds": len(metas), "adapters": [m["weights"] for m in metas],
            "labels": [m["labels"] for m in metas],
            "features": "frozen pooled vector + head outputs" if is_image(spec) else "pooled vector + head outputs"}


def fingerprint_id(fingerprint: dict[str, Any]) -> str:
    """The short id of a cross-fitted feature set's fingerprint (as its shards store it)."""
    return hashlib.sha256(json.dumps(fingerprint, sort_keys=True, default=str).encode()).hexdigest()[:16]


class CrossfitEncoder:
    """New samples through an adapted encoder: the mean over its fold models, as for the test split."""

    def __init__(self, spec: dict[str, Any], adapter_dirs: Sequence[str | Path], threads: int | None = None):
        self.models = [fold_model(spec, d, threads) for d in fold_dirs(adapter_dirs)]
        self.modality = self.models[0].encoder.modality
        self._fingerprint = crossfit_fingerprint(spec, [m.meta for m in self.models])

    def fingerprint(self) -> dict[str, Any]:
        return self._fingerprint

    def fingerprint_id(self) -> str:
        return fingerprint_id(self._fingerprint)

    def base_fingerprint_id(self) -> str:
        """The installed base encoder's fingerprint (the adapters were trained from ``adapted``)."""
        return self.models[0].encoder.fingerprint_id()

    def encode(self, texts: Sequence[str], progress: bool = True) -> np.ndarray:
        """Float32 ``(n, dim)``: the fold models' vectors averaged as ``encode_crossfitted`` does."""
        out: np.ndarray | None = None
        for model in self.models:
            vec = model.encode(list(texts), progress=progress)
            if out is None:
                out = np.zeros(vec.shape, dtype=np.float64)
            out += vec / len(self.models)
        return (out if out is not None else np.zeros((0, 0))).astype(np.float32)


def _items(df: Any, spec: dict[str, Any], data_root: str | Path) -> list[Any]:
    """The encoder inputs of the rows of ``df``: texts (with their dialogue context, where the entry takes it), or
    image paths under ``data_root``."""
    from mmpipe.ingest.dialogue import COLUMN as CONTEXT, encoder_items

    if is_image(spec):
        return [str(Path(data_root) / p) for p in df["image_path"].to_list()]
    contexts = df[CONTEXT].to_list() if CONTEXT in df.columns else None
    return encoder_items(df["text"].fill_null("").to_list(), contexts, spec)


def train_from_manifest(name: str, spec: dict[str, Any], manifest_path: str, folds_path: str, fold: int,
                        out_dir: str | Path, classes: Sequence[str] | None, regression: bool,
                        threads: int | None = None, data_root: str | Path = ".") -> dict[str, Any]:
    """The Snakemake job of one fold: train on the labelled pool samples outside ``fold`` (repeat 0 of
    ``folds.parquet``); image entries read the samples that have an image, under ``data_root``."""
    import polars as pl

    from mmpipe.encoders.base import build_encoder

    folds = pl.read_parquet(folds_path).select("guid", "r0")
    m = pl.read_parquet(manifest_path).join(folds, on="guid", how="inner").filter(pl.col("r0") != fold)
    if m.is_empty():
        raise ConfigError(f"{folds_path}: fold {fold} leaves no training samples for encoder {name!r}")
    if is_image(spec):
        m = m.filter(pl.col("image_path").is_not_null())
    texts = _items(m, spec, data_root)
    if regression:
        targets, n_out = m["score"].to_numpy().astype(np.float32), 1
        labels = m["score"].to_list()
    else:
        classes = list(classes) if classes else sorted(m["label"].unique().to_list())
        index = {c: i for i, c in enumerate(classes)}
        targets, n_out = np.array([index[c] for c in m["label"]], dtype=np.int64), len(classes)
        labels = m["label"].to_list()
    base = build_encoder(base_spec(spec))
    info = {"encoder": name, "fold": int(fold), "base_fingerprint": base.fingerprint_id(),
            "labels": labels_digest(m["guid"].to_list(), labels), "classes": None if regression else classes}
    del base
    log.info("encoder %s fold %d: training on %d samples (%s)", name, fold, len(texts), json.dumps(settings(spec)))
    return train_fold(spec, texts, targets, n_out, out_dir, info, threads=threads)


def extract_shard_crossfitted(slice_path: str, name: str, spec: dict[str, Any], out_path: str,
                              adapter_dirs: Sequence[str], folds_path: str, threads: int | None = None,
                              progress: bool = True, data_root: str | Path = ".") -> int:
    """The feature shard of an adapted encoder (``mmpipe.encoders.extract`` for ``adapt:`` entries): the slice's
    samples that have the encoder's modality (images under ``data_root``)."""
    import polars as pl

    from mmpipe.core.shards import previous_shards, reuse_or_encode, write_shard

    start = time.perf_counter()
    df = pl.read_parquet(slice_path)
    if is_image(spec):
        df = df.filter(pl.col("image_path").is_not_null())
    folds = pl.read_parquet(folds_path)
    fold_of = dict(zip(folds["guid"].to_list(), folds["r0"].to_list()))
    guids, hashes, texts = df["guid"].to_list(), df["content_hash"].to_list(), _items(df, spec, data_root)
    metas = [json.loads((d / "adapter.json").read_text(encoding="utf-8")) for d in fold_dirs(adapter_dirs)]
    fp = crossfit_fingerprint(spec, metas)
    fid = fingerprint_id(fp)
    def encode_rows(rows: list[int]) -> np.ndarray:
        return encode_crossfitted(spec, adapter_dirs, [guids[i] for i in rows], [texts[i] for i in rows], fold_of,
                                  threads, progress)[0]

    vectors, encoded = reuse_or_encode(previous_shards(out_path), fid, guids, hashes, encode_rows)
    dim = int(vectors.shape[1]) if len(guids) else 0
    write_shard(out_path, guids, vectors, {"encoder": name, "fingerprint": fp, "fingerprint_id": fid,
                                           "modality": "image" if is_image(spec) else "text", "dim": int(dim)},
                hashes)
    log.info("%s: encoded %d, reused %d cross-fitted vectors of width %d from %s in %.1f s", name, encoded,
             len(guids) - encoded, dim, slice_path, time.perf_counter() - start)
    return encoded
