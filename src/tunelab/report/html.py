"""One self-contained HTML report: inline CSS, figures as PNG data URIs, no external URL.

The page needs no network, no fonts and no JavaScript; a Content-Security-Policy meta tag
makes the browser refuse anything that is not inline, so a stray external reference shows
up as a console error instead of a silent request. Everything user-provided is escaped,
except the content of ``kind="html"`` sections, which the caller vouches for.

Example:
    >>> page = build_report("demo", [Section("numbers", "table", [{"arm": "adam", "acc": 0.9812}])])
    >>> "<td class=\\"num\\">0.9812</td>" in page and "://" not in page
    True
"""

from __future__ import annotations

import base64
import html
import io
import math
import numbers
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

__all__ = ["Section", "build_report", "write_report", "figure_to_data_uri", "format_value", "format_p", "KINDS"]

KINDS = ("text", "table", "figure", "code", "html")
_PNG_PREFIX = "data:image/png;base64,"

_CSS = """
*{box-sizing:border-box}
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;
margin:0 auto;padding:1rem;max-width:1100px;color:#1f2328;background:#fff;line-height:1.5;
overflow-wrap:anywhere}
h1{font-size:1.6rem;margin:.5rem 0}h2{font-size:1.25rem;margin:2rem 0 .5rem;
border-bottom:1px solid #d0d7de;padding-bottom:.25rem}
.subtitle{color:#57606a;margin-top:0}
nav ol{padding-left:1.25rem;margin:.25rem 0}nav a{color:#0969da}
figure{margin:0}figure img{display:block;max-width:100%;height:auto}
figcaption{color:#57606a;font-size:.9rem}
.table-wrap{overflow-x:auto;max-width:100%}
table{border-collapse:collapse;font-size:.9rem;margin:.25rem 0;overflow-wrap:normal}
th,td{border:1px solid #d0d7de;padding:.3rem .6rem;text-align:left;vertical-align:top}
th{background:#f6f8fa}td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
tr.better td{background:#dafbe1}tr.worse td{background:#ffebe9}
tr.same td,tr.tie td,tr.inconclusive td{background:#f6f8fa}tr.baseline td{font-weight:600}
pre{background:#f6f8fa;padding:.75rem;overflow-x:auto;max-width:100%;font-size:.85rem;
overflow-wrap:normal}
"""

_CSP = ("default-src 'none'; img-src data:; style-src 'unsafe-inline'; "
        "base-uri 'none'; form-action 'none'")


@dataclass
class Section:
    """One part of a report.

    kind: "text" (plain text, blank lines split paragraphs), "table" (list of dicts; a
    row's "_class" key, or else its "verdict", becomes the row's CSS class), "figure"
    (a matplotlib Figure or a PNG data URI), "code" (preformatted text) or "html"
    (trusted markup, inserted as is). ``caption`` is the figure's caption and alt text
    (the title when empty).
    """

    title: str
    kind: str
    content: Any
    caption: str = ""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"Section.kind={self.kind!r} is not known; choose one of {sorted(KINDS)}")


def figure_to_data_uri(fig: Figure, dpi: int = 110) -> str:
    """The figure as a PNG ``data:`` URI; the figure is closed afterwards."""
    buf = io.BytesIO()
    try:
        fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight", facecolor="white")
    finally:
        plt.close(fig)
    return _PNG_PREFIX + base64.b64encode(buf.getvalue()).decode("ascii")


def format_value(value: Any) -> str:
    """Table cell text: floats to 4 significant digits (scientific when tiny or huge)."""
    if value is None:
        return ""
    if isinstance(value, bool) or not isinstance(value, numbers.Number):
        return str(value)
    if isinstance(value, numbers.Integral):
        return str(int(value))
    x = float(value)
    if math.isnan(x):
        return "–"
    if math.isinf(x):
        return "∞" if x > 0 else "−∞"
    if x != 0 and (abs(x) >= 1e5 or abs(x) < 1e-3):
        return f"{x:.3e}"
    return f"{x:.4g}"


