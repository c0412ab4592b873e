"""Helpers to run the real workflow with Snakemake in a temporary folder."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

from conftest import REPO
from tiny_models import tiny_image_model, tiny_text_model


def tiny_config(workdir: Path, data: str, shards: int = 8, **extra) -> dict:
    """A config that uses tiny local HF models, so the workflow runs in seconds."""
    models = workdir / "models"
    text_dir = models / "text" if (models / "text").exists() else tiny_text_model(models / "text")
    image_dir = models / "image" if (models / "image").exists() else tiny_image_model(models / "image")
    config = {
        "data": data, "layout": "lab", "labels": {"classes": ["negative", "neutral", "positive"]},
        "shards": shards,
        "encoders": {
            "text": {"backend": "hf_text", "model": str(text_dir), "pooling": "mean", "max_length": 32,
                     "batch_size": 16},
            "image": {"backend": "hf_image", "model": str(image_dir), "batch_size": 16},
        },
        "heads": {"logreg": {}, "concat_mlp": {"max_epochs": 15, "patience": 4}},
        "training": {"seeds": [0, 1]},
        **extra,
    }
    write_config(workdir, config)
    return config


def write_config(workdir: Path, config: dict) -> None:
    (workdir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))


def snakemake(workdir: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run ``snakemake`` on the repo's Snakefile inside ``workdir``; returns the finished process."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(workdir),
           "--configfile", str(workdir / "config.yaml"), "--cores", "2", "--workflow-profile", "none", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-6000:]}")
    return proc


TARGET_RULES = {"all", "features", "ablations", "predictions", "tune", "html", "robustness"}


def planned_jobs(proc: subprocess.CompletedProcess) -> list[tuple[str, dict[str, str]]]:
    """(rule, wildcards) of every job that a run executed or a dry run planned (target-only rules aside)."""
    out = proc.stdout + proc.stderr
    jobs = []
    for block in re.split(r"\n(?=(?:local)?(?:rule|checkpoint) )", out):
        head = re.match(r"(?:local)?(?:rule|checkpoint) (\w+):", block)
        if not head or head.group(1) in TARGET_RULES:
            continue
        wc = re.search(r"wildcards: (.*)", block)
        wildcards = dict(kv.split("=", 1) for kv in wc.group(1).split(", ")) if wc else {}
        jobs.append((head.group(1), wildcards))
    return jobs


def count(jobs, rule: str, **wildcards) -> int:
    return sum(1 for r, wc in jobs if r == rule and all(wc.get(k) == v for k, v in wildcards.items()))
