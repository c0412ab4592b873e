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


# Target-only: every HTML page of the report.
rule html:
    input:
        expand(f"{RES}/ablations/{{ablation}}/report.html", ablation=ABLATIONS),
        rules.summary_html.output,
        rules.decode_html.output,
