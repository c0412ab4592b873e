import json
from pathlib import Path

from mmpipe.core.atomic import write_text
from mmpipe.core.runlog import job_log
from mmpipe.fusion.tune import study_record
from mmpipe.reporting.tuning_report import tuning_figures, tuning_markdown

with job_log(snakemake.log[0]):
    workers = [json.loads(Path(p).read_text()) for p in snakemake.input]
    journal, name = Path(workers[0]["journal"]), workers[0]["study"]
    record = study_record(journal, name, snakemake.params.spec, snakemake.params.tuning, snakemake.params.metric)
    record["workers"] = workers
    tuning_figures(journal, name, Path(snakemake.output.history), Path(snakemake.output.importances),
                   snakemake.params.metric)
    write_text(snakemake.output.md, tuning_markdown(record, Path(snakemake.output.md)))
    write_text(snakemake.output.best, json.dumps(record, indent=1) + "\n")
