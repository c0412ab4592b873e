"""Stage-2 overhead: the ablation grid through Snakemake against the same fits in one process, side by side.

In a work folder whose features are built (the demo by default, or ``--data`` with the config's encoders), it
times, in one run:

* **one process**: every ablation of the grid, one after another, exactly as the ``ablation`` job's script runs
  it (``load_split_data``, ``read_folds``, ``run_ablation``), with the job's thread count;
* **Snakemake, one core**: the same ablation jobs with ``--cores 1`` (one job at a time, so the difference is the
  per-job cost: process start, imports, Snakemake's bookkeeping);
* **Snakemake, N cores** (``--cores``, default 2): what a user's run pays, jobs side by side.

    python benchmarks/bench_stage2.py [--data DIR] [--config config.yaml] [--cores 2] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as the workflow sets it for its jobs
REPO = Path(__file__).resolve().parents[1]


def snakemake(work: Path, *args: str) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "snakemake", *args, "-s", str(REPO / "Snakefile"), "-d", str(work),
                    "--configfile", str(work / "config.yaml"), "--workflow-profile", "none"],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def in_process(work: Path, config: dict, ds: str, out: Path) -> float:
    """Every ablation, one after another in this process, doing what the ``ablation`` job's script does (the same
    data loading, fits, reports, figures and TensorBoard events), with the job's thread count."""
    from mmpipe.checks import check_config
    from mmpipe.fusion.ablation import run_ablation
    from mmpipe.fusion.cv import load_cv_data
    from mmpipe.fusion.grid import ablation_grid

    config = check_config(dict(config))
    res = work / "results" / ds
    task = "regression" if config["labels"].get("scheme") == "regression" else "classification"
    start = time.perf_counter()
    for name, spec in ablation_grid(config).items():
        features = [str(p) for m in spec["modalities"] for p in sorted((res / "features" / m).glob("*.parquet"))]
        data, folds = load_cv_data(str(res / "manifest.parquet"), features, spec["modalities"],
                                   config["labels"].get("classes"), str(res / "folds.parquet"), config["selection"])
        params = {**spec["params"], "threads": config["resources"].get("ablation", {}).get("threads", 1)}
        run_ablation(data, name, spec["modalities"], spec["head"], params, spec["seeds"], out / name, task=task,
                     selection=config["selection"], folds=folds, tensorboard_dir=out / "tensorboard" / name)
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default="demo")
    ap.add_argument("--config", default=str(REPO / "config.yaml"))
    ap.add_argument("--cores", type=int, default=2, help="also time Snakemake with this many cores (1: only one)")
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()

    config = yaml.safe_load(Path(args.config).read_text())
    config["data"] = args.data if args.data == "demo" else str(Path(args.data).resolve())
    work = Path(args.workdir or tempfile.mkdtemp(prefix="bench_stage2_"))
    work.mkdir(parents=True, exist_ok=True)
    (work / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    ds = "demo" if args.data == "demo" else Path(args.data).name
    res = work / "results" / ds
    snakemake(work, "features", f"results/{ds}/folds.parquet", "--cores", str(args.cores))

    one = in_process(work, config, ds, work / "in_process")
    timings = {"in_process_s": one}
    for cores in sorted({1, args.cores}):
        shutil.rmtree(res / "ablations", ignore_errors=True)
        timings[f"snakemake_cores{cores}_s"] = snakemake(work, "ablations", "--cores", str(cores))
    jobs = len(list((res / "ablations").glob("*/metrics.json")))
    print(f"{jobs} ablation jobs on {ds} ({work})")
    print(f"one process, one after another:  {one:8.1f} s")
    for cores in sorted({1, args.cores}):
        t = timings[f"snakemake_cores{cores}_s"]
        print(f"snakemake --cores {cores}:             {t:8.1f} s   ratio {t / one:.2f}")
    print("(the Snakemake times include planning and the summary job; the one-process time does not)")
    if args.json:
        Path(args.json).write_text(json.dumps({"jobs": jobs, **timings}, indent=1))


if __name__ == "__main__":
    main()
