import json
from pathlib import Path

from mmpipe.core.runlog import job_log
from mmpipe.fusion.ablation import run_ablation
from mmpipe.fusion.cv import load_cv_data

with job_log(snakemake.log[0]):
    spec, selection = snakemake.params.spec, snakemake.params.selection
    data, folds = load_cv_data(snakemake.input.manifest, snakemake.input.features, spec["modalities"],
                               snakemake.params.classes, snakemake.input.folds, selection)
    params = {**spec["params"], "threads": snakemake.threads}
    if snakemake.input.get("tuning"):  # `tuned: true`: the study's best parameters over the configured ones
        params.update(json.loads(Path(snakemake.input.tuning).read_text())["params"])
    run_ablation(data, snakemake.wildcards.ablation, spec["modalities"], spec["head"], params, spec["seeds"],
                 Path(snakemake.output.metrics).parent, task=snakemake.params.get("task", "classification"),
                 selection=selection, folds=folds, tensorboard_dir=Path(snakemake.output.tensorboard))
