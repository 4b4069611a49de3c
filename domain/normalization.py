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
from collections.abc import Iterable, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from keysync.domain.rules import DELIMITER_PUNCTUATION, LETTERS, NormalizationRules  # noqa: F401 (re-exported)

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


def letter_loss_candidates(keys: pa.Array) -> list[str]:
    """The keys of an Arrow array that may lose letters: those neither ASCII nor made only of ASCII and its
    full-width forms (NFKC turns those into ASCII, so nothing non-ASCII is left to lose). Few, in real exports."""
    unusual = keys.filter(pc.invert(pc.string_is_ascii(keys)))
    return unusual.filter(pc.invert(pc.match_substring_regex(unusual, _FULL_WIDTH))).to_pylist()


# ---- Bulk paths: Arrow arrays, and lists -------------------------------------------------------------
# An Arrow array's keys are never turned into Python strings. Most real keys are already canonical, so the
# rows a rule would change are found first, in a few numpy passes over the array's bytes, and only those
# are normalized:
#
# 1. Suspects: a key is left as it is unless it holds a byte some rule acts on (not ASCII, lower case, a
#    character strip_non_alnum drops, a delimiter other than the joiner), the joiner at either end or twice
#    in a row, edge whitespace for trim alone, or a digit run shorter than pad_numbers. The test may send a
#    canonical key on (that costs time only), never the reverse.
# 2. Non-ASCII suspects (few) are NFKC-composed: full-width keys by a byte fold, the rest one by one with
#    unicodedata, the reference's own tables (pyarrow's utf8_normalize follows a newer Unicode than some
#    Pythons and disagrees on code points they leave unassigned). Those NFKC turns into ASCII go on with the
#    ASCII keys; the rest (upper(), ascii_fold and letters "unicode" are Python's Unicode too) go through
#    normalize_key.
# 3. ASCII suspects are laid end to end with _SEP before, between and after them, and each rule is one
#    C-speed pass over those bytes: bytes.translate (uppercase, strip_non_alnum, delimiter marking), then
#    numpy (trim, collapse, padding). _SEP is not ASCII, so no rule treats it as whitespace, delimiter or
#    digit: runs never cross from one key into the next, and a key's edges are the bytes next to a _SEP.
#
# A list of strings takes step 3 alone, on all its ASCII keys, joined into one byte string and split back.

_SCALAR_BELOW = 64  # measured: below ~30 keys a list's set-up costs more than it saves
_LIST_CHUNK = 100_000  # keys of a list per pass: bounds memory and keeps the buffers cache-sized
_CHUNK = 1 << 15  # rows per suspect scan: its temporary arrays stay in cache (measured: 1.6x faster than 1 << 20)
_SEP = 0x80
_DELIM = 0x81  # every delimiter becomes this byte until runs are collapsed; not ASCII either

# str.isspace() on ASCII is more than " \t\n\r\f\v": \x1c-\x1f count too (for strip() and re's \s).
_ASCII_SPACES = {c for c in range(128) if chr(c).isspace()}
_ASCII_DELIMS = _ASCII_SPACES | {ord(c) for c in DELIMITER_PUNCTUATION}
_ASCII_ALNUM = {c for c in range(128) if chr(c).isalnum()}
_IS_SPACE = np.array([c in _ASCII_SPACES for c in range(256)])

Keys = pa.Array | pa.ChunkedArray


def normalize_array(keys: Keys, rules: NormalizationRules) -> Keys:
    """Normalize an Arrow array of keys (string or large_string, no nulls): the values of
    [normalize_key(k, rules) for k in keys], in an array of the same kind (chunks stay chunks)."""
    if isinstance(keys, pa.ChunkedArray):
        return pa.chunked_array([normalize_array(chunk, rules) for chunk in keys.chunks], keys.type)
    rows, normalized = _changed_rows(keys, rules)
    if not len(rows):
        return keys
    # One take from the keys followed by their normalized rows: cheaper than pc.replace_with_mask.
    order = np.arange(len(keys), dtype=np.int32 if 2 * len(keys) < 2**31 else np.int64)
    order[rows] = len(keys) + np.arange(len(rows))
    return pa.concat_arrays([keys.cast(normalized.type), normalized]).take(pa.array(order))


def rows_normalized_to(keys: Keys, wanted: str, rules: NormalizationRules) -> np.ndarray:
    """The rows of ``keys`` whose key normalizes to ``wanted`` (a normalized key), in order."""
    return np.flatnonzero(pc.equal(normalize_array(keys, rules), wanted).to_numpy(zero_copy_only=False))


