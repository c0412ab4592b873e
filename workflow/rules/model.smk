rule model:
    input:
        summary=rules.summary.output.json,
        metrics=rules.summary.input,
        manifest=f"{RES}/manifest.parquet",
        features=expand(f"{RES}/features/{{encoder}}/{{shard}}.parquet", encoder=ENCODERS, shard=SHARDS),
        adapters=expand(f"{RES}/adapters/{{encoder}}/fold{{fold}}", encoder=ADAPTED, fold=FOLDS),
        onnx=expand(f"{RES}/encoders/{{encoder}}", encoder=ONNX_RUNTIME),
    output:
        directory(f"{RES}/model"),
    params:
        config=bundle_config(),
        refit=config["predict"]["refit"],
        classes=config["labels"].get("classes"),
    log:
        f"{LOGS}/model.log",
    threads: res("model", "threads")
    resources:
        mem_mb=res("model", "mem_mb"),
        runtime=res("model", "runtime"),
    conda:
        "../../envs/model.yaml"
    script:
        "../scripts/model.py"


rule predict:
    input:
        model=rules.model.output[0],
        manifest=f"{RES}/manifest.parquet",
    output:
        txt=report(f"{RES}/predictions.txt", category="Predictions"),
        parquet=f"{RES}/predictions.parquet",
    log:
        f"{LOGS}/predict.log",
    threads: res("predict", "threads")
    resources:
        mem_mb=res("predict", "mem_mb"),
        runtime=res("predict", "runtime"),
    conda:
        "../../envs/model.yaml"
    script:
        "../scripts/predict.py"


rule predictions:
    input:
        rules.predict.output,
