from mmpipe.core.paths import data_root
from mmpipe.core.runlog import job_log
from mmpipe.encoders.adapt import train_from_manifest

with job_log(snakemake.log[0]):
    p = snakemake.params
    train_from_manifest(snakemake.wildcards.encoder, p.spec, snakemake.input.manifest, snakemake.input.folds,
                        int(snakemake.wildcards.fold), snakemake.output[0], p.classes, p.regression,
                        threads=snakemake.threads, data_root=data_root(snakemake.config))
