# Robustness to missing and noisy modalities (`snakemake robustness`): one job per evaluated ablation, refitted
# per fold and scored on corrupted held-out rows (mmpipe/fusion/robustness.py); which ablations, once the summary
# has selected one (checkpoint robustness_plan); then the table, plot and report.
rule robustness_eval:
    input:
        manifest=f"{RES}/manifest.parquet",
        folds=rules.folds.output[0],
        features=ablation_features,
        metrics=f"{RES}/ablations/{{ablation}}/metrics.json",
    output:
        f"{RES}/robustness/{{ablation}}.json",
    params:
        spec=lambda wildcards: ABLATIONS[wildcards.ablation],
        classes=config["labels"].get("classes"),
        selection=config["selection"],
        settings=ROBUSTNESS,
    log:
        f"{LOGS}/robustness/{{ablation}}.log",
    benchmark:
        f"{LOGS}/robustness/{{ablation}}.benchmark.tsv"
    wildcard_constraints:
        ablation="|".join(map(re.escape, ROBUSTNESS_EVALUABLE)) or "^$",
    threads: res("robustness_eval", "threads")
    resources:
        mem_mb=res("robustness_eval", "mem_mb"),
        runtime=res("robustness_eval", "runtime"),
    conda:
        "../../envs/heads.yaml"
    script:
        "../scripts/robustness.py"


checkpoint robustness_plan:
    input:
        summary=rules.summary.output.json,
    output:
        f"{RES}/robustness/plan.json",
    params:
        grid={n: {k: s[k] for k in ("head", "variant", "modalities")} for n, s in ABLATIONS.items()},
    log:
        f"{LOGS}/robustness/plan.log",
    threads: res("robustness_plan", "threads")
    resources:
        mem_mb=res("robustness_plan", "mem_mb"),
        runtime=res("robustness_plan", "runtime"),
    conda:
        "../../envs/heads.yaml"
    script:
        "../scripts/robustness_plan.py"


rule robustness_report:
    input:
        plan=f"{RES}/robustness/plan.json",
        results=robustness_results,
    output:
        table=report(f"{RES}/robustness/table.csv", category="Robustness", caption="../report/robustness_table.rst"),
        plot=report(f"{RES}/robustness/robustness.png", category="Robustness", caption="../report/robustness.rst"),
        md=f"{RES}/robustness/report.md",  # shown in the HTML report as report.html (rule robustness_html)
    log:
        f"{LOGS}/robustness/report.log",
    threads: res("robustness_report", "threads")
    resources:
        mem_mb=res("robustness_report", "mem_mb"),
        runtime=res("robustness_report", "runtime"),
    conda:
        "../../envs/report.yaml"
    script:
        "../scripts/robustness_report.py"


rule robustness:
    input:
        rules.robustness_report.output,
        f"{RES}/robustness/report.html",
