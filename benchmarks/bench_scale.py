"""How the workflow's costs grow with the data set: simulated lab-layout sets of 10k, 30k and 100k samples.

Each set comes from the demo generator (small images). With a weight-free encoder (VADER lexicon) and one cheap
head, so that what grows is the workflow and not a model, it runs ``snakemake --cores 2 predictions`` and
measures per size:

* the manifest job's wall time and peak memory (its benchmark TSV);
* one extraction job's peak memory (``shards: auto`` keeps shards at most 20,000 samples);
* the time of a no-op ``snakemake -n predictions`` on the built set (planning only);
* the size of ``results/``.

It prints a table and each measure's growth against the smallest size, per sample (1.0 = linear).

Then, for the case the sizes cannot reach (a 1M-sample set has 50 shards per encoder): the peak memory of one
extraction job's reuse step (``reuse_or_encode``) for a new 20,000-row shard beside 0, 4, 19 and 49 sibling shards
of 20,000 rows each (384-d vectors), each in a fresh process (``VmHWM``), so that growth with the shard count shows.

    python benchmarks/bench_scale.py [--sizes 10000,30000,100000] [--siblings 0,4,19,49] [--workdir DIR] [--json out.json]
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

import numpy as np
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


SIBLING_JOB = r"""
import sys
from pathlib import Path
import numpy as np
from mmpipe.core.shards import reuse_or_encode

def peak_mb():
    return int(next(l for l in open("/proc/self/status") if l.startswith("VmHWM")).split()[1]) / 1024

root, k, rows = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
previous = [root / "000.parquet"] + sorted(root.glob("*.parquet"))[:k]
guids = [f"new{i}" for i in range(rows)]
before = peak_mb()
reuse_or_encode(previous, "fp", guids, ["h"] * len(guids), lambda rows: np.zeros((len(rows), 384), np.float32))
print(before, peak_mb())
"""


def sibling_memory(root: Path, counts: list[int], rows: int = 20000) -> list[dict[str, float]]:
    """Peak memory (MB) of the reuse step of a job whose new shard has ``k`` sibling shards, per ``k``."""
    from mmpipe.core.shards import write_shard

    shards = root / "siblings"
    shards.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for s in range(1, max(counts) + 1):
        vectors = rng.normal(size=(rows, 384)).astype(np.float32)
        write_shard(shards / f"{s:03d}.parquet", [f"s{s}_{i}" for i in range(rows)], vectors,
                    {"fingerprint_id": "fp"}, content_hashes=["h"] * rows)
    out = []
    for k in counts:
        res = subprocess.run([sys.executable, "-c", SIBLING_JOB, str(shards), str(k), str(rows)], capture_output=True,
                             text=True, check=True, cwd=REPO)
        start, peak = map(float, res.stdout.split())
        out.append({"siblings": k, "start_mb": start, "peak_mb": peak})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="10000,30000,100000")
    ap.add_argument("--siblings", default="0,4,19,49", help="sibling shard counts for the reuse-memory check")
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    root = Path(args.workdir or tempfile.mkdtemp(prefix="bench_scale_"))
    rows = [measure(root, int(n)) for n in args.sizes.split(",") if n]
    keys = ["manifest_s", "manifest_rss_mb", "extract_rss_mb", "noop_plan_s", "results_mb"]
    print(f"{'n':>8}{'shards':>8}{'manifest s':>12}{'manifest MB':>13}{'extract MB':>12}{'plan -n s':>11}"
          f"{'results MB':>12}{'run s':>8}")
    for r in rows:
        print(f"{r['n']:>8}{r['shards']:>8}{r['manifest_s']:>12.1f}{r['manifest_rss_mb']:>13.0f}"
              f"{r['extract_rss_mb']:>12.0f}{r['noop_plan_s']:>11.2f}{r['results_mb']:>12.1f}{r['run_s']:>8.0f}")
    if rows:
        base = rows[0]
        print("growth per sample against the smallest set (1.0 = linear, below 1 = sublinear):")
        for r in rows[1:]:
            scale = r["n"] / base["n"]
            print(f"  n={r['n']}: " + ", ".join(f"{k} {r[k] / base[k] / scale:.2f}" for k in keys))
    siblings = sibling_memory(root, [int(k) for k in args.siblings.split(",")])
    print("\nreuse step of one extraction job (a new 20,000-row shard), peak memory by sibling shard count:")
    for r in siblings:
        print(f"  {r['siblings']:>3} siblings: {r['peak_mb']:.0f} MB (process at start: {r['start_mb']:.0f} MB)")
    if args.json:
        Path(args.json).write_text(json.dumps({"sizes": rows, "siblings": siblings}, indent=1))


if __name__ == "__main__":
    main()
