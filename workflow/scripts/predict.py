import json
from pathlib import Path

from mmpipe.fusion.dataset import load_split_data
from mmpipe.fusion.predict import predict
from mmpipe.core.runlog import job_log

with job_log(snakemake.log[0]) as log:
    summary = json.loads(Path(snakemake.input.summary).read_text())
    chosen = next(a for a in summary["ablations"] if a["name"] == summary["selected"])
    ablation_dir = Path(snakemake.input.summary).parent / "ablations" / chosen["name"]
    shards = {m: [f for f in snakemake.input.features if Path(f).parent.name == m] for m in chosen["modalities"]}
    data = load_split_data(snakemake.input.manifest, shards, snakemake.params.classes)
    log.info("predicting %d test samples with %s (refit=%s)", len(data.guids_test), chosen["name"],
             snakemake.params.refit)
    predict(data, ablation_dir, snakemake.params.refit, Path(snakemake.output.txt), Path(snakemake.output.parquet),
            task=snakemake.params.get("task", "classification"))
