rule adapter:
    input:
        manifest=f"{RES}/manifest.parquet",
        folds=rules.folds.output[0],
    output:
        directory(f"{RES}/adapters/{{encoder}}/fold{{fold}}"),
    params:
        spec=lambda wildcards: config["encoders"][wildcards.encoder],
        classes=config["labels"].get("classes"),
        regression=config["labels"].get("scheme") == "regression",
    log:
        f"{LOGS}/adapter/{{encoder}}/fold{{fold}}.log",
    benchmark:
        f"{LOGS}/adapter/{{encoder}}/fold{{fold}}.benchmark.tsv"
    wildcard_constraints:
        encoder="|".join(ADAPTED) or "^$",
        fold=r"\d+",
    threads: res("adapter", "threads")
    resources:
        mem_mb=res("adapter", "mem_mb"),
        runtime=res("adapter", "runtime"),
        gpu=lambda wildcards: extract_gpu(wildcards).get("gpu"),
        gpu_model=lambda wildcards: extract_gpu(wildcards).get("gpu_model"),
        slurm_extra=lambda wildcards: extract_gpu(wildcards).get("slurm_extra"),
    conda:
        "../../envs/extract.yaml"
    script:
        "../scripts/adapter.py"


rule encoder_onnx:
    output:
        directory(f"{RES}/encoders/{{encoder}}"),
    params:
        spec=lambda wildcards: config["encoders"][wildcards.encoder],
    log:
        f"{LOGS}/encoder_onnx/{{encoder}}.log",
    benchmark:
        f"{LOGS}/encoder_onnx/{{encoder}}.benchmark.tsv"
    wildcard_constraints:
        encoder="|".join(ONNX_RUNTIME) or "^$",
    threads: res("encoder_onnx", "threads")
    resources:
        mem_mb=res("encoder_onnx", "mem_mb"),
        runtime=res("encoder_onnx", "runtime"),
    conda:
        "../../envs/extract.yaml"
    script:
        "../scripts/encoder_onnx.py"


rule extract:
    input:
        unpack(extract_inputs),
    output:
        # update(): the job reads its earlier shard and re-encodes only new or changed samples.
        update(f"{RES}/features/{{encoder}}/{{shard}}.parquet"),
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
