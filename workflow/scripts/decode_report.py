from mmpipe.reporting.decode_report import decode_report
from mmpipe.core.runlog import job_log

with job_log(snakemake.log[0]):
    decode_report(snakemake.input.manifest, snakemake.input.problems, snakemake.output.md, snakemake.output.json)
