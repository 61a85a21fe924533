"""Names from submissions (model, dataset, run folder) made safe to print on a terminal.

A name is data, not terminal commands: escape sequences (ESC [ ... could clear the screen, retitle
the window, or hide a FAIL line), other C0/C1 controls and bidirectional overrides are each shown
as "?". Every command that prints a submitted name to the terminal goes through `terminal_safe`.
"""
from __future__ import annotations

import re

_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def terminal_safe(text: object, *, keep_newlines: bool = False) -> str:
    """`text` with control characters replaced by "?"; tabs stay, newlines only on request."""
    s = _CONTROL.sub("?", str(text))
    return s if keep_newlines else s.replace("\n", "?")
