# Optuna studies of the heads' hyperparameters on the training split (see mmpipe.fusion.tune). Each study is
# shared by `tuning.workers` jobs through its journal file, which outlives the jobs, so a killed study resumes.


rule tune_worker:
    input:
        manifest=f"{RES}/manifest.parquet",
        features=tuning_features,
    output:
        f"{RES}/tuning/{{variant}}/worker{{worker}}.json",
    params:
        spec=lambda wildcards: TUNING[wildcards.variant],
        tuning=tuning_settings(),
        metric=SELECTION_METRIC,
        classes=config["labels"].get("classes"),
        task=TASK,
        journal=lambda wildcards: f"{RES}/tuning/{wildcards.variant}/study.journal",
    log:
        f"{LOGS}/tuning/{{variant}}/worker{{worker}}.log",
    wildcard_constraints:
        variant="|".join(map(re.escape, TUNING)) or "^$",
        worker=r"\d+",
    threads: res("tune_worker", "threads")
    resources:
        mem_mb=res("tune_worker", "mem_mb"),
        runtime=res("tune_worker", "runtime"),
    conda:
        "../../envs/heads.yaml"
    script:
        "../scripts/tune_worker.py"


rule tune_report:
    input:
        expand(f"{RES}/tuning/{{{{variant}}}}/worker{{worker}}.json", worker=TUNING_WORKERS),
    output:
        best=f"{RES}/tuning/{{variant}}/best.json",
        md=f"{RES}/tuning/{{variant}}/report.md",
        history=report(
            f"{RES}/tuning/{{variant}}/history.png",
            category="Tuning",
            subcategory="{variant}",
            labels={"head": "{variant}", "figure": "optimisation history"},
            caption="../report/tuning.rst",
        ),
        importances=report(
            f"{RES}/tuning/{{variant}}/importances.png",
            category="Tuning",
            subcategory="{variant}",
            labels={"head": "{variant}", "figure": "parameter importances"},
            caption="../report/tuning.rst",
        ),
    params:
        spec=lambda wildcards: TUNING[wildcards.variant],
        tuning=tuning_settings(),
        metric=SELECTION_METRIC,
    log:
        f"{LOGS}/tuning/{{variant}}/report.log",
    wildcard_constraints:
        variant="|".join(map(re.escape, TUNING)) or "^$",
    threads: res("tune_report", "threads")
    resources:
        mem_mb=res("tune_report", "mem_mb"),
        runtime=res("tune_report", "runtime"),
    conda:
        "../../envs/heads.yaml"
    script:
        "../scripts/tune_report.py"


rule tune:
    input:
        expand(f"{RES}/tuning/{{variant}}/{{page}}", variant=TUNING, page=["best.json", "report.html"]),
