from pathlib import Path

from mmpipe.core.runlog import job_log
from mmpipe.reporting.robustness_report import write_robustness

with job_log(snakemake.log[0]):
    write_robustness(Path(snakemake.input.plan), [Path(p) for p in snakemake.input.results],
                     Path(snakemake.output.table), Path(snakemake.output.plot), Path(snakemake.output.md))
