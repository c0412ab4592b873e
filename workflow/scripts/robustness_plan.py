import json

from mmpipe.core.atomic import write_text
from mmpipe.core.runlog import job_log
from mmpipe.fusion.robustness import plan

with job_log(snakemake.log[0]):
    selected = json.loads(open(snakemake.input.summary, encoding="utf-8").read())["selected"]
    write_text(snakemake.output[0], json.dumps(plan(snakemake.params.grid, selected), indent=1) + "\n")
