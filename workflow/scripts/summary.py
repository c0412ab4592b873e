from pathlib import Path

from mmpipe.core.runlog import job_log
from mmpipe.reporting.summary import summarize

with job_log(snakemake.log[0]):
    summarize([Path(p) for p in snakemake.input], Path(snakemake.output.md), Path(snakemake.output.json),
              select=snakemake.params.select, metric=snakemake.params.metric,
              select_among=snakemake.params.select_among, out_cost_png=Path(snakemake.output.cost))
