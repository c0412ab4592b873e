from mmpipe.reports import decode_report
from mmpipe.runlog import job_log

with job_log(snakemake.log[0]):
    decode_report(snakemake.input.manifest, snakemake.input.problems, snakemake.output.md, snakemake.output.json)
