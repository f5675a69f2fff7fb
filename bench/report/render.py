"""Writes the sections out: report.md (pictures linked from plots/) and a self-contained
report.html (pictures embedded as base64 PNG, so the one file can be mailed or archived)."""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path

import pandas as pd

from bench.report.sections import FigureRef, Section
from bench.report.tables import to_markdown

TITLE = "ssm-bench report"


def markdown(sections: list[Section], plots_dir: str = "plots") -> str:
    out = [f"# {TITLE}", ""]
    out += [f"- [{s.title}](#{_anchor(s.title)})" for s in sections] + [""]
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


def _anchor(title: str) -> str:
    """GitHub-style heading anchor."""
    return re.sub(r"[^a-z0-9 _-]", "", title.lower()).replace(" ", "-")


_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; max-width: 1100px; margin: 2em auto;
       padding: 0 1em; color: #222; line-height: 1.45; }
h1 { border-bottom: 2px solid #444; } h2 { border-bottom: 1px solid #ccc; margin-top: 2em; }
table { border-collapse: collapse; margin: 0.8em 0; font-size: 0.85em; display: block; overflow-x: auto; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: left; vertical-align: top; }
th { white-space: nowrap; } td { min-width: 4em; }
th { background: #f0f0f0; } tr:nth-child(even) td { background: #fafafa; }
figure { margin: 1em 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { font-style: italic; color: #555; font-size: 0.9em; }
code { background: #f3f3f3; padding: 0 3px; border-radius: 3px; }
nav ul { columns: 2; }
"""


def _inline(text: str) -> str:
    """Escapes text, then the two markdown marks the sections use: `code` and **bold**, *italic*."""
    text = html.escape(str(text))
    text = re.sub(r"`([^`]+)`", r"<code>\1</code>", text)
    text = re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", text)
    return re.sub(r"\*([^*]+)\*", r"<em>\1</em>", text)


def html_page(sections: list[Section], plots_dir: Path) -> str:
    body = [f"<h1>{TITLE}</h1>", "<nav><ul>"]
    body += [f'<li><a href="#{_anchor(s.title)}">{html.escape(s.title)}</a></li>' for s in sections]
    body.append("</ul></nav>")
    for s in sections:
        body.append(f'<h2 id="{_anchor(s.title)}">{html.escape(s.title)}</h2>')
        for item in s.items:
            if isinstance(item, pd.DataFrame):
                body.append(item.to_html(index=False, na_rep="", border=0, escape=True))
            elif isinstance(item, FigureRef):
                data = base64.b64encode((plots_dir / f"{item.name}.png").read_bytes()).decode("ascii")
                body.append(f'<figure><img alt="{html.escape(item.caption)}" src="data:image/png;base64,{data}">'
                            f"<figcaption>{_inline(item.caption)}</figcaption></figure>")
            elif isinstance(item, list):
                body.append("<ul>" + "".join(f"<li>{_inline(b)}</li>" for b in item) + "</ul>")
            else:
                body.append(f"<p>{_inline(item)}</p>")
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{TITLE}</title><style>{_CSS}</style></head>\n<body>\n" + "\n".join(body) + "\n</body></html>\n")