def normalize_keys(keys: Sequence[str], rules: NormalizationRules) -> list[str]:
    """Normalize many keys: exactly [normalize_key(k, rules) for k in keys], but vectorized.

    A list is not taken through Arrow: its strings joined into one byte string go through the same byte passes
    at less cost than an array built from them and a list built back, once many keys change (measured on the
    mock exports: 0.29 s against 0.42 s for a million keys of which half change)."""
    if len(keys) < _SCALAR_BELOW:
        return [normalize_key(key, rules) for key in keys]
    if "".join(keys).isascii():  # one C-level scan; the usual case
        return _normalize_ascii_list(keys, rules)
    # Mixed input: NFKC first (full-width keys become ASCII), vectorize what is ASCII then, send the rest through
    # the reference, keep the order.
    composed = [key if key.isascii() else unicodedata.normalize("NFKC", key) for key in keys]
    ascii_out = iter(_normalize_ascii_list([key for key in composed if key.isascii()], rules))
    pairs = zip(keys, composed, strict=True)
    return [next(ascii_out) if done.isascii() else normalize_key(key, rules) for key, done in pairs]


def _normalize_ascii_list(keys: Sequence[str], rules: NormalizationRules) -> list[str]:
    table, delete = _byte_rules(rules)
    sep = chr(_SEP)
    out: list[str] = []
    for start in range(0, len(keys), _LIST_CHUNK):
        chunk = keys[start : start + _LIST_CHUNK]
        if rules.trim and not rules.strip_non_alnum and not rules.collapse_delims:
            chunk = [key.strip() for key in chunk]  # otherwise a later step drops edge whitespace anyway
        data = sep.join(["", *chunk, ""]).encode("latin-1").translate(table, delete)
        out += _apply_byte_rules(data, rules).decode("latin-1").split(sep)[1:-1]
    return out


def _changed_rows(keys: pa.Array, rules: NormalizationRules) -> tuple[np.ndarray, pa.Array]:
    """The rows whose key a rule may change (sorted), and their normalized keys."""
    if not (pa.types.is_string(keys.type) or pa.types.is_large_string(keys.type)):
        raise TypeError(f"keys must be an Arrow string array, got {keys.type}")
    if keys.null_count:
        raise ValueError("keys must not be null")
    suspect = [_suspects(keys.slice(start, _CHUNK), rules) for start in range(0, len(keys), _CHUNK)]
    rows = np.flatnonzero(np.concatenate(suspect)) if suspect else np.zeros(0, dtype=np.int64)
    return rows, _normalize_suspects(keys.take(pa.array(rows)), rules)


