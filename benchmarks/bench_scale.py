"""How the workflow's costs grow with the data set: simulated lab-layout sets of 10k, 30k and 100k samples.

Each set comes from the demo generator (small images). With a weight-free encoder (VADER lexicon) and one cheap
head, so that what grows is the workflow and not a model, it runs ``snakemake --cores 2 predictions`` and
measures per size:

* the manifest job's wall time and peak memory (its benchmark TSV);
* one extraction job's peak memory (``shards: auto`` keeps shards at most 20,000 samples);
* the time of a no-op ``snakemake -n predictions`` on the built set (planning only);
* the size of ``results/``.

It prints a table and each measure's growth against the smallest size, per sample (1.0 = linear).

    python benchmarks/bench_scale.py [--sizes 10000,30000,100000] [--workdir DIR] [--json out.json]
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def config(data: Path) -> dict:
    return {
        "data": str(data), "layout": "lab", "labels": {"classes": ["negative", "neutral", "positive"]},
        "shards": "auto",
        "encoders": {"lexicon": {"backend": "vader"}},
        "heads": {"logreg": {}},
        "training": {"seeds": [0]},
        "selection": {"method": "cv", "folds": 5, "repeats": 1, "metric": "macro_f1"},
    }


def snakemake(work: Path, *args: str) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "snakemake", *args, "-s", str(REPO / "Snakefile"), "-d", str(work),
                    "--configfile", str(work / "config.yaml"), "--cores", "2", "--workflow-profile", "none"],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def tsv(path: Path) -> dict[str, float]:
    with open(path) as f:
        row = next(csv.DictReader(f, delimiter="\t"))
    return {"s": float(row["s"]), "max_rss_mb": float(row["max_rss"])}


def du(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 2**20


def measure(root: Path, n: int) -> dict[str, float]:
    from mmpipe.ingest.demo import make_demo

    work = root / f"n{n}"
    data = work / f"set{n}"
    start = time.perf_counter()
    make_demo(data, n=n, seed=0)
    generated = time.perf_counter() - start
    (work / "config.yaml").write_text(yaml.safe_dump(config(data), sort_keys=False))
    run = snakemake(work, "predictions")
    plans = [snakemake(work, "predictions", "-n") for _ in range(3)]
    logs = work / "logs" / data.name
    manifest, extract = tsv(logs / "manifest.benchmark.tsv"), tsv(logs / "extract" / "lexicon" / "000.benchmark.tsv")
    shards = len(list((work / "results" / data.name / "features" / "lexicon").glob("*.parquet")))
    return {"n": n, "generate_s": generated, "run_s": run, "manifest_s": manifest["s"],
            "manifest_rss_mb": manifest["max_rss_mb"], "extract_rss_mb": extract["max_rss_mb"], "shards": shards,
            "noop_plan_s": min(plans), "results_mb": du(work / "results" / data.name)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="10000,30000,100000")
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    root = Path(args.workdir or tempfile.mkdtemp(prefix="bench_scale_"))
    rows = [measure(root, int(n)) for n in args.sizes.split(",")]
    keys = ["manifest_s", "manifest_rss_mb", "extract_rss_mb", "noop_plan_s", "results_mb"]
    print(f"{'n':>8}{'shards':>8}{'manifest s':>12}{'manifest MB':>13}{'extract MB':>12}{'plan -n s':>11}"
          f"{'results MB':>12}{'run s':>8}")
    for r in rows:
        print(f"{r['n']:>8}{r['shards']:>8}{r['manifest_s']:>12.1f}{r['manifest_rss_mb']:>13.0f}"
              f"{r['extract_rss_mb']:>12.0f}{r['noop_plan_s']:>11.2f}{r['results_mb']:>12.1f}{r['run_s']:>8.0f}")
    base = rows[0]
    print("growth per sample against the smallest set (1.0 = linear, below 1 = sublinear):")
    for r in rows[1:]:
        scale = r["n"] / base["n"]
        print(f"  n={r['n']}: " + ", ".join(f"{k} {r[k] / base[k] / scale:.2f}" for k in keys))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