def format_p(p: Any) -> str:
    """A p-value for a table: "< 0.0001" below it, else 3 significant digits ("-" if none).

    A p that rounds to 0.0000 at four decimals is not zero; it is smaller than the table can
    show, and says so.

    Example:
        >>> format_p(3e-7), format_p(0.01234), format_p(0.5), format_p(None)
        ('< 0.0001', '0.0123', '0.5', '-')
    """
    if p is None or isinstance(p, bool) or not isinstance(p, numbers.Number) or math.isnan(p):
        return "-"
    return "< 0.0001" if p < 1e-4 else f"{float(p):.3g}"


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Number) and not isinstance(value, bool)


def _css_class(row: Mapping[str, Any]) -> str:
    raw = row.get("_class", row.get("verdict", ""))
    return " ".join(re.sub(r"[^A-Za-z0-9_-]+", "-", str(raw or "")).split())


def _cell(value: Any) -> str:
    text = html.escape(format_value(value))
    return f'<td class="num">{text}</td>' if _is_number(value) else f"<td>{text}</td>"


def _table(rows: Sequence[Mapping[str, Any]]) -> str:
    if not rows:
        return "<p><em>(no rows)</em></p>"
    columns = list(dict.fromkeys(k for r in rows for k in r if k != "_class"))
    head = "".join(f"<th scope=\"col\">{html.escape(str(c))}</th>" for c in columns)
    body = []
    for row in rows:
        cells = "".join(_cell(row.get(c)) for c in columns)
        cls = _css_class(row)
        body.append(f'<tr class="{cls}">{cells}</tr>' if cls else f"<tr>{cells}</tr>")
    return (f"<div class=\"table-wrap\"><table><thead><tr>{head}</tr></thead>"
            f"<tbody>{''.join(body)}</tbody></table></div>")


def _figure(section: Section) -> str:
    content = section.content
    uri = content if isinstance(content, str) else figure_to_data_uri(content)
    if not uri.startswith(_PNG_PREFIX):
        raise ValueError(f"figure section {section.title!r}: content must be a matplotlib Figure "
                         f"or a string starting with {_PNG_PREFIX!r}")
    alt = html.escape(section.caption or section.title)
    cap = f"<figcaption>{alt}</figcaption>" if section.caption else ""
    return f"<figure><img src=\"{html.escape(uri)}\" alt=\"{alt}\">{cap}</figure>"


def _text(text: str) -> str:
    paras = [p.strip() for p in re.split(r"\n\s*\n", str(text)) if p.strip()]
    return "".join(f"<p>{html.escape(p)}</p>" for p in paras)


def _body(section: Section) -> str:
    if section.kind == "table":
        return _table(section.content)
    if section.kind == "figure":
        return _figure(section)
    if section.kind == "code":
        return f"<pre><code>{html.escape(str(section.content))}</code></pre>"
    if section.kind == "html":
        if re.search(r"[a-z][a-z0-9+.-]*://", str(section.content), re.I):
            raise ValueError(f"html section {section.title!r} contains a URL; "
                             "reports must be self-contained")
        return str(section.content)
    return _text(section.content)


def build_report(title: str, sections: Sequence[Section], subtitle: str = "") -> str:
    """One self-contained HTML document with a table of contents and the sections in order."""
    toc = "".join(f"<li><a href=\"#s{i}\">{html.escape(s.title)}</a></li>"
                  for i, s in enumerate(sections, 1))
    parts = [f"<section id=\"s{i}\"><h2>{html.escape(s.title)}</h2>{_body(s)}</section>"
             for i, s in enumerate(sections, 1)]
    sub = f"<p class=\"subtitle\">{html.escape(subtitle)}</p>" if subtitle else ""
    nav = f"<nav aria-label=\"contents\"><ol>{toc}</ol></nav>" if sections else ""
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
        f"<meta http-equiv=\"Content-Security-Policy\" content=\"{_CSP}\">\n"
        f"<title>{html.escape(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
        f"<header><h1>{html.escape(title)}</h1>{sub}</header>\n{nav}\n<main>\n"
        + "\n".join(parts) + "\n</main>\n</body>\n</html>\n"
    )


def write_report(path: str | Path, html: str) -> Path:  # noqa: A002 - the documented name
    """Write the report as UTF-8, creating parent folders; returns the path."""
    from tunelab.fileio import write_text

    write_text(path, html)
    return Path(path)
