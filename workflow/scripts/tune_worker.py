import json
import logging
from pathlib import Path

from mmpipe.core.atomic import write_text
from mmpipe.core.runlog import job_log
from mmpipe.fusion.dataset import by_modality, load_split_data
from mmpipe.fusion.tune import run_worker

with job_log(snakemake.log[0]):
    spec = snakemake.params.spec
    shards = by_modality(snakemake.input.features, spec["modalities"])
    data = load_split_data(snakemake.input.manifest, shards, snakemake.params.classes)
    spec = {**spec, "params": {**spec["params"], "threads": snakemake.threads}}
    record = run_worker(Path(snakemake.params.journal), spec, snakemake.params.tuning, snakemake.params.metric, data,
                        snakemake.params.task, list(data.classes), worker=int(snakemake.wildcards.worker),
                        log=logging.getLogger("mmpipe.tune"))
    write_text(snakemake.output[0], json.dumps(record, indent=1) + "\n")
