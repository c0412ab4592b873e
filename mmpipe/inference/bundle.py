"""The model bundle: everything that turns raw samples into predictions, with no access to the training data.

``results/<ds>/model/`` (the workflow's ``model`` target) holds

* ``model.json``: what the bundle is, in plain words and in fields (format, mmpipe version, task, classes or the
  training score range, the selected ablation and its fallbacks, each encoder's full spec and fingerprint, the
  decoding settings, what happens to a sample that lacks a modality);
* ``config.json``: the config sections that read and decode raw input (layout, labels, text decoding, encoders);
* ``heads/<ablation>/seed<k>.pt``: the fitted head of each seed (already refitted on all labelled samples for a
  cross-validated ablation, refitted here for ``predict.refit``); each head carries its own standardiser;
* ``encoders/<encoder>/fold<k>/``: the fold adapters of an adapted encoder (``adapt:``), whose new-sample vector is
  the mean over the folds, as for the test split.

Missing modalities: a sample is predicted by the first head in ``heads`` whose modalities it has: the selected
ablation, then the best-ranked ablation (``summary.json``) of each other modality set, larger sets first. A sample
that none of them can take is refused, with its guid and what it lacks.

``cache`` points (relative to the bundle) at the run's manifest and feature shards: ``mmpipe predict`` reuses a
cached vector when the sample's guid and content hash match the manifest and the shard's fingerprint matches the
bundle's, so predicting the training data set's test list gives exactly the workflow's ``predictions.txt``.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Any, Callable

from mmpipe import __version__
from mmpipe.core.atomic import atomic_dir
from mmpipe.core.errors import MmpipeError
from mmpipe.fusion.dataset import SplitData
from mmpipe.fusion.predict import ablation_meta, context_mode, seed_heads

FORMAT = 1
# The config sections that read, decode and encode raw input; nothing of training.
INPUT_SECTIONS = ("data", "layout", "layout_options", "labels", "text", "on_bad_sample", "encoders")


def bundle_members(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """The heads a bundle holds, as ``summary.json`` entries, in the order a sample tries them: the selected
    ablation, then the best-ranked ablation of each other modality set of the grid (larger sets first)."""
    ranked = summary["ablations"]
    selected = next(e for e in ranked if e["name"] == summary["selected"])
    best: dict[frozenset[str], dict[str, Any]] = {}
    for e in ranked:
        best.setdefault(frozenset(e["modalities"]), e)
    best.pop(frozenset(selected["modalities"]), None)
    rest = sorted(best.values(), key=lambda e: (-len(e["modalities"]), ranked.index(e)))
    return [selected, *rest]


def _fallback_words(members: list[dict[str, Any]]) -> dict[str, str]:
    """For each modality of the selected ablation: what a sample without it gets."""
    out = {}
    for m in members[0]["modalities"]:
        rest = [e for e in members[1:] if m not in e["modalities"]]
        out[m] = (f"predicted by the first of {', '.join(e['name'] for e in rest)} whose modalities it has"
                  if rest else f"refused: no ablation of the grid does without {m}")
    return out


def _score_words(entry: dict[str, Any], metric: str | None) -> str | None:
    cv = entry.get("cv") or {}
    if metric and isinstance(cv.get(metric), dict):
        return f"cross-validated {metric} {cv[metric]['mean']:.3f} ± {cv[metric].get('std', 0.0):.3f}"
    return None


def build_bundle(summary_path: str | Path, config: dict[str, Any], encoder_meta: dict[str, dict[str, Any]],
                 out_dir: str | Path, load_data: Callable[[list[str]], SplitData] | None = None, refit: bool = False,
                 adapters: dict[str, list[str]] | None = None, cache: dict[str, Any] | None = None,
                 onnx: dict[str, str] | None = None) -> dict[str, Any]:
    """Write the bundle to ``out_dir`` (atomically: a temp folder beside it, then a rename); returns model.json.

    ``encoder_meta``: each encoder's feature-shard metadata (fingerprint, fingerprint_id, modality, dim);
    ``load_data``: the labelled features of a modality subset (``load_split_data``), for the classes or score
    range and to refit (``refit`` with a non-cross-validated ablation);
    ``adapters``: the fold adapter folders of each adapted encoder; ``onnx``: the export folder of each encoder with
    ``runtime: onnx``; ``cache``: paths of the run's manifest and
    feature shards (``{"manifest": path, "features": {encoder: [paths]}}``), stored relative to the bundle.
    """
    summary_path, out_dir = Path(summary_path), Path(out_dir)
    summary = json.loads(summary_path.read_text(encoding="utf-8"))
    members = bundle_members(summary)
    used = sorted({m for e in members for m in e["modalities"]})
    missing = [m for m in used if m not in encoder_meta]
    if missing:
        raise MmpipeError(f"{summary_path}: no feature metadata for encoder(s) {', '.join(missing)}")
    data = load_data(list(members[0]["modalities"])) if load_data is not None else None
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    with atomic_dir(out_dir) as tmp:
        heads = []
        for e in members:
            adir = summary_path.parent / "ablations" / e["name"]
            meta = ablation_meta(adir)
            files = []
            refitting = refit and not meta.get("cv")
            if refitting and load_data is None:
                raise MmpipeError(f"{adir}: refitting (predict.refit) needs the training features")
            own = load_data(list(meta["modalities"])) if refitting else None  # type: ignore[misc]
            for rec, model in zip(meta["per_seed"], seed_heads(own, adir, refitting)):
                rel = f"heads/{e['name']}/seed{int(rec['seed'])}.pt"
                (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
                model.save(tmp / rel)
                files.append(rel)
            heads.append({"ablation": e["name"], "head": meta["head"], "modalities": list(meta["modalities"]),
                          "context": context_mode(meta), "seeds": [int(r["seed"]) for r in meta["per_seed"]],
                          "files": files, "rank": e.get("rank"),
                          "score": _score_words(e, summary.get("selection", {}).get("metric")),
                          "refitted_on_all_labels": bool(meta.get("cv")) or bool(refit)})
        encoders = {}
        for name in used:
            spec = config["encoders"][name]
            entry = {"spec": spec, **{k: encoder_meta[name].get(k) for k in ("modality", "dim", "fingerprint",
                                                                           "fingerprint_id")}}
            if spec.get("adapt"):
                dirs = sorted((adapters or {}).get(name, []), key=lambda p: int(Path(p).name.removeprefix("fold")))
                if not dirs:
                    raise MmpipeError(f"encoder {name!r} is adapted, but no fold adapters were given for the bundle")
                entry["adapters"] = []
                for d in dirs:
                    rel = f"encoders/{name}/{Path(d).name}"
                    shutil.copytree(d, tmp / rel)
                    entry["adapters"].append(rel)
            if spec.get("runtime") == "onnx":
                if name not in (onnx or {}):
                    raise MmpipeError(f"encoder {name!r} runs on onnxruntime, but its export folder was not given")
                entry["onnx"] = f"encoders/{name}/onnx"
                shutil.copytree(onnx[name], tmp / entry["onnx"])
            encoders[name] = entry
        task = summary.get("task", "classification")
        model = {
            "format": FORMAT,
            "mmpipe_version": __version__,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "dataset": summary_path.parent.name,
            "task": task,
            "classes": list(data.classes) if data is not None else _classes(summary_path),
            "score_range": _score_range(data) if task == "regression" else None,
            "selected": members[0]["name"],
            "selected_by": summary.get("selected_by"),
            "heads": heads,
            "missing_modalities": _fallback_words(members),
            "encoders": encoders,
            "decoding": {"text": config.get("text", {}), "layout": config.get("layout", "lab"),
                         "layout_options": config.get("layout_options")},
            "cache": _relative_cache(cache, out_dir),
            "about": _about(heads, encoders, task),
        }
        (tmp / "config.json").write_text(json.dumps({k: config.get(k) for k in INPUT_SECTIONS if k in config},
                                                    indent=1, default=str) + "\n", encoding="utf-8")
        (tmp / "model.json").write_text(json.dumps(model, indent=1, default=str) + "\n", encoding="utf-8")
    return model


def _classes(summary_path: Path) -> list[str] | None:
    """The classes the ablations were trained on (their ``metrics.json``)."""
    for e in json.loads(summary_path.read_text(encoding="utf-8"))["ablations"]:
        meta = ablation_meta(summary_path.parent / "ablations" / e["name"])
        if meta.get("classes"):
            return list(meta["classes"])
    return None


def _score_range(data: SplitData | None) -> list[float] | None:
    if data is None or data.s_train is None:
        return None
    import numpy as np

    s = np.concatenate([data.s_train, data.s_val if data.s_val is not None else np.zeros(0)])
    return [float(s.min()), float(s.max())]


def _relative_cache(cache: dict[str, Any] | None, out_dir: Path) -> dict[str, Any] | None:
    if not cache:
        return None
    rel = lambda p: os.path.relpath(Path(p).resolve(), out_dir.resolve())  # noqa: E731
    return {"manifest": rel(cache["manifest"]),
            "features": {name: [rel(p) for p in paths] for name, paths in cache["features"].items()}}


def _about(heads: list[dict[str, Any]], encoders: dict[str, dict[str, Any]], task: str) -> list[str]:
    sel = heads[0]
    lines = [f"A {task} model: {sel['ablation']} (head {sel['head']} on {' + '.join(sel['modalities'])}), "
             f"the mean of its {len(sel['seeds'])} seed(s)" + (f"; {sel['score']}." if sel["score"] else ".")]
    for name, e in encoders.items():
        spec = e["spec"]
        what = spec.get("model") or spec.get("backend")
        lines.append(f"Encoder {name}: backend {spec['backend']} ({what}), {e['modality']} -> {e['dim']} floats"
                     + (", adapted per fold (mean over the fold adapters for new samples)" if spec.get("adapt") else ""))
    lines.append("A sample that lacks a modality is predicted by the best ablation that does without it, "
                 "or refused when there is none (missing_modalities).")
    return lines


def load_model_json(bundle: str | Path) -> dict[str, Any]:
    """``model.json`` of a bundle, with a clear error when ``bundle`` is not one."""
    path = Path(bundle) / "model.json"
    if not path.is_file():
        raise MmpipeError(f"{bundle}: not a model bundle (no model.json); build one with `snakemake model`")
    try:
        model = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise MmpipeError(f"{path}: unreadable ({exc})") from exc
    if model.get("format") != FORMAT:
        raise MmpipeError(f"{path}: bundle format {model.get('format')!r}, this mmpipe reads format {FORMAT}; "
                          f"rebuild it with `snakemake model`")
    return model
