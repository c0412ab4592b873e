"""Shared fixtures: small lab-layout folders written by the tests themselves."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def write_lab(root: Path, train: dict[str, str], test: list[str], texts: dict[str, bytes] | None = None,
              images: bool = True) -> Path:
    """Write a minimal lab-layout folder: ``train`` maps guid -> tag, ``test`` lists guids."""
    data = root / "data"
    data.mkdir(parents=True, exist_ok=True)
    for guid in [*train, *test]:
        rng = np.random.default_rng(int(guid))
        body = (texts or {}).get(guid, f"tweet number {guid} is lovely".encode())
        (data / f"{guid}.txt").write_bytes(body)
        if images:
            arr = rng.integers(0, 255, (24, 32, 3), dtype=np.uint8)
            Image.fromarray(arr).save(data / f"{guid}.jpg", format="JPEG")
    (root / "train.txt").write_text("guid,tag\n" + "".join(f"{g},{t}\n" for g, t in train.items()))
    (root / "test_without_label.txt").write_text("guid,tag\n" + "".join(f"{g},null\n" for g in test))
    return root


@pytest.fixture
def lab_config() -> dict:
    from mmpipe.core.config import validate

    return validate({"data": "x", "layout": "lab", "labels": {"classes": ["negative", "neutral", "positive"]},
                     "encoders": {"text": {"backend": "hf_text"}}})


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory) -> Path:
    """A workdir where the real workflow built ``results/demo/model`` and ``predictions.txt`` on a 90-sample demo
    set with tiny local encoders, plus ``text_ft``: the tiny text model adapted with LoRA per fold (2 folds,
    cross-fitted). The selection is pinned to the neural text+image head, so the bundle also holds the best head
    of every other modality set (text, image, text_ft) as fallbacks."""
    from workflow import snakemake, tiny_config, write_config

    work = tmp_path_factory.mktemp("bundle")
    config = tiny_config(work, "demo", shards=2, demo={"n": 90, "seed": 0}, selection={"folds": 2, "repeats": 1},
                         training={"seeds": [0, 1]}, predict={"select": "text+image__concat_mlp"},
                         ablations={"modalities": [["text"], ["image"], ["text", "image"], ["text_ft"]]})
    config["encoders"]["text_ft"] = {**config["encoders"]["text"], "max_length": 16,
                                     "adapt": {"method": "lora", "r": 4, "alpha": 8, "epochs": 1, "batch_size": 8,
                                               "lr": 5e-3}}
    write_config(work, config)
    snakemake(work, "model", "predictions")
    return work
