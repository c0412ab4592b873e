# mmpipe: frozen encoders once into Parquet feature shards (stage 1), fusion heads many times (stage 2).
from snakemake.utils import min_version

min_version("9.0")


configfile: "config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/features.smk"


rule all:
    input:
        rules.features.input,
        rules.decode_report.output,
    default_target: True
