# mmpipe: frozen encoders once into Parquet feature shards (stage 1), fusion heads many times (stage 2).
from snakemake.utils import min_version

min_version("9.0")


# config.yaml is the default; a --configfile given on the command line (e.g. config/examples/mosi.yaml) replaces it
# rather than being merged into it, so an example's encoders and heads are exactly its own.
if not workflow.config_settings.configfiles:

    configfile: "config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/features.smk"
include: "workflow/rules/heads.smk"
include: "workflow/rules/model.smk"
include: "workflow/rules/tune.smk"
include: "workflow/rules/robustness.smk"
include: "workflow/rules/report.smk"


# Target-only rules: no job of their own, never sent to a cluster.
localrules:
    all,
    features,
    ablations,
    predictions,
    robustness,
    tune,
    html,


rule all:
    input:
        rules.decode_report.output,
        rules.ablations.input,
        rules.predictions.input,
        rules.model.output,
        rules.html.input,
    default_target: True


onsuccess:
    liverun.release()
    print_digest()


onerror:
    liverun.release()
    runlog.at_exit(print_job_errors)  # after Snakemake's closing lines: the console ends with the mmpipe errors
