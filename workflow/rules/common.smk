import json
import os
import time
import re
import sys
from pathlib import Path

# The rules call the mmpipe package that sits beside this workflow, also inside conda envs and cluster jobs.
sys.path.insert(0, workflow.basedir)
# Idle OpenMP threads sleep instead of spinning: the heads run many tiny parallel regions, and spinning
# threads waiting for a descheduled partner made 2-thread fits 4-10x slower on a shared machine.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.update(PYTHONPATH=os.pathsep.join(filter(None, [workflow.basedir, os.environ.get("PYTHONPATH")])))

from mmpipe.checks import check_config
from mmpipe.core.errors import MmpipeError
from mmpipe.core.paths import data_root, dataset_name, is_demo
from mmpipe.core.registry import PLUGINS_ENV
from mmpipe.core.shards import remove_unreadable
from mmpipe.fusion.grid import ablation_grid
from mmpipe.fusion.robustness import evaluable as robustness_evaluable
from mmpipe.fusion.robustness import settings as robustness_settings
from mmpipe.fusion.tune import tuning_specs
from mmpipe.ingest import layouts
from mmpipe.ingest.split import shard_count

# Plug-in files (more heads, backends, layouts) reach every job through the environment.
_plugins = config.get("plugins") or []
os.environ[PLUGINS_ENV] = os.pathsep.join(str(Path(p).resolve()) for p in ([_plugins] if isinstance(_plugins, str) else _plugins))
# Everything checkable is checked now, at planning time: a bad config starts no job.
try:
    check_config(config)
    ROBUSTNESS = robustness_settings(config)
except MmpipeError as exc:
    sys.exit(f"mmpipe: {exc}")

DEMO = is_demo(config)
DS = dataset_name(config)
RES = f"results/{DS}"
# A truncated or foreign feature shard (a killed copy, a full disk) is removed now, so that its job reruns.
for _path, _why in remove_unreadable(f"{RES}/features"):
    print(f"mmpipe: {_path} was unreadable ({_why}); removed, it will be rebuilt", file=sys.stderr)
LOGS = f"logs/{DS}"
DATA_ROOT = str(data_root(config))
# `shards: auto` sizes the shards from a cheap count (list lines, table rows; the demo's n).
N_SAMPLES = config["demo"]["n"] if DEMO else layouts.get(config["layout"]).count(Path(DATA_ROOT))
N_SHARDS = shard_count(config["shards"], N_SAMPLES)
SHARDS = [f"{i:03d}" for i in range(N_SHARDS)]
ENCODERS = list(config["encoders"])
# Encoders with an `adapt:` section: fine-tuned once per fold of the shared folds, then encoded cross-fitted.
ADAPTED = [name for name, spec in config["encoders"].items() if spec.get("adapt")]
FOLDS = [str(k) for k in range(config["selection"]["folds"])]
# Frozen text encoders run on onnxruntime (`runtime: onnx`): exported once, then extracted without torch.
ONNX_RUNTIME = [name for name, spec in config["encoders"].items() if spec.get("runtime") == "onnx"]

# Sized from measurements on a 2-core machine (see README); override under `resources:` in the config.
DEFAULT_RESOURCES = {
    "demo_data": dict(threads=1, mem_mb=1000, runtime=10),
    "manifest": dict(threads=2, mem_mb=2000, runtime=30),
    "decode_report": dict(threads=1, mem_mb=1000, runtime=5),
    "folds": dict(threads=1, mem_mb=1000, runtime=5),
    "extract": dict(threads=2, mem_mb=4000, runtime=60),
    "encoder_onnx": dict(threads=2, mem_mb=4000, runtime=30),
    "adapter": dict(threads=2, mem_mb=6000, runtime=120),
    "ablation": dict(threads=1, mem_mb=2000, runtime=30),
    "tune_worker": dict(threads=1, mem_mb=2000, runtime=120),
    "summary": dict(threads=1, mem_mb=1000, runtime=5),
    "ablation_html": dict(threads=1, mem_mb=1000, runtime=5),
    "summary_html": dict(threads=1, mem_mb=1000, runtime=5),
    "decode_html": dict(threads=1, mem_mb=1000, runtime=5),
    "tune_report": dict(threads=1, mem_mb=1000, runtime=10),
    "tuning_html": dict(threads=1, mem_mb=1000, runtime=5),
    "robustness_eval": dict(threads=1, mem_mb=3000, runtime=60),
    "robustness_plan": dict(threads=1, mem_mb=1000, runtime=5),
    "robustness_report": dict(threads=1, mem_mb=1000, runtime=5),
    "robustness_html": dict(threads=1, mem_mb=1000, runtime=5),
    "model": dict(threads=1, mem_mb=2000, runtime=30),
    "predict": dict(threads=1, mem_mb=2000, runtime=30),
}


def res(rule_name, key):
    return config["resources"].get(rule_name, {}).get(key, DEFAULT_RESOURCES[rule_name][key])


def demo_sources(wildcards):
    """The generated demo set, when the data is the demo (a real data folder is tracked by `sources_digest`)."""
    return rules.demo_data.output if DEMO else []


