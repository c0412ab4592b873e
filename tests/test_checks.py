"""Planning-time checks: `snakemake -n` and `mmpipe check` refuse a bad config with one line naming the key, and
start no job; valid command-line overrides (nested ones too) are accepted; the CLI works as installed."""

from __future__ import annotations

import copy
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import REPO
from mmpipe.checks import check_config
from mmpipe.core.errors import ConfigError

DEFAULT = yaml.safe_load((REPO / "config.yaml").read_text())


def config(**changes) -> dict:
    cfg = copy.deepcopy(DEFAULT)
    for dotted, value in changes.items():
        *parents, key = dotted.split("__")
        node = cfg
        for p in parents:
            node = node.setdefault(p, {})
        node[key] = value
    return cfg


def test_default_and_example_configs_pass():
    check_config(config())
    for path in sorted((REPO / "config" / "examples").glob("*.yaml")):
        cfg = yaml.safe_load(path.read_text())
        cfg["data"] = "demo" if cfg["data"] == "demo" else str(path)  # data folders are checked by the manifest
        check_config(cfg, source=path.name)


BAD = {
    "misspelled encoder key": (dict(encoders__text__max_lenght=64), ["encoders.text", "max_lenght"]),
    "unknown backend": (dict(encoders__text__backend="hf_txt"), ["encoders.text.backend", "hf_txt"]),
    "missing model directory": (dict(encoders__text__model="/nonexistent/model"),
                                ["encoders.text", "/nonexistent/model", "not found"]),
    "unknown head": (dict(heads={"svm": {}, "fancy": {}}), ["heads.fancy", "fancy"]),
    "unknown head parameter": (dict(heads={"svm": {"hiden": 3}}), ["heads.svm", "hiden"]),
    "ablation of a missing modality": (dict(ablations__modalities=[["text", "audio"]]),
                                       ["ablations.modalities", "audio"]),
    "unknown top-level key": (dict(shard=3), ["shard"]),
    "unknown layout": (dict(layout="labb"), ["layout", "labb"]),
    "dialogue context without turns": (dict(encoders__text__context=True), ["encoders.text", "text.context_turns"]),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_config_is_refused_naming_the_key(case):
    changes, words = BAD[case]
    with pytest.raises(ConfigError) as info:
        check_config(config(**changes))
    message = str(info.value)
    for word in words:
        assert word in message, message
    assert len(message.splitlines()) == 1, message


def _snakemake_n(workdir: Path, cfg: dict, *extra: str) -> subprocess.CompletedProcess:
    (workdir / "config.yaml").write_text(yaml.safe_dump(cfg))
    return subprocess.run([sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(workdir),
                           "--configfile", str(workdir / "config.yaml"), "-n", "--cores", "1", "predictions",
                           *extra], capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("case", ["misspelled encoder key", "unknown backend", "missing model directory",
                                  "unknown head", "unknown head parameter"])
def test_snakemake_dry_run_refuses_with_one_line(tmp_path, case):
    changes, words = BAD[case]
    proc = _snakemake_n(tmp_path, config(**changes))
    assert proc.returncode != 0
    lines = [line for line in (proc.stdout + proc.stderr).splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("mmpipe: ")]
    assert len(errors) == 1 and all(w in errors[0] for w in words), lines
    assert not any("Traceback" in line or line.startswith("rule ") for line in lines), lines
    assert not (tmp_path / "results").exists() and not (tmp_path / "logs").exists()


def test_nested_command_line_override_is_accepted(tmp_path):
    proc = _snakemake_n(tmp_path, config(), "--config", 'split={"val_fraction": 0.2}',
                        'heads={"svm": {"C": [0.5, 1]}, "concat_mlp": {"hidden": 64}}')
    assert proc.returncode == 0, proc.stdout + proc.stderr
    bad = _snakemake_n(tmp_path, config(), "--config", 'split={"val_fraction": "a lot"}')
    assert bad.returncode != 0 and "split.val_fraction" in bad.stdout + bad.stderr


def _mmpipe() -> list[str]:
    exe = Path(sys.executable).with_name("mmpipe")
    return [str(exe)] if exe.exists() else [shutil.which("mmpipe") or "mmpipe"]


def test_cli_version_check_and_demo(tmp_path):
    from mmpipe import __version__

    env = {**os.environ, "PYTHONPATH": ""}
    run = lambda *a: subprocess.run([*_mmpipe(), *a], capture_output=True, text=True, cwd=tmp_path, env=env,
                                    timeout=120)
    assert run("--version").stdout.strip() == f"mmpipe {__version__}"
    ok = run("check", str(REPO / "config.yaml"))
    assert ok.returncode == 0 and "ok" in ok.stdout, ok.stderr
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(config(encoders__text__bakend="x")))
    bad = run("check", "bad.yaml")
    assert bad.returncode == 2 and bad.stderr.startswith("mmpipe: invalid bad.yaml: encoders.text")
    assert run("check", "absent.yaml").returncode == 2
    demo = run("demo", "mine", "--n", "12")
    assert demo.returncode == 0, demo.stderr
    listed = (tmp_path / "mine" / "train.txt").read_text().splitlines()[1:]
    listed += (tmp_path / "mine" / "test_without_label.txt").read_text().splitlines()[1:]
    assert len(listed) == 12
    assert all((tmp_path / "mine" / "data" / f"{line.split(',')[0]}.txt").is_file() for line in listed)
