"""Markdown reports as self-contained HTML pages for ``snakemake --report``.

The report shows an HTML result in an iframe loaded from a data URI, where relative paths resolve to nothing:
so every image the Markdown links (``confusion.png`` beside an ablation's ``report.md``) is embedded as a base64
data URI, and a link to another local file (a ``report.md``, a ``model_seed0.pt``) keeps its text but loses the
link. Links with a scheme (``https:``) and anchors are left as they are.

``summary_labels`` gives the few facts of ``summary.json`` (data set, selected ablation, its score) that the
report's result table and workflow description show.
"""

from __future__ import annotations

import base64
import html
import json
import mimetypes
import re
import xml.etree.ElementTree as etree
from pathlib import Path
from typing import Any

import markdown
from markdown.extensions import Extension
from markdown.treeprocessors import Treeprocessor

from mmpipe.core.atomic import write_text

EXTENSIONS = ["tables", "fenced_code", "sane_lists"]
METRIC_WORDS = {"macro_f1": "macro-F1", "weighted_f1": "weighted-F1", "mae": "MAE"}
_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")
STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em auto; max-width: 72em; padding: 0 1em; color: #1e293b;
       background: #fff; line-height: 1.45; }
table { border-collapse: collapse; margin: 0.8em 0; font-size: 0.92em; }
th, td { border: 1px solid #cbd5e1; padding: 0.25em 0.6em; text-align: left; }
th { background: #f1f5f9; }
tr:nth-child(even) td { background: #f8fafc; }
code { background: #f1f5f9; padding: 0 0.2em; border-radius: 3px; }
img { max-width: 100%; height: auto; display: block; margin: 0.5em 0; }
"""


def data_uri(path: Path) -> str:
    """``path`` as a base64 ``data:`` URI (the MIME type from its suffix)."""
    mime = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return f"data:{mime};base64,{base64.b64encode(path.read_bytes()).decode('ascii')}"


def _local(ref: str) -> bool:
    return bool(ref) and not ref.startswith(("#", "/")) and not _SCHEME.match(ref)


class _Inline(Treeprocessor):
    """Embed local images; unlink links to local files (they do not resolve inside the report)."""

    def __init__(self, md: markdown.Markdown, base: Path):
        super().__init__(md)
        self.base = base

    def run(self, root: etree.Element) -> None:
        for img in root.iter("img"):
            src = img.get("src", "")
            if _local(src):
                path = self.base / src
                if not path.is_file():
                    raise FileNotFoundError(f"{path}: figure linked by the report is missing")
                img.set("src", data_uri(path))
        for a in root.iter("a"):
            if _local(a.get("href", "")):
                a.tag = "span"
                a.attrib.pop("href")


class _InlineExtension(Extension):
    def __init__(self, base: Path):
        super().__init__()
        self.base = base

    def extendMarkdown(self, md: markdown.Markdown) -> None:  # noqa: N802 (the markdown API's name)
        md.treeprocessors.register(_Inline(md, self.base), "mmpipe_inline", 0)


def render_html(text: str, base: Path, title: str) -> str:
    """A standalone HTML page of Markdown ``text`` whose relative paths start at ``base``."""
    body = markdown.markdown(text, extensions=[*EXTENSIONS, _InlineExtension(base)], output_format="html")
    return (f'<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<title>{html.escape(title)}</title>\n'
            f"<style>{STYLE}</style>\n</head>\n<body>\n{body}\n</body>\n</html>\n")


def markdown_to_html(md_path: Path, out_path: Path, title: str) -> None:
    """Render the Markdown report ``md_path`` to ``out_path`` (atomically), its figures embedded."""
    md_path = Path(md_path)
    write_text(out_path, render_html(md_path.read_text(encoding="utf-8"), md_path.parent, title))


def _fmt(score: dict[str, float] | None) -> str:
    if not score:
        return "—"
    std = score.get("std")
    return f"{score['mean']:.3f}" + ("" if std is None else f" ± {std:.3f}")


def summary_labels(summary_json: Path, dataset: str) -> dict[str, str]:
    """Report labels of the summary page: data set, selected ablation, its head and modalities, and its score
    on the selection metric (mean ± std, the split that ranked it)."""
    s: dict[str, Any] = json.loads(Path(summary_json).read_text(encoding="utf-8"))
    sel = next(e for e in s["ablations"] if e["name"] == s["selected"])
    split, metric = s["selection"]["split"], s["selection"]["metric"]
    where = {"cv": "cross-validated", "val": "validation"}.get(split, split)
    metric_words = METRIC_WORDS.get(metric, metric)
    return {"data set": dataset, "selected": sel["name"], "head": sel["head"],
            "modalities": "+".join(sel["modalities"]),
            "score": f"{_fmt((sel.get(split) or {}).get(metric))} ({where} {metric_words})"}