def sources_digest():
    """Path, size and mtime of every raw file, digested: a new or changed file reruns the manifest (params)."""
    return "demo" if DEMO else layouts.sources_digest(config["layout"], DATA_ROOT)


def manifest_config():
    """The config sections the manifest depends on (nothing of stage 2)."""
    keys = ("layout", "layout_options", "labels", "on_bad_sample", "seed", "text", "split")
    return json.dumps({**{k: config.get(k) for k in keys}, "shards": N_SHARDS}, sort_keys=True)


def bundle_config():
    """What the model bundle keeps of the config: how raw input is read, decoded and encoded."""
    from mmpipe.inference.bundle import INPUT_SECTIONS

    return {k: config[k] for k in INPUT_SECTIONS if k in config}


def shard_slice(wildcards):
    """A shard slice of the manifest. Asking the checkpoint defers planning until the manifest is
    rebuilt, so a slice whose content did not change (same checksum) reruns nothing downstream."""
    checkpoints.manifest.get()
    return f"{RES}/shards/{wildcards.shard}.parquet"


def extract_inputs(wildcards):
    """An extraction job's shard slice; for an adapted encoder also its fold adapters and the folds."""
    inputs = {"slice": shard_slice(wildcards)}
    if wildcards.encoder in ADAPTED:
        inputs["adapters"] = expand(f"{RES}/adapters/{wildcards.encoder}/fold{{fold}}", fold=FOLDS)
        inputs["folds"] = f"{RES}/folds.parquet"
    if wildcards.encoder in ONNX_RUNTIME:
        inputs["onnx"] = f"{RES}/encoders/{wildcards.encoder}"
    return inputs


ABLATIONS = ablation_grid(config)
# the heads the `tune` target tunes, and the workers that share each study
TUNING = tuning_specs(config, ABLATIONS)
TUNING_WORKERS = list(range(config["tuning"]["workers"]))
TUNED = [v for v, spec in TUNING.items() if (config["heads"][v] or {}).get("tuned")]
ROBUSTNESS_EVALUABLE = robustness_evaluable(ABLATIONS)
SELECTION_METRIC = config["selection"]["metric"] or ("mae" if config["labels"].get("scheme") == "regression" else "macro_f1")


def modality_features(mods):
    return expand(f"{RES}/features/{{encoder}}/{{shard}}.parquet", encoder=mods, shard=SHARDS)


def ablation_features(wildcards):
    return modality_features(ABLATIONS[wildcards.ablation]["modalities"])


def ablation_tuning(wildcards):
    """The tuned parameters of the ablation's head, when its config entry says `tuned: true`."""
    spec = ABLATIONS[wildcards.ablation]
    return f"{RES}/tuning/{spec['variant']}/best.json" if spec.get("tuned") else []


def robustness_results(wildcards):
    """The per-ablation robustness records the plan asks for (known once the summary has selected an ablation)."""
    plan = json.loads(Path(checkpoints.robustness_plan.get().output[0]).read_text())
    return expand(f"{RES}/robustness/{{ablation}}.json", ablation=plan["ablations"])


def tuning_features(wildcards):
    return modality_features(TUNING[wildcards.variant]["modalities"])


def tuning_settings():
    """The `tuning` settings a worker runs with, and the inner early-stopping share. The study's name digests
    what defines it (not the trial count or time budget: raising `trials` extends the same study)."""
    keep = {k: v for k, v in config["tuning"].items() if k not in ("heads", "space", "workers", "modalities")}
    return {**keep, "inner_val": config["selection"]["inner_val"]}


def extract_gpu(wildcards):
    """SLURM GPU request (`gpu`, `gpu_model`, `slurm_extra`) of an extraction job: only when the config's
    `gpu.enabled` is set or the job's encoder has `device: cuda`; None leaves the resource unset."""
    gpu, device = config.get("gpu", {}), str(config["encoders"][wildcards.encoder].get("device", "cpu"))
    wanted = gpu.get("enabled") or device.startswith("cuda")
    return dict(gpu=gpu.get("count", 1), gpu_model=gpu.get("model"), slurm_extra=gpu.get("slurm_extra")) if wanted else {}


RUN_STARTED = time.time()
from mmpipe.core import liverun, runlog  # one live run per folder; a failed run's console kept short
if workflow.is_main_process:  # not in job subprocesses or cluster jobs, which parse this file again
    liverun.check()  # another run recorded in this folder: say so before Snakemake's --unlock/--rerun-incomplete
    workflow.onstart(lambda log: liverun.record())  # real runs only (never -n), once they hold Snakemake's lock
    runlog.hide_restore_warnings()  # "Cannot restore ...: no backup found" for update() outputs of a first build


def print_job_errors():
    """The end of a failed run: the one-line mmpipe errors of the jobs that failed on bad input."""
    from mmpipe.core.runlog import print_errors

    print_errors(LOGS, RUN_STARTED - 1)


def print_digest():
    """The end of a successful run: the selected ablation against its baselines, and where the outputs are."""
    from mmpipe.reporting.summary import run_digest

    for line in run_digest(Path(f"{RES}/summary.json"), Path(f"{RES}/predictions.txt"), Path(f"{RES}/report.md")):
        print(line)
