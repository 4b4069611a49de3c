"""Text from data, made safe to show on a terminal: every character that could drive or disguise the display is
written as its escape (``\\x1b``, ``\\u202e``...), and everything else is left as it is.

What is escaped: the C0 controls but tab and newline (ESC starts every escape sequence), DEL and the C1 controls
(U+009B is a one-character CSI, U+0085 a line break), the bidirectional controls that make text display in
another order than it is stored ("Trojan Source": U+202A-U+202E, U+2066-U+2069 and the marks U+200E, U+200F,
U+061C), and lone surrogates (bytes that were not UTF-8, which could not even be encoded for output).

The command line escapes its tables and messages with this, and the console log its lines.
"""

from __future__ import annotations

import re
from typing import Any

UNSAFE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")


def escape_controls(value: Any) -> str:
    """``value`` as text with every unsafe character escaped; None is the empty string. Idempotent."""
    text = "" if value is None else str(value)
    if text.isprintable() and text.isascii():  # the common case, at C speed: nothing to escape
        return text
    return UNSAFE.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)
