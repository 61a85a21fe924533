"""HTML pieces shared by the pages: the page frame and its figures.

The pages are Jinja2 templates (leaderboard/templates, with benchmark/reporting/templates' shared
macros) rendered with autoescape (benchmark.reporting.templating): every string that came with a
submission is escaped without anyone having to remember it, and figure JSON goes through
`script_json`, which cannot close its <script>.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from markupsafe import Markup

from benchmark.reporting import templating

TEMPLATES = Path(__file__).parent / "templates"


def render(template: str, **values: Any) -> Markup:
    """A template of leaderboard/templates, rendered (autoescaped) to Markup."""
    return templating.render(template, TEMPLATES, **values)


@dataclass
class Figures:
    """The plotly figures of one page: each gets a div now and is drawn by leaderboard.js on load."""

    items: list[dict[str, Any]] = field(default_factory=list)

    def add(self, fig: Any, *, caption: str = "") -> Markup:
        if not isinstance(fig, dict):
            return Markup("")
        from benchmark.reporting.figure_filter import safe_figure  # no URL from a result file reaches the page

        div = f"fig-{len(self.items)}"
        fig = safe_figure(fig)
        self.items.append({"div": div, "data": fig["data"], "layout": fig["layout"]})  # script_json cleans
        return templating.macro("figure", div, caption=caption)


def page(*, title: str, content: str, root: str, figures: Figures | None = None, built: str) -> str:
    """A whole page: `content` is what a page template rendered (Markup), the rest is escaped."""
    from benchmark import METRIC_CODE_VERSION, __version__

    return str(render("base.html", title=title, root=root, content=Markup(content),
                      figures=figures.items if figures else [], version=__version__,
                      metric_code=METRIC_CODE_VERSION, built=built))
