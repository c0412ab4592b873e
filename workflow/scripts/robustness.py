import json
from pathlib import Path

from mmpipe.core.atomic import write_text
from mmpipe.core.runlog import job_log
from mmpipe.fusion.cv import load_cv_data
from mmpipe.fusion.robustness import evaluate_ablation

with job_log(snakemake.log[0]):
    spec, selection = snakemake.params.spec, snakemake.params.selection
    data, folds = load_cv_data(snakemake.input.manifest, snakemake.input.features, spec["modalities"],
                               snakemake.params.classes, snakemake.input.folds, selection)
    record = evaluate_ablation(data, snakemake.wildcards.ablation, spec, snakemake.params.settings, selection, folds,
                               Path(snakemake.input.metrics).parent, threads=snakemake.threads)
    write_text(snakemake.output[0], json.dumps(record, indent=1) + "\n")
