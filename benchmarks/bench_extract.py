"""Extraction at the encoder's speed: a real extraction job against the pure forward pass, side by side.

For each encoder of the config (by default ``config.yaml``'s), on one data set:

1. **the real job**: ``snakemake --cores 2 features`` in a fresh work folder (one shard per encoder with
   ``shards: auto``). Each job's benchmark TSV gives its wall time; its log gives the phases inside the job
   (encoder built, model loaded, encode loop, everything in the job);
2. **the pure forward pass**: over the same samples, each batch decoded, tokenised or resized and collated into the
   job's batches (same order, same batch size) before its ``embed`` is timed; only ``embed`` is timed. It runs in a
   fresh interpreter, as a job does, once before the jobs and once after them: the two bracket the jobs in time,
   and their spread shows how much the machine's speed moved, so the ratio is taken against their mean and printed
   against each.

An encoder with ``runtime: onnx`` (the default frozen text encoder) runs beside its torch twin (``<name>_torch``,
the same entry on torch) in the same run, so the two runtimes' jobs are measured side by side; its one-time export
(the ``encoder_onnx`` job) is printed apart.

It prints samples per second of both and their ratio (the encode loop against the pure forward, start-up
excluded), and splits each job's wall time into process start (interpreter, imports, Snakemake's script
preamble, exit), encoder build, model load, encode loop and writing.

3. **new samples** (``--add``, default 0.01): the first run reads a copy of the data folder (links to its files)
   whose ``train.txt`` lacks that fraction of all samples (seeded); then the full ``train.txt`` is put back and
   ``features`` runs again. It prints, per encoder, the jobs' "encoded N, reused M" counts and the second run's
   encode-loop seconds and job wall seconds as shares of the first (full) extraction's.

    python benchmarks/bench_extract.py --data ../shared/data/mvsa_single_lab5 [--encoders text,image] [--add 0.01]
        [--json out.json]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

import yaml

REPO = Path(__file__).resolve().parents[1]
PHASES = re.compile(r"encoded (\d+), reused (\d+) .*encoder built in ([\d.]+) s, model loaded in ([\d.]+) s, "
                    r"encoded in ([\d.]+) s .*; ([\d.]+) s in all")


def snakemake(work: Path, config: dict, *targets: str) -> float:
    """Run the real workflow to ``targets`` in ``work``; returns its wall time."""
    (work / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "snakemake", *targets, "-s", str(REPO / "Snakefile"), "-d", str(work),
                    "--configfile", str(work / "config.yaml"), "--cores", "2", "--workflow-profile", "none"],
                   check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def prepare(work: Path, config: dict) -> None:
    """What the extraction jobs read, built before they are timed: the manifest and its slices, and the ONNX
    exports of ``runtime: onnx`` encoders (timed by their own job's benchmark TSV)."""
    res = f"results/{Path(config['data']).name}"
    exports = [f"{res}/encoders/{n}" for n, s in config["encoders"].items() if s.get("runtime") == "onnx"]
    snakemake(work, config, f"{res}/manifest.parquet", *exports)


def job_phases(work: Path, ds: str, encoder: str) -> dict[str, float]:
    """Wall time (benchmark TSV) and in-job phases (job log) of an encoder's extraction jobs, summed."""
    out = dict.fromkeys(("wall", "built", "loaded", "loop", "in_job", "n", "reused"), 0.0)
    for tsv in sorted((work / "logs" / ds / "extract" / encoder).glob("*.benchmark.tsv")):
        with open(tsv) as f:
            out["wall"] += float(next(csv.DictReader(f, delimiter="\t"))["s"])
        m = PHASES.search(tsv.with_name(tsv.name.replace(".benchmark.tsv", ".log")).read_text())
        if not m:
            raise SystemExit(f"{tsv}: its job log has no phase line")
        n, reused, built, loaded, loop, in_job = map(float, m.groups())
        out["n"] += n
        out["reused"] += reused
        out["built"] += built
        out["loaded"] += loaded
        out["loop"] += loop
        out["in_job"] += in_job
    out["start"] = out["wall"] - out["in_job"]
    out["write"] = out["in_job"] - out["built"] - out["loaded"] - out["loop"]
    return out


def held_back_copy(data: Path, work: Path, fraction: float, seed: int = 0) -> tuple[Path, str]:
    """A lab-layout folder in ``work`` that links to ``data``'s files, its ``train.txt`` without ``fraction`` of all
    samples (train and test lists), drawn with ``seed``; returns the folder and the full ``train.txt`` text."""
    full = (data / "train.txt").read_text()
    header, *rows = full.splitlines()
    n_all = len(rows) + max(0, len((data / "test_without_label.txt").read_text().splitlines()) - 1)
    held = set(random.Random(seed).sample(range(len(rows)), max(1, round(fraction * n_all))))
    copy = work / "input" / data.name
    copy.mkdir(parents=True)
    for path in data.iterdir():
        if path.name != "train.txt":
            (copy / path.name).symlink_to(path)
    (copy / "train.txt").write_text("\n".join([header] + [r for i, r in enumerate(rows) if i not in held]) + "\n")
    return copy, full


def pure_forward_fresh(work: Path, ds: str, spec: dict, data_root: str) -> float:
    """Samples per second of ``pure_forward`` in a fresh interpreter (nan for an encoder without a model forward)."""
    args = json.dumps({"work": str(work), "ds": ds, "spec": spec, "data_root": data_root})
    out = subprocess.run([sys.executable, __file__, "--pure", args], check=True, capture_output=True, text=True)
    n, seconds = json.loads(out.stdout.strip().splitlines()[-1]) or (0, 0.0)
    return n / seconds if seconds else float("nan")


def pure_forward(work: Path, ds: str, spec: dict, data_root: str, threads: int = 2) -> tuple[int, float] | None:
    """Seconds of ``embed`` alone over the job's batches, prepared beforehand; returns (samples, seconds), or None
    for an encoder without a model forward pass (a lexicon). An encoder with ``runtime: onnx`` runs its export
    (``results/<ds>/encoders/<name>``) on onnxruntime."""
    from mmpipe.encoders.base import ENCODERS, TorchEncoder, build_encoder
    from mmpipe.encoders.extract import shard_items
    from mmpipe.encoders.text_onnx import OnnxTextEncoder

    if spec.get("runtime") == "onnx":
        encoder = OnnxTextEncoder(work / "results" / ds / "encoders" / spec["name"], threads=threads)
    elif issubclass(ENCODERS.get(spec["backend"]), TorchEncoder):
        encoder = build_encoder({**spec, "threads": threads})
    else:
        return None
    items: list = []
    for slice_path in sorted((work / "results" / ds / "shards").glob("*.parquet")):
        items += list(shard_items(slice_path, encoder, spec, data_root)[2])
    encoder.warm_up()
    seconds = 0.0
    with encoder.context():
        for i, batch in enumerate(prepared_batches(encoder, items)):
            if i == 0:
                encoder.embed(batch)  # first-call allocations, as the job's first batch pays them too
            start = time.perf_counter()
            encoder.embed(batch)
            seconds += time.perf_counter() - start
    return len(items), seconds


def prepared_batches(encoder: Any, items: list) -> Iterator[Any]:
    """The encoder's collated batches of ``items``, in the order and size an extraction job batches them, each
    prepared (decoded, resized or tokenised, collated) before it is handed out: only one is held at a time, so the
    pure pass does not run beside gigabytes of prepared images that the job never holds."""
    items = encoder.inputs(items)
    order = encoder.order(items)
    if order is not None:
        items = [items[i] for i in order]
    bs = encoder.batch_size
    for i in range(0, len(items), bs):
        yield encoder.collate([encoder.load(x) for x in items[i:i + bs]])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True, help="a lab-layout data folder")
    ap.add_argument("--config", default=str(REPO / "config.yaml"))
    ap.add_argument("--encoders", default=None, help="comma-separated encoder names (default: the non-adapted ones)")
    ap.add_argument("--add", type=float, default=0.01,
                    help="fraction of all samples held back from train.txt in the first run, added in a second "
                         "(0: none)")
    ap.add_argument("--workdir", default=None, help="keep the work folder here (default: a temp folder)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()

    config = yaml.safe_load(Path(args.config).read_text())
    names = args.encoders.split(",") if args.encoders else [n for n, s in config["encoders"].items()
                                                            if not s.get("adapt")]
    for name in list(names):  # an onnxruntime encoder runs beside its torch twin, in the same run
        if config["encoders"][name].get("runtime") == "onnx":
            config["encoders"][f"{name}_torch"] = {**config["encoders"][name], "runtime": "torch"}
            names.insert(names.index(name) + 1, f"{name}_torch")
    data = str(Path(args.data).resolve())
    work = Path(args.workdir or tempfile.mkdtemp(prefix="bench_extract_"))
    work.mkdir(parents=True, exist_ok=True)
    full_train = None
    if args.add > 0:
        copy, full_train = held_back_copy(Path(data), work, args.add)
        data = str(copy)
    config.update(data=data, shards="auto", encoders={n: config["encoders"][n] for n in names},
                  ablations={"modalities": None, "heads": None})  # only the features run; the grid must plan
    ds = Path(data).name
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    prepare(work, config)
    specs = {name: {**config["encoders"][name], "name": name} for name in names}
    before = {name: pure_forward_fresh(work, ds, specs[name], data) for name in names}
    run_wall = snakemake(work, config, "features")
    after = {name: pure_forward_fresh(work, ds, specs[name], data) for name in names}
    rows, jobs = [], {name: job_phases(work, ds, name) for name in names}
    for name in names:
        job = jobs[name]
        pure, loop = (before[name] + after[name]) / 2, job["n"] / max(job["loop"], 1e-9)
        start_up = job["start"] + job["built"] + job["loaded"]
        rows.append({"encoder": name, "samples": int(job["n"]), "pure_before_per_s": before[name],
                     "pure_after_per_s": after[name], "pure_per_s": pure, "job_loop_per_s": loop,
                     "ratio": loop / pure, "ratio_before": loop / before[name], "ratio_after": loop / after[name],
                     "job_wall_s": job["wall"], "process_start_s": job["start"],
                     "encoder_build_s": job["built"], "model_load_s": job["loaded"], "encode_loop_s": job["loop"],
                     "write_s": job["write"], "start_up_share": start_up / job["wall"]})
    print(f"extraction run: {run_wall:.1f} s wall (snakemake features, {len(names)} encoder(s), {work})")
    print(f"{'encoder':<11}{'n':>6}{'pure/s':>15}{'loop/s':>8}{'ratio':>7}{'(range)':>12}{'job s':>7}{'start':>6}"
          f"{'build':>6}{'load':>6}{'loop':>7}{'write':>6}{'start-up %':>11}")
    for r in rows:
        spread = f"{min(r['ratio_before'], r['ratio_after']):.2f}-{max(r['ratio_before'], r['ratio_after']):.2f}"
        pure = f"{r['pure_before_per_s']:.1f}/{r['pure_after_per_s']:.1f}"
        print(f"{r['encoder']:<11}{r['samples']:>6}{pure:>15}{r['job_loop_per_s']:>8.1f}{r['ratio']:>7.2f}"
              f"{spread:>12}{r['job_wall_s']:>7.1f}{r['process_start_s']:>6.1f}{r['encoder_build_s']:>6.1f}"
              f"{r['model_load_s']:>6.1f}{r['encode_loop_s']:>7.1f}{r['write_s']:>6.1f}"
              f"{100 * r['start_up_share']:>10.1f}%")
    print("pure/s: the pure forward pass in a fresh process before / after the jobs; ratio: the job's encode loop "
          "against their mean (range: against each)")
    print("start-up = process start + encoder build + model load, as a share of the job's wall time")
    exports = {tsv.name.split(".")[0]: float(next(csv.DictReader(open(tsv), delimiter="\t"))["s"])
               for tsv in sorted((work / "logs" / ds / "encoder_onnx").glob("*.benchmark.tsv"))}
    for name, wall in exports.items():
        print(f"{name}: exported to ONNX once (encoder_onnx job), {wall:.1f} s wall")
    added = []
    if full_train is not None:
        (Path(data) / "train.txt").write_text(full_train)
        prepare(work, config)
        add_wall = snakemake(work, config, "features")
        for name in names:
            new, old = job_phases(work, ds, name), jobs[name]
            added.append({"encoder": name, "encoded": int(new["n"]), "reused": int(new["reused"]),
                          "loop_s": new["loop"], "wall_s": new["wall"], "loop_share": new["loop"] / old["loop"],
                          "wall_share": new["wall"] / old["wall"]})
        loop_share = sum(a["loop_s"] for a in added) / sum(j["loop"] for j in jobs.values())
        wall_share = sum(a["wall_s"] for a in added) / sum(j["wall"] for j in jobs.values())
        print(f"\nnew samples: {args.add:.1%} of all samples added to train.txt; features again: {add_wall:.1f} s wall")
        print(f"{'encoder':<10}{'encoded':>8}{'reused':>8}{'loop s':>8}{'job s':>8}{'loop %':>8}{'job %':>8}")
        for a in added:
            print(f"{a['encoder']:<10}{a['encoded']:>8}{a['reused']:>8}{a['loop_s']:>8.2f}{a['wall_s']:>8.1f}"
                  f"{100 * a['loop_share']:>7.1f}%{100 * a['wall_share']:>7.1f}%")
        print(f"all encoders: encoder time {100 * loop_share:.1f}% and job wall time {100 * wall_share:.1f}% of the "
              "full extraction's")
    if args.json:
        Path(args.json).write_text(json.dumps({"run_wall_s": run_wall, "encoders": rows, "exports_s": exports,
                                               "added": added}, indent=1))


if __name__ == "__main__":
    if sys.argv[1:2] == ["--pure"]:  # one pure pass, in this fresh process (pure_forward_fresh)
        job = json.loads(sys.argv[2])
        print(json.dumps(pure_forward(Path(job["work"]), job["ds"], job["spec"], job["data_root"])))
    else:
        main()
