from mmpipe.ingest import manifest
from mmpipe.core.runlog import job_log

with job_log(snakemake.log[0]) as log:
    result = manifest.build(snakemake.params.root, snakemake.config, threads=snakemake.threads)
    changed = manifest.write(result, snakemake.output.manifest, list(snakemake.output.shards),
                             snakemake.output.problems)
    log.info("%d samples, %d skipped, %d unlisted files; shards rewritten: %s", result.manifest.height,
             len(result.skipped), len(result.unlisted), changed)
