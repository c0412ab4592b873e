# The HTML report (`snakemake --report report.html`): the Markdown summary and ablation reports as HTML pages with
# their figures embedded, which the report shows inline (a .md would only be offered as a download).
from mmpipe.reporting.html import summary_labels


rule ablation_html:
    input:
        md=f"{RES}/ablations/{{ablation}}/report.md",
        metrics=f"{RES}/ablations/{{ablation}}/metrics.json",
        confusion=f"{RES}/ablations/{{ablation}}/confusion.png",
        curve=f"{RES}/ablations/{{ablation}}/curve.png",
    output:
        report(
            f"{RES}/ablations/{{ablation}}/report.html",
            category="Ablations",
            subcategory="{ablation}",
            labels={"ablation": "{ablation}", "figure": "report"},
            caption="../report/ablation.rst",
        ),
    params:
        title=lambda wildcards: f"Ablation {wildcards.ablation}",
    log:
        f"{LOGS}/report_html/{{ablation}}.log",
    wildcard_constraints:
        ablation="|".join(map(re.escape, ABLATIONS)),
    threads: res("ablation_html", "threads")
    resources:
        mem_mb=res("ablation_html", "mem_mb"),
        runtime=res("ablation_html", "runtime"),
    conda:
        "../../envs/report.yaml"
    script:
        "../scripts/report_html.py"


rule summary_html:
    input:
        md=f"{RES}/report.md",
        json=f"{RES}/summary.json",
        cost=f"{RES}/cost.png",
    output:
        report(
            f"{RES}/summary.html",
            category="Summary",
            # read from summary.json when the report is built (after the run): data set, selected ablation, score
            labels=lambda wildcards, input: summary_labels(input.json, DS),
            caption="../report/summary.rst",
        ),
    params:
        title=f"Ablation summary: {DS}",
    log:
        f"{LOGS}/report_html/summary.log",
    threads: res("summary_html", "threads")
    resources:
        mem_mb=res("summary_html", "mem_mb"),
        runtime=res("summary_html", "runtime"),
    conda:
        "../../envs/report.yaml"
    script:
        "../scripts/report_html.py"


rule decode_html:
    input:
        md=rules.decode_report.output.md,
    output:
        report(f"{RES}/reports/decode.html", category="Data", caption="../report/decode.rst"),
    params:
        title=f"Decoding: {DS}",
    log:
        f"{LOGS}/report_html/decode.log",
    threads: res("decode_html", "threads")
    resources:
        mem_mb=res("decode_html", "mem_mb"),
        runtime=res("decode_html", "runtime"),
    conda:
        "../../envs/report.yaml"
    script:
        "../scripts/report_html.py"


rule tuning_html:
    input:
        md=f"{RES}/tuning/{{variant}}/report.md",
        best=f"{RES}/tuning/{{variant}}/best.json",
    output:
        report(
            f"{RES}/tuning/{{variant}}/report.html",
            category="Tuning",
            subcategory="{variant}",
            labels={"head": "{variant}", "figure": "report"},
            caption="../report/tuning.rst",
        ),
    params:
        title=lambda wildcards: f"Tuning {wildcards.variant}",
    log:
        f"{LOGS}/report_html/tuning_{{variant}}.log",
    wildcard_constraints:
        variant="|".join(map(re.escape, TUNING)) or "^$",
    threads: res("tuning_html", "threads")
    resources:
        mem_mb=res("tuning_html", "mem_mb"),
        runtime=res("tuning_html", "runtime"),
    conda:
        "../../envs/report.yaml"
    script:
        "../scripts/report_html.py"


rule robustness_html:
    input:
        md=rules.robustness_report.output.md,
        plot=rules.robustness_report.output.plot,
    output:
        report(f"{RES}/robustness/report.html", category="Robustness", caption="../report/robustness_report.rst"),
    params:
        title=f"Robustness: {DS}",
    log:
        f"{LOGS}/report_html/robustness.log",
    threads: res("robustness_html", "threads")
    resources:
        mem_mb=res("robustness_html", "mem_mb"),
        runtime=res("robustness_html", "runtime"),
    conda:
        "../../envs/report.yaml"
    script:
        "../scripts/report_html.py"


# Target-only: every HTML page of the report (the tuning pages of the heads whose ablations use their study).
rule html:
    input:
        expand(f"{RES}/ablations/{{ablation}}/report.html", ablation=ABLATIONS),
        rules.summary_html.output,
        rules.decode_html.output,
        expand(f"{RES}/tuning/{{variant}}/report.html", variant=TUNED),
