from pathlib import Path

from mmpipe.core.runlog import job_log
from mmpipe.core.shards import read_meta
from mmpipe.fusion.dataset import load_split_data
from mmpipe.inference.bundle import build_bundle

with job_log(snakemake.log[0]) as log:
    features = {}
    for f in snakemake.input.features:
        features.setdefault(Path(f).parent.name, []).append(f)
    adapters = {}
    for d in snakemake.input.adapters:
        adapters.setdefault(Path(d).parent.name, []).append(d)
    meta = {name: read_meta(paths[0]) for name, paths in features.items()}
    load = lambda mods: load_split_data(snakemake.input.manifest, {m: features[m] for m in mods},  # noqa: E731
                                        snakemake.params.classes)
    model = build_bundle(snakemake.input.summary, snakemake.params.config, meta, snakemake.output[0], load,
                         refit=snakemake.params.refit, adapters=adapters,
                         cache={"manifest": snakemake.input.manifest, "features": features},
                         onnx={Path(d).name: d for d in snakemake.input.onnx})
    log.info("model bundle %s: %s", snakemake.output[0], " ".join(model["about"]))
