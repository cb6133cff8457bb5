"""The page: one self-contained HTML file (inline CSS, plots as ``data:`` PNGs, no script, no network).

Every string that reaches the page passes through :func:`esc` (``html.escape`` with quotes), so column names,
file names and messages show as text whatever they contain.
"""

from __future__ import annotations

import html
import math
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from descend.report.plots import to_png
from descend.train.run import atomic_write

__all__ = ["Page", "esc", "fmt", "shown"]

CSS = """
body{font-family:-apple-system,'Segoe UI',Helvetica,Arial,sans-serif;margin:0;color:#222;background:#fafafa}
main{max-width:1100px;margin:0 auto;padding:1.5em 2em 4em;background:#fff}
h1{font-size:1.6em;margin-bottom:.2em}h2{font-size:1.25em;margin-top:1.8em;border-bottom:1px solid #ddd}
.sub{color:#666;margin-top:0}
table{border-collapse:collapse;margin:.6em 0;font-size:.92em}
td,th{border:1px solid #ddd;padding:.25em .6em;text-align:left;vertical-align:top}
th{background:#f2f2f2}td.num{text-align:right;font-variant-numeric:tabular-nums}
figure{margin:1em 0}figure img{max-width:100%;height:auto;border:1px solid #eee}
figcaption{color:#555;font-size:.9em}
.finding{border-left:4px solid #d62728;background:#fff5f5;padding:.5em 1em;margin:.6em 0}
.ok{border-left:4px solid #2ca02c;background:#f4fbf4;padding:.5em 1em}
.tags span{display:inline-block;background:#eef;border-radius:3px;padding:0 .4em;margin:.1em;font-size:.85em}
code{background:#f4f4f4;padding:0 .2em}
details{margin:.4em 0}summary{cursor:pointer;color:#1f5f9f}
"""


def esc(value: Any) -> str:
    """``value`` as text, escaped for HTML (``<``, ``>``, ``&``, quotes)."""
    return html.escape(str(value), quote=True)


def shown(value: Any) -> str:
    """A number to 4 significant digits (integers whole), None as ``-``, booleans as yes/no, anything else as
    text; not escaped (see :func:`fmt`)."""
    if isinstance(value, bool) or value is None:
        return "-" if value is None else ("yes" if value else "no")
    if isinstance(value, float) and math.isfinite(value):
        return str(int(value)) if value.is_integer() and abs(value) < 1e15 else f"{value:.4g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v) for v in value)
    return str(value)


def fmt(value: Any) -> str:
    """:func:`shown`, escaped for HTML."""
    return esc(shown(value))


class Page:
    """An HTML page under construction: add sections, then :meth:`write` it (atomically)."""

    def __init__(self, title: str, subtitle: str = "") -> None:
        self.title = title
        self.parts: list[str] = [f"<h1>{esc(title)}</h1>"]
        if subtitle:
            self.parts.append(f'<p class="sub">{esc(subtitle)}</p>')
        self.n_figures = 0

    def heading(self, text: str, anchor: str = "") -> None:
        ident = f' id="{esc(anchor)}"' if anchor else ""
        self.parts.append(f"<h2{ident}>{esc(text)}</h2>")

    def paragraph(self, text: str, css: str = "") -> None:
        cls = f' class="{esc(css)}"' if css else ""
        self.parts.append(f"<p{cls}>{esc(text)}</p>")

    def table(self, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
        head = "".join(f"<th>{esc(h)}</th>" for h in header)
        body = []
        for row in rows:
            cells = "".join(
                f'<td class="num">{fmt(v)}</td>' if isinstance(v, (int, float)) and not isinstance(v, bool)
                else f"<td>{fmt(v)}</td>" for v in row
            )
            body.append(f"<tr>{cells}</tr>")
        self.parts.append(f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>")

    def pairs(self, items: Iterable[tuple[str, Any]]) -> None:
        rows = "".join(f"<tr><th>{esc(k)}</th><td>{fmt(v)}</td></tr>" for k, v in items)
        self.parts.append(f"<table><tbody>{rows}</tbody></table>")

    def tags(self, label: str, values: Sequence[Any]) -> None:
        spans = "".join(f"<span>{esc(v)}</span>" for v in values)
        self.parts.append(f'<p class="tags"><b>{esc(label)}</b> {spans}</p>')

    def details(self, label: str, values: Sequence[Any]) -> None:
        """``values`` folded away under ``label`` (a ``<details>`` element: no script needed to open it)."""
        spans = "".join(f"<span>{esc(v)}</span>" for v in values)
        self.parts.append(f'<details><summary>{esc(label)}</summary><p class="tags">{spans}</p></details>')

    def figure(self, fig: Figure | None, caption: str, alt: str) -> None:
        """Embed ``fig`` as a PNG with a caption; nothing when there is no figure."""
        if fig is None:
            return
        self.n_figures += 1
        self.parts.append(
            f'<figure><img class="plot" src="{to_png(fig)}" alt="{esc(alt)}">'
            f"<figcaption>{esc(caption)}</figcaption></figure>"
        )

    def finding(self, rule: str, message: str, suggestion: str, where: str = "",
                evidence: Iterable[tuple[str, Any]] = ()) -> None:
        """A finding: its rule, where (epoch, step, layer), message, the evidence (name, number) and the fix."""
        place = f" <small>({esc(where)})</small>" if where else ""
        numbers = ", ".join(f"{esc(k)} <code>{fmt(v)}</code>" for k, v in evidence)
        facts = f'<br><span class="evidence"><i>Evidence:</i> {numbers}</span>' if numbers else ""
        self.parts.append(
            f'<div class="finding"><b>{esc(rule)}</b>{place}<br>{esc(message)}{facts}<br><i>Try:</i> '
            f"{esc(suggestion)}</div>"
        )

    def render(self) -> str:
        body = "\n".join(self.parts)
        return (
            "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{esc(self.title)}</title><style>{CSS}</style></head>"
            f"<body><main>\n{body}\n</main></body></html>\n"
        )

    def write(self, path: str | os.PathLike[str]) -> Path:
        p = Path(path)
        atomic_write(p, self.render().encode("utf-8"))
        return p
