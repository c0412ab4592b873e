from pathlib import Path

from mmpipe.core.paths import data_root
from mmpipe.core.runlog import job_log
from mmpipe.fusion.predict import write_predictions
from mmpipe.inference.predictor import Predictor, manifest_rows

with job_log(snakemake.log[0]) as log:
    predictor = Predictor(snakemake.input.model, threads=snakemake.threads)
    rows = manifest_rows(snakemake.input.manifest, "test", data_root(snakemake.config))
    log.info("predicting %d test samples with %s", len(rows), predictor.model["selected"])
    pred = predictor.predict_rows(rows)
    log.info("served by %s; cached vectors reused: %s", sorted(set(pred.served_by)), pred.reused)
    write_predictions(pred.guids, pred.outputs, pred.classes, pred.regression, Path(snakemake.output.txt),
                      Path(snakemake.output.parquet))
