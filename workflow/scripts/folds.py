from mmpipe.core.runlog import job_log
from mmpipe.fusion.cv import write_folds

with job_log(snakemake.log[0]) as log:
    p = snakemake.params
    n = write_folds(snakemake.input.manifest, snakemake.output[0], p.selection, p.seed, p.regression)
    log.info("%d labelled samples in %s folds x %s repeats", n, p.selection["folds"], p.selection["repeats"])
