from mmpipe.encoders.extract import extract_shard
from mmpipe.core.paths import data_root
from mmpipe.core.runlog import job_log

with job_log(snakemake.log[0]):
    extract_shard(snakemake.input.slice, snakemake.wildcards.encoder, snakemake.params.spec, snakemake.output[0],
                  data_root=data_root(snakemake.config), threads=snakemake.threads,
                  adapters=list(snakemake.input.get("adapters", [])) or None, folds=snakemake.input.get("folds"), onnx=snakemake.input.get("onnx"))
