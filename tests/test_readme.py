"""Every command in the README's ``bash`` blocks works, in the order given, on a fresh copy of the project.

The copy holds what git would clone (tracked files and new, not ignored ones) and shares this checkout's
``.venv``, so ``make`` finds it set up. Some commands are not run as written: the test commands (they are this
suite); the commands that need a SLURM cluster or the real data sets run as dry runs (``-n``: the config, the
planning and the profile are checked; ``tests/test_slurm.py`` and the real-data tests run those for real);
``pip install`` runs as ``--dry-run``; and building conda environments is skipped where conda is missing.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from conftest import REPO, SHARED

pytestmark = pytest.mark.slow

VENV = Path(sys.executable).parents[1]
STAMP = ".venv/.installed"


def readme_commands(text: str) -> list[str]:
    """The shell commands of the README's ```bash blocks, continuation lines joined, comments dropped."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        for cmd in re.sub(r"\\\n\s*", " ", block).splitlines():
            cmd = re.sub(r"\s+#.*$", "", cmd).strip()
            if cmd and not cmd.startswith("#"):
                commands.append(cmd)
    return commands


def as_run(cmd: str) -> str | None:
    """How the test runs ``cmd``: as written, as a dry run, or not at all (None)."""
    if "pytest" in cmd or cmd.startswith("make test"):
        return None
    if "--software-deployment-method conda" in cmd and shutil.which("conda") is None:
        return None  # builds conda environments: needs conda, which this machine lacks
    if cmd.startswith("make "):
        return cmd.replace("make ", f"make -o {STAMP} ", 1)  # set up already: the shared .venv
    if cmd.startswith("pip install"):
        return f"{cmd} --dry-run"
    if "--profile profiles/slurm" in cmd or "../shared" in cmd:
        return f"{cmd.replace('../shared', str(SHARED.parent))} -n"
    if re.match(r"snakemake .*\b(tune|robustness)\b|snakemake .*/tuning/", cmd):
        return f"{cmd} -n"  # minutes of CPU on the default config: tests/test_tune.py and test_robustness.py run them
    if cmd.startswith("python benchmarks/gpu_check.py"):  # no GPU here: the same steps on the CPU, small
        return f"{cmd} --device cpu --n 16 --cpu-n 16 --batch-sizes 16 --heads concat_mlp"
    if cmd.startswith("tensorboard "):  # a server: TensorBoard's own digest of the same event files instead
        return cmd.replace("tensorboard ", "tensorboard --inspect ", 1)
    return cmd


def fresh_copy(dest: Path) -> Path:
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO, capture_output=True,
                           check=True).stdout.decode().split("\0")
    for rel in filter(None, files):
        src = REPO / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    (dest / ".venv").symlink_to(VENV)
    return dest


def test_commands_run_in_order(tmp_path):
    if not (VENV / "bin" / "activate").is_file():
        pytest.skip("not running from a virtual environment")
    (VENV / ".installed").touch(exist_ok=True)
    commands = readme_commands((REPO / "README.md").read_text())
    assert commands[:2] == ["make demo", "make test"], commands[:2]
    project = fresh_copy(tmp_path / "mmpipe")
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    ran = []
    for cmd in commands:
        run = as_run(cmd)
        if run is None or ("../shared" in cmd and not SHARED.is_dir()):
            continue
        proc = subprocess.run(["bash", "-c", f". .venv/bin/activate && {run}"], cwd=project, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=900)
        out = proc.stdout
        assert proc.returncode == 0, f"README command failed: {run}\n{out[-5000:]}"
        ran.append(run)
        if cmd == "make demo":
            tail = "\n".join(out.strip().splitlines()[-8:])
            assert "results/demo/predictions.txt" in tail and "selected" in tail.lower(), tail
            assert len(out.splitlines()) < 300, f"{len(out.splitlines())} lines of console output"
    assert "make -o .venv/.installed demo" in ran and "snakemake --report report.html" in ran
    res = project / "results" / "demo"
    assert (res / "predictions.txt").is_file() and (res / "reports" / "decode.md").is_file()
    assert (project / "report.html").stat().st_size > 10_000
    assert (project / "my_demo" / "train.txt").is_file()
    check_demo_results(res)
    # the README's `mmpipe predict` on the demo folder: the workflow's tags; the ONNX runtime agrees
    expected = pl.read_csv(res / "predictions.txt", schema_overrides={"guid": pl.String})
    for name in ("new.csv", "new_onnx.csv"):
        got = pl.read_csv(project / name, schema_overrides={"guid": pl.String})
        assert got.select("guid", "tag").equals(expected), name
    proc = subprocess.run(["bash", "-c", ". .venv/bin/activate && snakemake --cores 2 all"], cwd=project, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and "Nothing to be done" in proc.stdout + proc.stderr, proc.stderr[-3000:]


def check_demo_results(res: Path) -> None:
    """The default config on the demo set, offline: every ablation reported, predictions for the test list."""
    import json

    import yaml

    from mmpipe.core.shards import read_meta

    test_list = pl.read_csv(res / "source" / "test_without_label.txt", schema_overrides={"guid": pl.String})
    pred = pl.read_csv(res / "predictions.txt", schema_overrides={"guid": pl.String})
    assert pred.columns == ["guid", "tag"] and pred["guid"].to_list() == test_list["guid"].to_list()
    classes = yaml.safe_load((REPO / "config.yaml").read_text())["labels"]["classes"]
    probs = pl.read_parquet(res / "predictions.parquet")
    p = probs.select([f"p_{c}" for c in classes]).to_numpy()
    assert abs(p.sum(axis=1) - 1).max() < 1e-5 and [classes[i] for i in p.argmax(axis=1)] == pred["tag"].to_list()
    assert read_meta(next((res / "features" / "text").glob("*.parquet")))["dim"] == 384
    assert read_meta(next((res / "features" / "image").glob("*.parquet")))["dim"] == 1280
    summary = json.loads((res / "summary.json").read_text())
    names = {a["name"] for a in summary["ablations"]}
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    expected = len(config["ablations"]["modalities"]) * len(config["heads"])  # every subset x every head
    assert len(names) == expected and summary["selected"] in names
    for name in names:
        assert (res / "ablations" / name / "report.md").stat().st_size > 0
        assert (res / "ablations" / name / "confusion.png").exists()
    decode = json.loads((res / "reports" / "decode.json").read_text())
    assert len(decode["encodings"]) >= 4 and decode["lossy"] == [] and decode["unlisted_files"] > 0
    assert json.loads((res / "model" / "model.json").read_text())["selected"] == summary["selected"]
