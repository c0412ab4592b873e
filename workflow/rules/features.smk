rule extract:
    input:
        shard_slice,
    output:
        f"{RES}/features/{{encoder}}/{{shard}}.parquet",
    params:
        spec=lambda wildcards: config["encoders"][wildcards.encoder],
    log:
        f"{LOGS}/extract/{{encoder}}/{{shard}}.log",
    benchmark:
        f"{LOGS}/extract/{{encoder}}/{{shard}}.benchmark.tsv"
    wildcard_constraints:
        encoder="|".join(ENCODERS),
        shard=r"\d+",
    threads: res("extract", "threads")
    resources:
        mem_mb=res("extract", "mem_mb"),
        runtime=res("extract", "runtime"),
        gpu=lambda wildcards: extract_gpu(wildcards).get("gpu"),
        gpu_model=lambda wildcards: extract_gpu(wildcards).get("gpu_model"),
        slurm_extra=lambda wildcards: extract_gpu(wildcards).get("slurm_extra"),
    conda:
        "../../envs/extract.yaml"
    script:
        "../scripts/extract.py"


rule features:
    input:
        expand(f"{RES}/features/{{encoder}}/{{shard}}.parquet", encoder=ENCODERS, shard=SHARDS),
