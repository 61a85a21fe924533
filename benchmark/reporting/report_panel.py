"""The verdict panel at the top of report.html (benchmark.reporting.verdict rendered as HTML).

Its markup is the `panel` macro of templates/report_panel.html; autoescape covers everything that
came from a result file: model names, metric names, the shortcut explanation and the policy's reasons.
"""
from __future__ import annotations

from markupsafe import Markup

from benchmark.reporting.verdict import Verdict


def verdict_panel(v: Verdict, *, title: str, subtitle: str) -> Markup:
    from benchmark.reporting.templating import environment

    return Markup(environment(None).get_template("report_panel.html").module.panel(v, title, subtitle))


PANEL_CSS = """header.verdict{border:2px solid #d0d7de;border-radius:8px;padding:.8em 1.2em;margin-bottom:1.5em}
header.verdict.fail{border-color:#cf222e}header.verdict.pass{border-color:#1a7f37}
header.verdict.unusable{border-color:#bf8700}
header.verdict h1{margin:.1em 0;font-size:1.5em}.sub{color:#57606a;margin:.1em 0 .6em}
.overall{font-size:1.2em;font-weight:700;margin:.3em 0}.overall.fail{color:#cf222e}.overall.pass{color:#1a7f37}
.overall.unusable{color:#9a6700}table.checks td,table.checks th{padding:.2em .5em}
.mark{display:inline-block;min-width:4.5em;text-align:center;border-radius:1em;font-size:.85em;font-weight:600}
.mark.pass{background:#dafbe1;color:#1a7f37}.mark.fail{background:#ffebe9;color:#cf222e}
.mark.unusable{background:#fff8c5;color:#9a6700}td.problem{color:#9a6700;font-size:.9em;max-width:40em}
tr.check.fail td{background:#fff5f5}ul.facts{margin:.4em 0;padding-left:1.2em}ul.facts li{margin:.2em 0}
.shortcut{font-weight:700}.shortcut.outside_lungs{color:#cf222e}.shortcut.lungs{color:#1a7f37}
ul.warnings{background:#fff8c5;border:1px solid #d4a72c;border-radius:6px;padding:.5em .5em .5em 2em;margin:.6em 0 0}
ul.warnings li{margin:.15em 0}ul.warnings li::marker{content:"\\26A0  "}"""
