import json
from pathlib import Path

from mmpipe.core.atomic import write_text
from mmpipe.core.runlog import job_log
from mmpipe.fusion.cv import read_folds
from mmpipe.fusion.dataset import load_split_data
from mmpipe.fusion.robustness import evaluate_ablation

with job_log(snakemake.log[0]):
    spec, selection = snakemake.params.spec, snakemake.params.selection
    n = len(snakemake.input.features) // len(spec["modalities"])
    shards = {m: snakemake.input.features[i * n:(i + 1) * n] for i, m in enumerate(spec["modalities"])}
    data = load_split_data(snakemake.input.manifest, shards, snakemake.params.classes)
    folds = read_folds(snakemake.input.folds, [*data.guids_train, *data.guids_val]) \
        if selection["method"] == "cv" else None
    record = evaluate_ablation(data, snakemake.wildcards.ablation, spec, snakemake.params.settings, selection, folds,
                               Path(snakemake.input.metrics).parent, threads=snakemake.threads)
    write_text(snakemake.output[0], json.dumps(record, indent=1) + "\n")
