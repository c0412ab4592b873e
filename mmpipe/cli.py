"""The ``mmpipe`` command: ``--version``, ``check CONFIG`` (the workflow's planning-time checks, without
Snakemake) and ``demo OUT`` (write the generated demo set in the lab layout)."""

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
