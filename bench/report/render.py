"""Writes the sections out: report.md (pictures linked from plots/) and a self-contained
report.html, rendered from that same Markdown (markdown-it-py) with its pictures embedded as
base64 PNG, so the one file can be mailed or archived."""

from __future__ import annotations

import base64
from pathlib import Path

import jinja2
import pandas as pd
from markdown_it import MarkdownIt
from mdit_py_plugins.anchors import anchors_plugin

from bench.report.sections import FigureRef, Section
from bench.report.tables import to_markdown

TITLE = "ssm-bench report"


def _slug(title: str) -> str:
    """GitHub-style heading anchor (the one GitHub renders for report.md)."""
    return "".join(c for c in title.lower() if c.isalnum() or c in " _-").replace(" ", "-")


def markdown(sections: list[Section], plots_dir: str = "plots") -> str:
    out = [f"# {TITLE}", ""]
    out += [f"- [{s.title}](#{_slug(s.title)})" for s in sections] + [""]
    for s in sections:
        out += [f"## {s.title}", ""]
        for item in s.items:
            if isinstance(item, pd.DataFrame):
                out += [to_markdown(item), ""]
            elif isinstance(item, FigureRef):
                out += [f"![{item.caption}]({plots_dir}/{item.name}.png)", "",
                        f"*{item.caption}* ([SVG]({plots_dir}/{item.name}.svg))", ""]
            elif isinstance(item, list):
                out += [f"- {b}" for b in item] + [""]
            else:
                out += [str(item), ""]
    return "\n".join(out)


# Wide tables widen the page rather than hide columns behind a scrollbar.
_PAGE = jinja2.Template("""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{{ title }}</title><style>
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto; padding: 0 1em;
       max-width: 1100px; color: #222; line-height: 1.45; }
h1 { border-bottom: 2px solid #444; } h2 { border-bottom: 1px solid #ccc; margin-top: 2em; }
table { border-collapse: collapse; margin: 0.8em 0; font-size: 0.85em; width: max-content; max-width: 96vw; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: left; vertical-align: top; }
th { background: #f0f0f0; white-space: nowrap; } tr:nth-child(even) td { background: #fafafa; }
img { max-width: 100%; border: 1px solid #eee; }
code { background: #f3f3f3; padding: 0 3px; border-radius: 3px; }
</style></head>
<body>
{{ body }}
</body></html>
""", autoescape=False)


def html_page(markdown_text: str, plots_dir: Path) -> str:
    """report.md as one HTML file: the pictures under plots/ embedded."""
    md = MarkdownIt("commonmark", {"html": False}).enable("table").use(anchors_plugin, max_level=2, slug_func=_slug)
    tokens = md.parse(markdown_text)
    for token in tokens:
        for child in token.children or []:
            src = child.attrGet("src") if child.type == "image" else None
            if src and src.endswith(".png"):
                data = base64.b64encode((plots_dir / Path(src).name).read_bytes()).decode("ascii")
                child.attrSet("src", f"data:image/png;base64,{data}")
    return _PAGE.render(title=TITLE, body=md.renderer.render(tokens, md.options, {}))
