"""What makes a source key unusable: one definition, for the reader of the exports and for the sandbox.

The reader (``keysync.infrastructure.sources``) runs these rules vectorized over whole columns and confirms each
hit here; the sandbox predicts with them what the reader will make of the files it writes. Both report the
messages below, word for word, in rejected_rows.csv.
"""

from __future__ import annotations

import re

# Control characters: any Unicode Cc (C0, DEL, C1) but tab. Python's re and RE2 (pyarrow) read the class alike.
CONTROL_CLASS = r"[\x00-\x08\x0a-\x1f\x7f-\x9f]"
CONTROL = re.compile(CONTROL_CLASS)


def key_problem(key: str, max_key_length: int) -> str | None:
    """Why ``key`` cannot be used (None if it can): a control character, empty or only whitespace, or longer
    than ``max_key_length`` characters; checked in that order, so a key breaking several rules gets the first."""
    control = CONTROL.search(key)
    if control:
        return f"control character \\x{ord(control.group()):02x} in key"
    if not key.strip():
        return "empty key"
    if len(key) > max_key_length:
        return f"key longer than {max_key_length} characters ({len(key)})"
    return None
