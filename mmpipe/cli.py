"""The ``mmpipe`` command: ``--version``, ``check CONFIG`` (the workflow's planning-time checks, without
Snakemake), ``demo OUT`` (write the generated demo set in the lab layout), and the trained model's uses:
``predict BUNDLE INPUT...``, ``serve BUNDLE`` and ``export BUNDLE --onnx OUT``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mmpipe import __version__
from mmpipe.core.errors import MmpipeError


def _check(args: argparse.Namespace) -> int:
    from mmpipe.checks import check_file
    from mmpipe.fusion.grid import ablation_grid

    config = check_file(args.config)
    grid = ablation_grid(config)
    print(f"{args.config}: ok (layout {config['layout']}, {len(config['encoders'])} encoder(s): "
          f"{', '.join(config['encoders'])}; {len(grid)} ablation(s))")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from mmpipe.ingest.demo import make_demo

    out = make_demo(Path(args.out), n=args.n, seed=args.seed, audio=args.audio, video=args.video)
    print(f"wrote the demo set ({args.n} samples) to {out}; run it with: "
          f"snakemake --cores 8 predictions --config data={out}")
    return 0


def _predict(args: argparse.Namespace) -> int:
    from mmpipe.inference.inputs import one_sample, read_input
    from mmpipe.inference.predictor import Predictor
    from mmpipe.inference.writers import write_table

    predictor = Predictor(args.bundle, threads=args.threads, use_cache=not args.no_cache, runtime=args.runtime,
                          onnx_dir=args.onnx)
    samples = [s for path in args.inputs for s in read_input(path, predictor.config, split=args.split)]
    if any(v is not None for v in (args.text, args.text_file, args.image, args.audio, args.video)):
        samples.append(one_sample(args.guid, args.text, args.text_file, args.image, args.audio, args.video))
    elif not samples:
        samples.append(one_sample())  # raises: nothing to predict
    pred, bad = predictor.predict_samples(samples, progress=len(samples) >= 100, skip_bad=args.skip_bad)
    for problem in bad:
        print(f"mmpipe: skipped {problem}", file=sys.stderr)
    records = pred.records() + [{"guid": p.guid, "tag": None, "error": str(p)} for p in bad]
    if args.output:
        write_table(records, Path(args.output))
        print(f"wrote {len(pred.guids)} prediction(s) to {args.output}"
              + (f"; {len(bad)} bad sample(s) left without a tag" if bad else ""), file=sys.stderr)
    else:
        print("guid,tag")
        for g, t in zip(pred.guids, pred.tags):
            print(f"{g},{t}")
    return 1 if bad else 0


def _serve(args: argparse.Namespace) -> int:
    from mmpipe.inference.server import serve

    serve(args.bundle, host=args.host, port=args.port, max_body=int(args.max_body_mb * 2**20), threads=args.threads)
    return 0


def _export(args: argparse.Namespace) -> int:
    from mmpipe.inference.onnx_export import export_bundle

    written = export_bundle(Path(args.bundle), Path(args.onnx))
    print(f"wrote {args.onnx}: {', '.join(p.name for p in written)}")
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mmpipe", description="Multimodal sentiment pipeline (Snakemake-driven).")
    p.add_argument("--version", action="version", version=f"mmpipe {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    check = sub.add_parser("check", help="check a config as `snakemake -n` would, naming each bad key")
    check.add_argument("config", help="a YAML config, e.g. config.yaml")
    check.set_defaults(run=_check)

    demo = sub.add_parser("demo", help="write the generated demo set (lab layout) to a folder")
    demo.add_argument("out", help="the folder to write (created when missing)")
    demo.add_argument("--n", type=int, default=None, help="listed samples (default: the config schema's demo.n)")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--audio", action="store_true", help="also write data/<guid>.wav")
    demo.add_argument("--video", action="store_true", help="also write data/<guid>.mp4")
    demo.set_defaults(run=_demo)

    pr = sub.add_parser("predict", help="predict new raw samples with a model bundle (results/<ds>/model)")
    pr.add_argument("bundle", help="a model bundle folder, e.g. results/demo/model")
    pr.add_argument("inputs", nargs="*", metavar="INPUT",
                    help="a folder in the bundle's layout (its test list), a folder of loose files paired by stem "
                         "(3.txt + 3.jpg), or a CSV/TSV/JSONL table with columns guid, text or text_file, image, ...")
    pr.add_argument("-o", "--output", help="write guid, tag and the probabilities to .csv, .jsonl or .parquet "
                                           "(default: guid,tag on stdout)")
    pr.add_argument("--text", help="one sample's text")
    pr.add_argument("--text-file", help="one sample's text file (decoded as in training)")
    pr.add_argument("--image", help="one sample's image")
    pr.add_argument("--audio", help="one sample's audio")
    pr.add_argument("--video", help="one sample's video")
    pr.add_argument("--guid", help="the guid of the one sample (default: its file name stem)")
    pr.add_argument("--split", default="test", choices=("test", "train", "val", "all"),
                    help="which listed samples of a layout folder to predict (default: test)")
    pr.add_argument("--skip-bad", action="store_true",
                    help="predict the good samples and list the bad ones (tag empty, exit status 1) instead of "
                         "stopping at them")
    pr.add_argument("--no-cache", action="store_true", help="encode every sample, even one the run has cached")
    pr.add_argument("--runtime", default="torch", choices=("torch", "onnx"),
                    help="onnx: the heads exported by `mmpipe export` (onnxruntime)")
    pr.add_argument("--threads", type=int, default=None, help="torch threads for the encoders")
    pr.add_argument("--onnx", default=None, help="the folder `mmpipe export --onnx` wrote (default: BUNDLE/onnx)")
    pr.set_defaults(run=_predict)

    sv = sub.add_parser("serve", help="serve a model bundle over HTTP (POST /predict, GET /health, GET /model)")
    sv.add_argument("bundle", help="a model bundle folder, e.g. results/demo/model")
    sv.add_argument("--host", default="127.0.0.1")
    sv.add_argument("--port", type=int, default=8000)
    sv.add_argument("--max-body-mb", type=float, default=10.0, help="larger requests get 413 (default: 10)")
    sv.add_argument("--threads", type=int, default=None, help="torch threads for the encoders")
    sv.set_defaults(run=_serve)

    ex = sub.add_parser("export", help="export a model bundle's heads (and text encoder) to ONNX")
    ex.add_argument("bundle", help="a model bundle folder, e.g. results/demo/model")
    ex.add_argument("--onnx", required=True, metavar="OUT", help="the folder to write, e.g. results/demo/model/onnx")
    ex.set_defaults(run=_export)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if getattr(args, "n", "absent") is None:
        from mmpipe.core.config import load_schema

        args.n = load_schema()["properties"]["demo"]["properties"]["n"]["default"]
    try:
        return args.run(args)
    except MmpipeError as exc:
        print(f"mmpipe: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
