"""Key normalization: the configurable rules that make raw keys from different systems comparable.

The rules apply in a fixed order (NFKC, trim, uppercase, ascii_fold, strip_non_alnum, collapse_delims,
pad_numbers), and normalization is idempotent: normalizing a normalized key changes nothing.

Which characters strip_non_alnum keeps is ``letters``: "ascii" (A-Z, a-z, 0-9; the default, as before the option
existed) or "unicode" (every letter and digit, str.isalnum(), with the combining marks that belong to them: a vowel
sign or an accent left uncomposed is part of its letter). pad_numbers pads runs of ASCII digits only, under either:
NFKC already turns full-width digits into ASCII ones, and other scripts' digits are left as they are.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Iterable

import attrs
import numpy as np

# Characters that separate the parts of a key. Whitespace means anything str.isspace() accepts.
DELIMITER_PUNCTUATION = "-_./\\:|"
LETTERS = ("ascii", "unicode")  # what strip_non_alnum keeps: see the module's docstring


def _check_collapse_delims(_instance: object, _attribute: object, value: str) -> None:
    # Collapsing to a non-delimiter (say "+") is not idempotent: the next pass's strip_non_alnum removes it.
    if value and not set(value) <= set(DELIMITER_PUNCTUATION):
        raise ValueError(
            f"collapse_delims must be '' (off) or made only of the delimiter characters "
            f"{DELIMITER_PUNCTUATION!r}, got {value!r}"
        )


@attrs.frozen
class NormalizationRules:
    """Which normalization steps apply. NFKC always applies; the rest are switches."""

    trim: bool = True
    uppercase: bool = True
    strip_non_alnum: bool = True
    collapse_delims: str = attrs.field(default="-", validator=_check_collapse_delims)  # "" = off
    pad_numbers: int = attrs.field(default=0, validator=attrs.validators.ge(0))
    # Added later: at their defaults they change nothing, and are left out of what a run records (as_options).
    # Accents folded away (NFKD, then nonspacing marks dropped: "É" -> "E"), before strip_non_alnum. Meant for
    # Latin-script keys: in other scripts a mark can be what tells two letters apart ("が" -> "か").
    ascii_fold: bool = False
    letters: str = attrs.field(default="ascii", validator=attrs.validators.in_(LETTERS))

    def describe(self) -> str:
        """A stable one-line description, recorded with every run so a rebuild can tell the rules apart."""
        return (
            f"nfkc,trim={self.trim},uppercase={self.uppercase},strip_non_alnum={self.strip_non_alnum},"
            f"collapse_delims={self.collapse_delims!r},pad_numbers={self.pad_numbers}"
            + "".join(f",{name}={value!r}" for name, value in self._later_changed().items())
        )

    def as_options(self) -> dict[str, object]:
        """The rules as a run records them. The options added later appear only when not at their defaults, so
        that the rules a run recorded before they existed compare equal to the same rules today: upgrading is no
        change of rules (no rebuild, no deprecation, no re-render)."""
        options = attrs.asdict(self)
        for name in _LATER:
            options.pop(name)
        return {**options, **self._later_changed()}

    def _later_changed(self) -> dict[str, object]:
        defaults = NormalizationRules()
        return {name: getattr(self, name) for name in _LATER if getattr(self, name) != getattr(defaults, name)}

    @property
    def drops_letters(self) -> bool:
        """Whether strip_non_alnum removes letters: those outside ASCII, under letters "ascii"."""
        return self.strip_non_alnum and self.letters == "ascii"


_LATER = ("ascii_fold", "letters")  # options added after runs were first recorded


_DELIM_CLASS = r"\s" + re.escape(DELIMITER_PUNCTUATION)  # Python's \s is exactly str.isspace()
_NOT_ALNUM_OR_DELIM = re.compile(rf"[^A-Za-z0-9{_DELIM_CLASS}]+")
_NOT_ALNUM = re.compile(r"[^A-Za-z0-9]+")
_DELIM_RUN = re.compile(rf"[{_DELIM_CLASS}]+")
_DIGIT_RUN = re.compile(r"[0-9]+")


def normalize_key(raw: str, rules: NormalizationRules) -> str:
    """Normalize one raw key. This is the reference definition; bulk paths must agree with it."""
    key = _before_strip(raw, rules)
    if rules.strip_non_alnum:
        if rules.letters == "unicode":
            key = _strip_unicode(key, keep_delims=bool(rules.collapse_delims))
        else:
            key = (_NOT_ALNUM_OR_DELIM if rules.collapse_delims else _NOT_ALNUM).sub("", key)
    if rules.collapse_delims:
        # Split on delimiter runs and drop the empty ends: leading and trailing delimiters vanish.
        key = rules.collapse_delims.join(part for part in _DELIM_RUN.split(key) if part)
    if rules.pad_numbers:
        width = rules.pad_numbers
        key = _DIGIT_RUN.sub(lambda m: m.group().zfill(width), key)
    return key


def _before_strip(raw: str, rules: NormalizationRules) -> str:
    """The key after NFKC, trim, uppercase and ascii_fold."""
    key = unicodedata.normalize("NFKC", raw)
    if rules.trim:
        key = key.strip()
    if rules.uppercase:
        # NFKC again: upper() can leave NFKC-normal text non-normal ('ΐ'.upper() is three code points).
        key = unicodedata.normalize("NFKC", key.upper())
    if rules.ascii_fold and not key.isascii():
        key = "".join(c for c in unicodedata.normalize("NFKD", key) if unicodedata.category(c) != "Mn")
        if rules.trim:  # a mark dropped at either end can leave a space there ("X \u0301")
            key = key.strip()
    return key


def _strip_unicode(key: str, keep_delims: bool) -> str:
    """Keep letters, digits and marks (and delimiters when they are collapsed later). NFKC again: a mark can meet
    a letter it composes with once what stood between them is gone ("a´" is "a \u0301" after NFKC)."""
    kept = "".join(
        c for c in key if c.isalnum() or unicodedata.category(c)[0] == "M" or (keep_delims and _is_delimiter(c))
    )
    return unicodedata.normalize("NFKC", kept)


def _is_delimiter(c: str) -> bool:
    return c.isspace() or c in DELIMITER_PUNCTUATION


def lost_letters(raw: str, rules: NormalizationRules) -> bool:
    """Whether strip_non_alnum drops a letter or digit from this key that ascii_fold or letters "unicode" would
    keep (a non-ASCII one under letters "ascii")."""
    if raw.isascii() or not rules.drops_letters:
        return False
    return any(not c.isascii() and c.isalnum() for c in _before_strip(raw, rules))


def keys_that_lost_letters(keys: Iterable[str], rules: NormalizationRules) -> list[str]:
    """The distinct keys among ``keys`` that lost letters, in first-seen order. Only non-ASCII keys are looked at,
    and a list of ASCII keys is passed over in one C-level scan."""
    if not rules.drops_letters:
        return []
    keys = list(keys) if not isinstance(keys, list) else keys
    if "".join(keys).isascii():
        return []
    return [key for key in dict.fromkeys(key for key in keys if not key.isascii()) if lost_letters(key, rules)]


# ---- Bulk path -------------------------------------------------------------------------------------
# ASCII keys (nearly all keys in practice; NFKC is the identity on ASCII) are joined into one latin-1
# byte string with _SEP before, between and after them, and each rule becomes a C-speed pass over
# it: bytes.translate (uppercase, strip_non_alnum, marking delimiters), then numpy (collapse, padding).
# _SEP is not ASCII, so no rule treats it as whitespace, delimiter or digit: runs never cross from
# one key into the next, and a key's leading or trailing bytes are those next to a _SEP.

_SCALAR_BELOW = 64  # measured: below ~30 keys the set-up costs more than it saves
_CHUNK = 100_000  # keys per pass: bounds memory and keeps the buffers cache-sized
_SEP = 0x80
_DELIM = 0x81  # every delimiter becomes this byte until runs are collapsed; not ASCII either

# str.isspace() on ASCII is more than " \t\n\r\f\v": \x1c-\x1f count too (for strip() and re's \s).
_ASCII_DELIMS = {c for c in range(128) if chr(c).isspace() or chr(c) in DELIMITER_PUNCTUATION}
_ASCII_ALNUM = {c for c in range(128) if chr(c).isalnum()}


def normalize_keys(keys: list[str], rules: NormalizationRules) -> list[str]:
    """Normalize many keys: exactly [normalize_key(k, rules) for k in keys], but vectorized."""
    if len(keys) < _SCALAR_BELOW:
        return [normalize_key(key, rules) for key in keys]
    if "".join(keys).isascii():  # one C-level scan; the usual case
        return _normalize_ascii(keys, rules)
    # Mixed input: vectorize the ASCII keys, send the rest through the reference, keep the order.
    ascii_out = iter(_normalize_ascii([key for key in keys if key.isascii()], rules))
    return [next(ascii_out) if key.isascii() else normalize_key(key, rules) for key in keys]


def _normalize_ascii(keys: list[str], rules: NormalizationRules) -> list[str]:
    table, delete = _byte_rules(rules)
    sep = chr(_SEP)
    out: list[str] = []
    for start in range(0, len(keys), _CHUNK):
        chunk = keys[start : start + _CHUNK]
        if rules.trim and not rules.strip_non_alnum and not rules.collapse_delims:
            chunk = [key.strip() for key in chunk]  # otherwise a later step drops edge whitespace anyway
        data = sep.join(["", *chunk, ""]).encode("latin-1").translate(table, delete)
        if rules.collapse_delims:
            data = _collapse(data, rules.collapse_delims.encode("ascii"))
        if rules.pad_numbers:
            data = _pad_numbers(data, rules.pad_numbers)
        out += data.decode("latin-1").split(sep)[1:-1]
    return out


@functools.cache
def _byte_rules(rules: NormalizationRules) -> tuple[bytes, bytes]:
    """A bytes.translate table and delete set doing uppercase, strip_non_alnum and delimiter marking."""
    table = bytearray(range(256))
    if rules.uppercase:
        table[ord("a") : ord("z") + 1] = table[ord("A") : ord("Z") + 1]
    keep = _ASCII_ALNUM | {_SEP}
    if rules.collapse_delims:
        keep |= _ASCII_DELIMS
        for c in _ASCII_DELIMS:
            table[c] = _DELIM
    delete = bytes(c for c in range(256) if c not in keep) if rules.strip_non_alnum else b""
    return bytes(table), delete


def _runs(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """First and last index of each run of True; mask[0] and mask[-1] must be False (they are _SEP)."""
    flips = np.flatnonzero(mask[1:] != mask[:-1])
    return flips[0::2] + 1, flips[1::2]


def _collapse(data: bytes, joiner: bytes) -> bytes:
    """Turn every run of _DELIM inside a key into joiner; drop the runs at either end of a key."""
    buf = np.frombuffer(data, dtype=np.uint8)
    delim = buf == _DELIM
    starts, ends = _runs(delim)
    keep = ~delim
    keep[starts[(buf[starts - 1] != _SEP) & (buf[ends + 1] != _SEP)]] = True  # first byte of inner runs
    return buf[keep].tobytes().replace(bytes([_DELIM]), joiner)


def _pad_numbers(data: bytes, width: int) -> bytes:
    """Left-pad with '0' every run of ASCII digits shorter than width."""
    buf = np.frombuffer(data, dtype=np.uint8)
    starts, ends = _runs((buf - ord("0")) < 10)  # uint8 wraps around below '0'
    missing = width - (ends - starts + 1)
    short = missing > 0
    if not short.any():
        return data
    return np.insert(buf, np.repeat(starts[short], missing[short]), ord("0")).tobytes()
