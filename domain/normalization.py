"""Key normalization: the configurable rules that make raw keys from different systems comparable.

The rules apply in a fixed order (NFKC, trim, uppercase, strip_non_alnum, collapse_delims, pad_numbers),
and normalization is idempotent: normalizing a normalized key changes nothing.
"""

from __future__ import annotations

import re
import unicodedata

import attrs

# Characters that separate the parts of a key. Whitespace means anything str.isspace() accepts.
DELIMITER_PUNCTUATION = "-_./\\:|"


@attrs.frozen
class NormalizationRules:
    """Which normalization steps apply. NFKC always applies; the rest are switches."""

    trim: bool = True
    uppercase: bool = True
    strip_non_alnum: bool = True
    collapse_delims: str = "-"  # "" switches collapsing off
    pad_numbers: int = attrs.field(default=0, validator=attrs.validators.ge(0))

    def describe(self) -> str:
        """A stable one-line description, recorded with every run so a rebuild can tell the rules apart."""
        return (
            f"nfkc,trim={self.trim},uppercase={self.uppercase},strip_non_alnum={self.strip_non_alnum},"
            f"collapse_delims={self.collapse_delims!r},pad_numbers={self.pad_numbers}"
        )


_DELIM_CLASS = r"\s" + re.escape(DELIMITER_PUNCTUATION)
_NOT_ALNUM_OR_DELIM = re.compile(rf"[^A-Za-z0-9{_DELIM_CLASS}]+")
_NOT_ALNUM = re.compile(r"[^A-Za-z0-9]+")
_DELIM_RUN = re.compile(rf"[{_DELIM_CLASS}]+")
_DIGIT_RUN = re.compile(r"[0-9]+")


def normalize_key(raw: str, rules: NormalizationRules) -> str:
    """Normalize one raw key. This is the reference definition; bulk paths must agree with it."""
    key = unicodedata.normalize("NFKC", raw)
    if rules.trim:
        key = key.strip()
    if rules.uppercase:
        key = key.upper()
    if rules.strip_non_alnum:
        key = (_NOT_ALNUM_OR_DELIM if rules.collapse_delims else _NOT_ALNUM).sub("", key)
    if rules.collapse_delims:
        # Split on delimiter runs and drop the empty ends: leading and trailing delimiters vanish.
        key = rules.collapse_delims.join(part for part in _DELIM_RUN.split(key) if part)
    if rules.pad_numbers:
        width = rules.pad_numbers
        key = _DIGIT_RUN.sub(lambda m: m.group().zfill(width), key)
    return key
