# classification, or regression on a score (labels.scheme: regression, e.g. CMU-MOSI sentiment)
TASK = "regression" if config["labels"].get("scheme") == "regression" else "classification"


rule ablation:
    input:
        manifest=f"{RES}/manifest.parquet",
        folds=rules.folds.output[0],
        features=ablation_features,
        tuning=ablation_tuning,
    output:
        # shown in the HTML report as report.html (rule ablation_html), its figures embedded
        report=f"{RES}/ablations/{{ablation}}/report.md",
        metrics=f"{RES}/ablations/{{ablation}}/metrics.json",
        tensorboard=directory(f"{RES}/tensorboard/{{ablation}}"),
        confusion=report(
            f"{RES}/ablations/{{ablation}}/confusion.png",
            category="Ablations",
            subcategory="{ablation}",
            labels={"ablation": "{ablation}", "figure": "confusion matrix"},
            caption="../report/confusion.rst",
        ),
        curve=report(
            f"{RES}/ablations/{{ablation}}/curve.png",
            category="Ablations",
            subcategory="{ablation}",
            labels={"ablation": "{ablation}", "figure": "training curve"},
            caption="../report/curve.rst",
        ),
    params:
        spec=lambda wildcards: ABLATIONS[wildcards.ablation],
        classes=config["labels"].get("classes"),
        task=TASK,
        selection=config["selection"],
    log:
        f"{LOGS}/ablation/{{ablation}}.log",
    benchmark:
        f"{LOGS}/ablation/{{ablation}}.benchmark.tsv"
    wildcard_constraints:
        ablation="|".join(map(re.escape, ABLATIONS)),
    threads: res("ablation", "threads")
    resources:
        mem_mb=res("ablation", "mem_mb"),
        runtime=res("ablation", "runtime"),
    conda:
        "../../envs/heads.yaml"
    script:
        "../scripts/ablation.py"


rule summary:
    input:
        expand(f"{RES}/ablations/{{ablation}}/metrics.json", ablation=ABLATIONS),
    output:
        md=f"{RES}/report.md",  # shown in the HTML report as summary.html (rule summary_html)
        json=f"{RES}/summary.json",
        cost=report(f"{RES}/cost.png", category="Cost", caption="../report/cost.rst"),
    params:
        select=config["predict"]["select"],
        select_among=config["predict"]["select_among"],
        metric=config["selection"]["metric"],
    log:
        f"{LOGS}/summary.log",
    threads: res("summary", "threads")
    resources:
        mem_mb=res("summary", "mem_mb"),
        runtime=res("summary", "runtime"),
    conda:
        "../../envs/report.yaml"
    script:
        "../scripts/summary.py"


rule ablations:
    input:
        expand(f"{RES}/ablations/{{ablation}}/report.md", ablation=ABLATIONS),
        rules.summary.output,

