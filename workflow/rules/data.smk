rule demo_data:
    output:
        data=directory(f"{RES}/source/data"),
        train=f"{RES}/source/train.txt",
        test=f"{RES}/source/test_without_label.txt",
    params:
        n=config["demo"]["n"],
        seed=config["demo"]["seed"],
        audio=config["demo"]["audio"],
        video=config["demo"]["video"],
    log:
        f"{LOGS}/demo_data.log",
    threads: res("demo_data", "threads")
    resources:
        mem_mb=res("demo_data", "mem_mb"),
        runtime=res("demo_data", "runtime"),
    conda:
        "../../envs/extract.yaml"
    script:
        "../scripts/demo_data.py"


checkpoint manifest:
    input:
        demo_sources,
    output:
        manifest=f"{RES}/manifest.parquet",
        shards=update(expand(f"{RES}/shards/{{shard}}.parquet", shard=SHARDS)),
        problems=f"{RES}/manifest_problems.json",
    params:
        root=DATA_ROOT,
        settings=manifest_config(),
        sources=sources_digest(),
    log:
        f"{LOGS}/manifest.log",
    benchmark:
        f"{LOGS}/manifest.benchmark.tsv"
    threads: res("manifest", "threads")
    resources:
        mem_mb=res("manifest", "mem_mb"),
        runtime=res("manifest", "runtime"),
    conda:
        "../../envs/extract.yaml"
    script:
        "../scripts/manifest.py"


rule decode_report:
    input:
        manifest=rules.manifest.output.manifest,
        problems=rules.manifest.output.problems,
    output:
        md=f"{RES}/reports/decode.md",  # shown in the HTML report as decode.html (rule decode_html)
        json=f"{RES}/reports/decode.json",
    log:
        f"{LOGS}/decode_report.log",
    threads: res("decode_report", "threads")
    resources:
        mem_mb=res("decode_report", "mem_mb"),
        runtime=res("decode_report", "runtime"),
    conda:
        "../../envs/report.yaml"
    script:
        "../scripts/decode_report.py"


rule folds:
    input:
        manifest=rules.manifest.output.manifest,
    output:
        f"{RES}/folds.parquet",
    params:
        selection=config["selection"],
        seed=config["seed"],
        regression=config["labels"].get("scheme") == "regression",
    log:
        f"{LOGS}/folds.log",
    threads: res("folds", "threads")
    resources:
        mem_mb=res("folds", "mem_mb"),
        runtime=res("folds", "runtime"),
    conda:
        "../../envs/heads.yaml"
    script:
        "../scripts/folds.py"