def _buffers(keys: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """The array's offsets (from 0, as int64) and the bytes they point into, without copying the bytes."""
    if not len(keys):
        return np.zeros(1, dtype=np.int64), np.zeros(0, dtype=np.uint8)
    _, offsets_buffer, data_buffer = keys.buffers()
    dtype = np.int64 if pa.types.is_large_string(keys.type) else np.int32
    offsets = np.frombuffer(offsets_buffer, dtype)[keys.offset : keys.offset + len(keys) + 1].astype(np.int64)
    data = np.frombuffer(data_buffer, np.uint8) if data_buffer is not None else np.zeros(0, dtype=np.uint8)
    return offsets - offsets[0], data[offsets[0] : offsets[-1]]


def _suspects(keys: pa.Array, rules: NormalizationRules) -> np.ndarray:
    """Per row of ``keys``, whether a rule may change its key (every key a rule changes is a suspect)."""
    offsets, data = _buffers(keys)
    if not len(data):
        return np.zeros(len(keys), dtype=bool)  # only empty keys: no rule changes those
    table, edge, joiner = _suspect_bytes(rules)
    # One byte more, never suspect, so that every key's segment for reduceat below is in range; an empty key's
    # segment is its neighbour's first byte then, and it may be a suspect for nothing (that costs time only).
    padded = bytearray(data)
    padded.append(0)
    bad = np.frombuffer(padded.translate(table), dtype=bool)  # writable: a bytearray
    bad[-1] = False
    if rules.pad_numbers > 1:
        bad[:-1] |= _short_digit_runs(data, offsets, rules.pad_numbers)
    # Where a key starts and ends (an empty key reads a neighbour's byte here: again time only).
    first, last = np.minimum(offsets[:-1], len(data) - 1), offsets[1:] - 1
    if joiner is not None:  # the joiner twice in a row, or at either end
        is_joiner = data == joiner
        bad[1:-1] |= is_joiner[1:] & is_joiner[:-1]
        return np.logical_or.reduceat(bad, offsets[:-1]) | is_joiner[first] | is_joiner[last]
    suspect = np.logical_or.reduceat(bad, offsets[:-1])
    if edge is not None:
        suspect |= edge[data[first]] | edge[data[last]]
    return suspect


@functools.cache
def _suspect_bytes(rules: NormalizationRules) -> tuple[bytes, np.ndarray | None, int | None]:
    """A bytes.translate table marking (with 1) the bytes that make a key suspect anywhere; the bytes that do at
    either end of a key, if some besides the joiner do (else None); and the joiner if it is one byte (else None:
    off, or longer, and then every delimiter makes a key suspect)."""
    suspect = set(range(128, 256))  # not ASCII: NFKC, and maybe more
    if rules.uppercase:
        suspect |= set(range(ord("a"), ord("z") + 1))
    if rules.strip_non_alnum:
        suspect |= set(range(128)) - _ASCII_ALNUM - (_ASCII_DELIMS if rules.collapse_delims else set())
    joiner = ord(rules.collapse_delims) if len(rules.collapse_delims) == 1 else None
    if rules.collapse_delims:  # every delimiter run must already be one joiner, inside the key
        suspect |= _ASCII_DELIMS - {joiner}
    edge = None
    if rules.trim and not rules.strip_non_alnum and not rules.collapse_delims:
        edge = np.array([c in _ASCII_SPACES for c in range(256)])
    return bytes(c in suspect for c in range(256)), edge, joiner


def _short_digit_runs(data: np.ndarray, offsets: np.ndarray, width: int) -> np.ndarray:
    """Per byte, whether a run of ASCII digits shorter than width begins there, or a run crosses from one key
    into the next there (the scan below sees it as one: both keys are suspects then)."""
    digit = (data - ord("0")) < 10  # uint8 wraps around below '0'
    short = np.empty_like(digit)
    short[0] = digit[0]
    np.greater(digit[1:], digit[:-1], out=short[1:])  # the first digit of each run
    long = _all_within(digit, width)  # [i]: bytes i .. i + width - 1 are digits
    np.greater(short[: len(long)], long, out=short[: len(long)])
    inner = offsets[(offsets > 0) & (offsets < len(data))]
    crossed = inner[digit[inner - 1] & digit[inner]]
    short[crossed] = short[crossed - 1] = True
    return short


def _all_within(mask: np.ndarray, size: int) -> np.ndarray:
    """[i] = mask[i : i + size].all(), for every i where that window fits: log2(size) passes, not size."""
    if len(mask) < size:
        return np.zeros(0, dtype=bool)
    span = 1
    while span * 2 <= size:
        mask = mask[:-span] & mask[span:]  # now [i] covers 2 * span elements
        span *= 2
    overlap = size - span  # two windows of span elements, overlapping, cover size elements
    return mask[: len(mask) - overlap] & mask[overlap:]


def _normalize_suspects(keys: pa.Array, rules: NormalizationRules) -> pa.Array:
    """Normalize every key of ``keys``: see the steps above."""
    not_ascii = _rows(pc.invert(pc.string_is_ascii(keys)))
    if not len(not_ascii):
        return _normalize_ascii(keys, rules)
    raw = keys.take(pa.array(not_ascii))
    composed = _nfkc(raw)
    special = _rows(pc.invert(pc.string_is_ascii(composed)))  # still not ASCII after NFKC: for the reference
    composed = _replaced(composed, special, [""] * len(special))
    out = _normalize_ascii(_replaced(keys, not_ascii, composed), rules)
    if not len(special):
        return out
    return _replaced(out, not_ascii[special], [normalize_key(key, rules) for key in raw.take(special).to_pylist()])


# Keys made only of ASCII and full-width forms of it (U+FF01-U+FF5E, and U+3000 for a space), which NFKC turns
# character by character into ASCII: most non-ASCII keys in practice.
_FULL_WIDTH = r"^[\x{0}-\x{7f}\x{3000}\x{ff01}-\x{ff5e}]*$"


def _nfkc(keys: pa.Array) -> pa.Array:
    """NFKC as unicodedata does it: full-width keys folded as bytes, the rest one by one. (pyarrow's
    utf8_normalize follows a newer Unicode than some Pythons, and would disagree with normalize_key.)"""
    wide = _rows(pc.match_substring_regex(keys, _FULL_WIDTH))
    if len(wide) == len(keys):
        return _fold_full_width(keys)
    others = np.setdiff1d(np.arange(len(keys)), wide, assume_unique=True)
    composed = [unicodedata.normalize("NFKC", key) for key in keys.take(others).to_pylist()]
    order = np.empty(len(keys), dtype=np.int64)
    order[wide] = np.arange(len(wide))
    order[others] = len(wide) + np.arange(len(others))
    folded = _fold_full_width(keys.take(pa.array(wide)))
    return pa.concat_arrays([folded, pa.array(composed, keys.type)]).take(pa.array(order))


def _fold_full_width(keys: pa.Array) -> pa.Array:
    """NFKC of keys that match _FULL_WIDTH: each three-byte character becomes the ASCII byte it stands for."""
    offsets, data = _buffers(keys)
    lead = np.flatnonzero(data >= 0xE0)  # E3 80 80 is U+3000; EF BC 81-BF, EF BD 80-9E are U+FF01-U+FF5E
    second, third = data[lead + 1], data[lead + 2]
    ascii_byte = np.where(data[lead] == 0xE3, ord(" "), np.where(second == 0xBC, third - 0x60, third - 0x20))
    folded = data.copy()
    folded[lead] = ascii_byte
    kept = (data & 0xC0) != 0x80  # every byte but the two continuation bytes of each character
    kind, dtype = (pa.large_string(), np.int64) if pa.types.is_large_string(keys.type) else (pa.string(), np.int32)
    before = np.zeros(len(data) + 1, dtype=dtype)  # kept bytes before each position
    np.cumsum(kept, out=before[1:])
    buffers = [None, pa.py_buffer(before[offsets]), pa.py_buffer(folded[kept])]
    return pa.Array.from_buffers(kind, len(keys), buffers)


def _rows(mask: pa.Array) -> np.ndarray:
    return np.flatnonzero(mask.to_numpy(zero_copy_only=False))


def _replaced(keys: pa.Array, rows: np.ndarray, values: pa.Array | list[str]) -> pa.Array:
    """``keys`` with the key in each of ``rows`` replaced by the value at the same place in ``values``."""
    if not len(rows):
        return keys
    mask = np.zeros(len(keys), dtype=bool)
    mask[rows] = True
    return pc.replace_with_mask(keys, pa.array(mask), pa.array(values, keys.type))


def _normalize_ascii(keys: pa.Array, rules: NormalizationRules) -> pa.Array:
    """Normalize keys that are all ASCII, one pass per rule over their bytes laid end to end."""
    offsets, data = _buffers(keys)
    laid = np.insert(data, offsets, _SEP)  # a _SEP before every key and after the last
    if rules.trim and not rules.strip_non_alnum and not rules.collapse_delims:
        laid = _trim(laid)  # otherwise a later step drops edge whitespace anyway
    table, delete = _byte_rules(rules)
    laid = np.frombuffer(_apply_byte_rules(laid.tobytes().translate(table, delete), rules), dtype=np.uint8)
    sep = laid == _SEP
    offsets = np.flatnonzero(sep) - np.arange(len(keys) + 1)  # each _SEP before a key shifts it by one
    large = pa.types.is_large_string(keys.type) or offsets[-1] >= 2**31
    kind, dtype = (pa.large_string(), np.int64) if large else (pa.string(), np.int32)
    buffers = [None, pa.py_buffer(offsets.astype(dtype)), pa.py_buffer(laid[~sep])]
    return pa.Array.from_buffers(kind, len(keys), buffers)


def _apply_byte_rules(data: bytes, rules: NormalizationRules) -> bytes:
    """Collapse and padding over keys laid end to end between _SEPs, after _byte_rules' translate."""
    if rules.collapse_delims:
        data = _collapse(data, rules.collapse_delims.encode("ascii"))
    if rules.pad_numbers:
        data = _pad_numbers(data, rules.pad_numbers)
    return data


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


def _trim(laid: np.ndarray) -> np.ndarray:
    """Drop the whitespace runs at either end of each key."""
    starts, ends = _runs(_IS_SPACE[laid])
    at_edge = (laid[starts - 1] == _SEP) | (laid[ends + 1] == _SEP)
    inside = np.zeros(len(laid), dtype=np.int8)
    inside[starts[at_edge]] = 1  # runs are apart: no start is another run's end + 1
    inside[ends[at_edge] + 1] = -1
    return laid[np.cumsum(inside) == 0]


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
    starts, ends = _runs((buf - ord("0")) < 10)
    missing = width - (ends - starts + 1)
    short = missing > 0
    if not short.any():
        return data
    return np.insert(buf, np.repeat(starts[short], missing[short]), ord("0")).tobytes()
