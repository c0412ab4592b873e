rule extract:
    input:
        shard_slice,
    output:
        f"{RES}/features/{{encoder}}/{{shard}}.parquet",
    params:
        spec=lambda wildcards: config["encoders"][wildcards.encoder],
    log:
        f"{LOGS}/extract/{{encoder}}/{{shard}}.log",
    wildcard_constraints:
        encoder="|".join(ENCODERS),
        shard=r"\d+",
    threads: res("extract", "threads")
    resources:
        mem_mb=res("extract", "mem_mb"),
        runtime=res("extract", "runtime"),
    conda:
        "../../envs/extract.yaml"
    script:
        "../scripts/extract.py"


rule features:
    input:
        expand(f"{RES}/features/{{encoder}}/{{shard}}.parquet", encoder=ENCODERS, shard=SHARDS),
