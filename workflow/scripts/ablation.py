import json
from pathlib import Path

from mmpipe.core.runlog import job_log
from mmpipe.fusion.ablation import run_ablation
from mmpipe.fusion.cv import read_folds
from mmpipe.fusion.dataset import load_split_data

with job_log(snakemake.log[0]):
    spec, selection = snakemake.params.spec, snakemake.params.selection
    n = len(snakemake.input.features) // len(spec["modalities"])
    shards = {m: snakemake.input.features[i * n:(i + 1) * n] for i, m in enumerate(spec["modalities"])}
    data = load_split_data(snakemake.input.manifest, shards, snakemake.params.classes)
    folds = read_folds(snakemake.input.folds, [*data.guids_train, *data.guids_val]) \
        if selection["method"] == "cv" else None
    params = {**spec["params"], "threads": snakemake.threads}
    if snakemake.input.get("tuning"):  # `tuned: true`: the study's best parameters over the configured ones
        params.update(json.loads(Path(snakemake.input.tuning).read_text())["params"])
    run_ablation(data, snakemake.wildcards.ablation, spec["modalities"], spec["head"], params, spec["seeds"],
                 Path(snakemake.output.metrics).parent, task=snakemake.params.get("task", "classification"),
                 selection=selection, folds=folds, tensorboard_dir=Path(snakemake.output.tensorboard))
