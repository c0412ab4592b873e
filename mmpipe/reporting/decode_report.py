"""Stage 1 reports: how the texts were decoded and which samples were left out."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl

from mmpipe.core.atomic import write_text
from mmpipe.ingest.decode import encoding_family


def decode_summary(manifest: pl.DataFrame) -> dict:
    """Counts per encoding and per family (gbk/gb2312 count as gb18030), and the lossy files."""
    texts = manifest.filter(pl.col("text_encoding").is_not_null())
    counts = dict(sorted(texts.group_by("text_encoding").len().iter_rows(), key=lambda kv: -kv[1]))
    family: dict[str, int] = {}
    for enc, n in counts.items():
        fam = encoding_family(enc)
        family[fam] = family.get(fam, 0) + n
    lossy = texts.filter(pl.col("text_lossy"))["guid"].to_list()
    return {"samples": manifest.height, "texts": texts.height, "encodings": counts, "families": family,
            "lossy": lossy, "splits": dict(manifest.group_by("split").len().sort("split").iter_rows())}


def decode_report(manifest_path: str | Path, problems_path: str | Path, out_md: str | Path,
                  out_json: str | Path) -> dict:
    """Write the decode report as Markdown and JSON; returns the JSON content."""
    summary = decode_summary(pl.read_parquet(manifest_path))
    problems = json.loads(Path(problems_path).read_text())
    summary["skipped"] = problems["skipped"]
    summary["unlisted_files"] = len(problems["unlisted"])
    summary["multi_frame_images"] = problems.get("multi_frame_images", [])
    lines = ["# Decode report", "",
             f"{summary['samples']} samples in the manifest ({', '.join(f'{k}: {v}' for k, v in summary['splits'].items())}); "
             f"{summary['texts']} text files decoded.", "",
             "| encoding | files |", "|---|---:|"]
    lines += [f"| {enc} | {n} |" for enc, n in summary["encodings"].items()]
    lines += ["", "| family | files |", "|---|---:|"]
    lines += [f"| {fam} | {n} |" for fam, n in summary["families"].items()]
    lines += ["", f"**Lossy decodes** (replacement characters inserted): {len(summary['lossy'])}"]
    lines += [f"- guid {g}" for g in summary["lossy"]]
    lines += ["", f"**Skipped samples**: {len(summary['skipped'])}"]
    lines += [f"- `{Path(p['file']).name}:{p['line']}` {p['problem']}" for p in summary["skipped"]]
    lines += ["", f"**Files in the data folder that no list names** (not encoded): {summary['unlisted_files']}"]
    lines += ["", f"**Images with several frames** (animated; encoded from their first frame): "
                  f"{len(summary['multi_frame_images'])}"]
    lines += [f"- `{p}`" for p in summary["multi_frame_images"]]
    write_text(out_md, "\n".join(lines) + "\n")
    write_text(out_json, json.dumps(summary, indent=1, ensure_ascii=False))
    return summary
