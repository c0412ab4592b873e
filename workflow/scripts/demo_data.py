from pathlib import Path

from mmpipe.ingest.demo import make_demo
from mmpipe.core.runlog import job_log

with job_log(snakemake.log[0]):
    make_demo(Path(snakemake.output.train).parent, n=snakemake.params.n, seed=snakemake.params.seed,
              audio=snakemake.params.audio, video=snakemake.params.video)
