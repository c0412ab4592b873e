from mmpipe.core.runlog import job_log
from mmpipe.encoders.text_onnx import export_logged

with job_log(snakemake.log[0]):
    export_logged(snakemake.wildcards.encoder, snakemake.params.spec, snakemake.output[0], threads=snakemake.threads)
