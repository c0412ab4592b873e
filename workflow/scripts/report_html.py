from pathlib import Path

from mmpipe.core.runlog import job_log
from mmpipe.reporting.html import markdown_to_html

with job_log(snakemake.log[0]):
    markdown_to_html(Path(snakemake.input.md), Path(snakemake.output[0]), snakemake.params.title)
