# Robustness to missing and noisy modalities (`snakemake robustness`): one job per evaluated ablation, refitted
# per fold and scored on corrupted held-out rows (mmpipe/fusion/robustness.py); which ablations, once the summary
# has selected one (checkpoint robustness_plan); then the table, plot and report.
from mmpipe.fusion.robustness import evaluable as robustness_evaluable
from mmpipe.fusion.robustness import settings as robustness_settings

try:
    ROBUSTNESS = robustness_settings(config)
except MmpipeError as exc:
    sys.exit(f"mmpipe: {exc}")

# Literal sizes, overridable under the config's `resources:` like every rule's.
ROBUSTNESS_RES = {
    rule_name: {k: config["resources"].get(rule_name, {}).get(k, v) for k, v in sizes.items()}
    for rule_name, sizes in {
        "robustness_eval": dict(threads=1, mem_mb=3000, runtime=60),
        "robustness_plan": dict(threads=1, mem_mb=1000, runtime=5),
        "robustness_report": dict(threads=1, mem_mb=1000, runtime=5),
    }.items()
}


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
        ablation="|".join(map(re.escape, robustness_evaluable(ABLATIONS))) or "^$",
    threads: ROBUSTNESS_RES["robustness_eval"]["threads"]
    resources:
        mem_mb=ROBUSTNESS_RES["robustness_eval"]["mem_mb"],
        runtime=ROBUSTNESS_RES["robustness_eval"]["runtime"],
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
    threads: ROBUSTNESS_RES["robustness_plan"]["threads"]
    resources:
        mem_mb=ROBUSTNESS_RES["robustness_plan"]["mem_mb"],
        runtime=ROBUSTNESS_RES["robustness_plan"]["runtime"],
    conda:
        "../../envs/heads.yaml"
    script:
        "../scripts/robustness_plan.py"


rule robustness_report:
    input:
        plan=f"{RES}/robustness/plan.json",
        # the per-ablation records the plan asks for (known once the summary has selected an ablation)
        results=lambda wildcards: expand(
            f"{RES}/robustness/{{ablation}}.json",
            ablation=json.loads(Path(checkpoints.robustness_plan.get().output[0]).read_text())["ablations"],
        ),
    output:
        table=report(f"{RES}/robustness/table.csv", category="Robustness", caption="../report/robustness_table.rst"),
        plot=report(f"{RES}/robustness/robustness.png", category="Robustness", caption="../report/robustness.rst"),
        md=report(f"{RES}/robustness/report.md", category="Robustness", caption="../report/robustness_report.rst"),
    log:
        f"{LOGS}/robustness/report.log",
    threads: ROBUSTNESS_RES["robustness_report"]["threads"]
    resources:
        mem_mb=ROBUSTNESS_RES["robustness_report"]["mem_mb"],
        runtime=ROBUSTNESS_RES["robustness_report"]["runtime"],
    conda:
        "../../envs/report.yaml"
    script:
        "../scripts/robustness_report.py"


rule robustness:
    input:
        rules.robustness_report.output,
