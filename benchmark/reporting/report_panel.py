"""The verdict panel at the top of report.html (benchmark.reporting.verdict rendered as HTML).

Everything that came from a result file goes through `escape`: model names, metric names, the
shortcut explanation and the policy's reasons alike.
"""
from __future__ import annotations

from html import escape
from typing import Any

from benchmark.reporting.verdict import CheckLine, Verdict


def _f(x: Any) -> str:
    return "n/a" if x is None else f"{x:.3f}" if isinstance(x, float) else escape(str(x))


def _ci(value: Any, ci: tuple[Any, Any]) -> str:
    return f"{_f(value)} <span class=ci>[{_f(ci[0])}, {_f(ci[1])}]</span>"


def _check_row(c: CheckLine) -> str:
    label = {"pass": "pass", "fail": "FAIL", "unusable": "unusable"}[c.status]
    if c.status == "unusable":
        numbers = f"<td colspan=2 class=problem>{escape(c.problem)}</td>"
    else:
        numbers = f"<td class=num>{_f(c.observed)}</td><td class=num>{_ci(c.value, c.ci)}</td>"
    reason = f" title='{escape(c.reason, quote=True)}'" if c.reason else ""
    return (f"<tr class='check {c.status}'><td><span class='mark {c.status}'>{label}</span></td>"
            f"<td{reason}><code>{escape(c.metric)}</code></td><td>{escape(c.compared)} {escape(c.required)}</td>"
            f"{numbers}</tr>")


def verdict_panel(v: Verdict, *, title: str, subtitle: str) -> str:
    rows = "".join(_check_row(c) for c in v.checks)
    table = (f"<table class=checks><thead><tr><th>result</th><th>check</th><th>required</th><th>observed</th>"
             f"<th>value [95% CI]</th></tr></thead><tbody>{rows}</tbody></table>")
    facts = []
    if v.shortcut is not None:
        code, text = v.shortcut
        facts.append(f"<li><b>Shortcut test:</b> <span class='shortcut {escape(code)}'>{escape(code)}</span>. "
                     f"{escape(text)}</li>")
    else:
        facts.append("<li><b>Shortcut test:</b> not run (add <code>shortcut</code> to <code>--suites</code>).</li>")
    for h in v.headlines:
        where = f" ({escape(h.note)})" if h.note else ""
        facts.append(f"<li><b>{escape(h.label)}{where}:</b> {_ci(h.value, h.ci)}</li>")
    warnings = "".join(f"<li>{escape(w)}</li>" for w in v.warnings)
    warn_html = f"<ul class=warnings>{warnings}</ul>" if warnings else ""
    return (f"<header id=verdict class='verdict {v.outcome}'><h1>{escape(title)}</h1>"
            f"<p class=sub>{escape(subtitle)}</p>"
            f"<p class='overall {v.outcome}'>{escape(v.summary)}</p>{table}"
            f"<ul class=facts>{''.join(facts)}</ul>{warn_html}</header>")


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
