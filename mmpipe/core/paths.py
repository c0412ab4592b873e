"""Where a data set lives and where its results go, derived from the config alone."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def is_demo(config: dict[str, Any]) -> bool:
    return config["data"] == "demo"


def dataset_name(config: dict[str, Any]) -> str:
    """``demo`` or the data folder's name: results go to ``results/<name>/``."""
    return "demo" if is_demo(config) else Path(config["data"]).resolve().name


def data_root(config: dict[str, Any]) -> Path:
    """The folder the samples are read from (the generated set for the demo), relative to the workdir
    when the config gives a relative path, so moving a project folder does not invalidate its cache."""
    return Path("results/demo/source") if is_demo(config) else Path(config["data"])
