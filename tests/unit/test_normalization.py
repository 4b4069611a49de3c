"""Key normalization: the issue's examples, each rule on and off, and the properties (idempotence, and
the bulk paths, on lists and on Arrow arrays, agreeing with the scalar reference on every input)."""

from __future__ import annotations

import random
import unicodedata
from unittest import mock

import attrs
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from keysync.domain import normalization
from keysync.domain.normalization import (
    DELIMITER_PUNCTUATION,
    LETTERS,
    NormalizationRules,
    keys_that_lost_letters,
    letter_loss_candidates,
    lost_letters,
    normalize_array,
    normalize_key,
    normalize_keys,
    rows_normalized_to,
)

ALL_ON = NormalizationRules(pad_numbers=5)
ALL_OFF = NormalizationRules(trim=False, uppercase=False, strip_non_alnum=False, collapse_delims="")


def only(**changes: object) -> NormalizationRules:
    """All rules off except the given ones."""
    return attrs.evolve(ALL_OFF, **changes)


# ---- The issue's examples ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("  cust_123 ", "CUST-00123"),
        ("#prod..abc--789*", "PROD-ABC-00789"),
        ("'CUST::00042'", "CUST-00042"),
        ("ＣＵＳＴ－００１", "CUST-00001"),
    ],
)
def test_issue_examples(raw: str, expected: str) -> None:
    assert normalize_key(raw, ALL_ON) == expected
    assert normalize_keys([raw], ALL_ON) == [expected]
    assert normalize_keys([raw] * 100, ALL_ON) == [expected] * 100  # the vectorized path


# ---- Each rule on and off ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rules", "raw", "expected"),
    [
        (ALL_OFF, " ａ-b ", " a-b "),  # NFKC always applies
        (ALL_OFF, "ﬁ²", "fi2"),
        (only(trim=True), " \t\x1c a b \x1f\n", "a b"),  # str.isspace() whitespace, incl. \x1c-\x1f
        (only(uppercase=True), "abc-ß", "ABC-SS"),
        (only(strip_non_alnum=True), "a-b c#é1", "abc1"),  # delimiters go too when collapse is off
        (only(strip_non_alnum=True, collapse_delims="-"), "#a - b__c#", "a-b-c"),
        (only(collapse_delims="-"), "--a . b\t/c\\d:|e  ", "a-b-c-d-e"),
        (only(collapse_delims="-"), "a#b", "a#b"),  # collapsing alone removes nothing else
        (only(collapse_delims="::"), " a-b ", "a::b"),
        (only(collapse_delims="-"), " - ", ""),
        (only(pad_numbers=4), "a1b12345c012", "a0001b12345c0012"),
        (only(pad_numbers=1), "a0b", "a0b"),
        (only(pad_numbers=3), "٣4", "٣004"),  # only ASCII digits count (NFKC keeps Arabic-Indic ones)
    ],
)
def test_each_rule(rules: NormalizationRules, raw: str, expected: str) -> None:
    assert normalize_key(raw, rules) == expected
    assert normalize_keys([raw] * 100, rules) == [expected] * 100


def test_uppercase_is_renormalized() -> None:
    # 'ΐ'.upper() is three code points that NFKC composes back to two: without the second NFKC the
    # first pass would return a string the second pass changes.
    rules = only(uppercase=True)
    once = normalize_key("ΐ", rules)
    assert once == normalize_key(once, rules)


@pytest.mark.parametrize("joiner", ["-", "_", "::", "\\", "|.", DELIMITER_PUNCTUATION])
def test_valid_collapse_strings(joiner: str) -> None:
    assert NormalizationRules(collapse_delims=joiner).collapse_delims == joiner


@pytest.mark.parametrize("joiner", ["+", " ", "a", "-+", "\t", "－"])
def test_collapse_must_be_delimiter_punctuation(joiner: str) -> None:
    with pytest.raises(ValueError, match="collapse_delims"):
        NormalizationRules(collapse_delims=joiner)


def test_pad_numbers_cannot_be_negative() -> None:
    with pytest.raises(ValueError):
        NormalizationRules(pad_numbers=-1)


# ---- Properties ---------------------------------------------------------------------------------

rules_strategy = st.builds(
    NormalizationRules,
    trim=st.booleans(),
    uppercase=st.booleans(),
    strip_non_alnum=st.booleans(),
    collapse_delims=st.one_of(st.just(""), st.text(st.sampled_from(DELIMITER_PUNCTUATION), min_size=1)),
    pad_numbers=st.integers(0, 8),
    ascii_fold=st.booleans(),
    letters=st.sampled_from(LETTERS),
)

# Keys full of what the rules act on: delimiters, digits, whitespace, control characters, full-width
# and compatibility forms, characters whose uppercase or NFKC is surprising.
KEY_CHARS = (
    "aZz09 -_./\\:|\t\n\x0b\x0c\r\x1c\x1f\x00\x7f#*'+ＣＵ０１－\u3000\u00a0\u2028\u0085ǆΐß´éﬁ²٣\u0301"
    "ÉçØЖй中が\u093f\u0915\u20dd"  # accented, Cyrillic, CJK, kana with a mark, a spacing and an enclosing mark
)
keyish = st.text(st.sampled_from(KEY_CHARS), max_size=20)
ascii_text = st.text(st.characters(codec="ascii"), max_size=20)
any_text = st.text(st.characters(exclude_categories=()), max_size=20)  # every category, surrogates too
texts = st.one_of(keyish, ascii_text, any_text)


@given(raw=texts, rules=rules_strategy)
@example(raw="ΐ", rules=only(uppercase=True))  # uppercase output that is not NFKC-normal
@example(raw=" ´x\u3000", rules=only(trim=True))  # NFKC turns ´ into a space and U+0301
@example(raw="a´", rules=only(strip_non_alnum=True, letters="unicode"))  # the mark meets the a once the space goes
def test_idempotent(raw: str, rules: NormalizationRules) -> None:
    once = normalize_key(raw, rules)
    assert normalize_key(once, rules) == once


@given(keys=st.lists(texts, max_size=10), rules=rules_strategy)
def test_bulk_equals_scalar_small(keys: list[str], rules: NormalizationRules) -> None:
    assert normalize_keys(keys, rules) == [normalize_key(key, rules) for key in keys]


@settings(deadline=None)  # the first call loads pyarrow's compute functions
@given(keys=st.lists(texts, max_size=30), rules=rules_strategy)
def test_bulk_equals_scalar_vectorized(keys: list[str], rules: NormalizationRules) -> None:
    # A threshold of 0 and tiny chunks send even short lists (mixed ASCII or not) through the byte
    # path, across several chunks.
    with mock.patch.object(normalization, "_SCALAR_BELOW", 0), mock.patch.object(normalization, "_LIST_CHUNK", 7):
        assert normalize_keys(keys, rules) == [normalize_key(key, rules) for key in keys]


@settings(max_examples=25, deadline=None)
@given(keys=st.lists(texts, min_size=1, max_size=10), rules=rules_strategy)
def test_bulk_equals_scalar_above_threshold(keys: list[str], rules: NormalizationRules) -> None:
    many = (keys * (normalization._SCALAR_BELOW // len(keys) + 1))[: normalization._SCALAR_BELOW + 5]
    assert normalize_keys(many, rules) == [normalize_key(key, rules) for key in many]


def test_bulk_equals_scalar_on_many_typical_keys() -> None:
    rng = random.Random(7)
    keys = [
        rng.choice(["cust_{}", " PROD-abc-{} ", "txn.2024.{}", "ＣＵＳＴ－{}", "#x..{}--*", "\t{}\x1c"]).format(
            rng.randrange(10 ** rng.randrange(1, 8))
        )
        for _ in range(5_003)
    ]
    rule_sets = (ALL_ON, NormalizationRules(), only(trim=True, uppercase=True, pad_numbers=6))
    with mock.patch.object(normalization, "_LIST_CHUNK", 1_000):
        for rules in rule_sets:
            assert normalize_keys(keys, rules) == [normalize_key(key, rules) for key in keys]


# ---- Keys that lose letters: ascii_fold and letters ------------------------------------------------


@pytest.mark.parametrize(
    ("rules", "raw", "expected"),
    [
        (NormalizationRules(), "café-1", "CAF-1"),  # today's default: the letter goes
        (NormalizationRules(ascii_fold=True), "café-1", "CAFE-1"),
        (NormalizationRules(ascii_fold=True), "Ångström_ç", "ANGSTROM-C"),
        (NormalizationRules(ascii_fold=True), "Жук-1", "1"),  # folding does not make Cyrillic ASCII
        (NormalizationRules(letters="unicode"), "café-1", "CAFÉ-1"),
        (NormalizationRules(letters="unicode"), " жук_1 ", "ЖУК-1"),
        (NormalizationRules(letters="unicode"), "東京#01", "東京01"),
        (NormalizationRules(letters="unicode"), "किताब", "किताब"),  # vowel signs are marks: kept with their letter
        (NormalizationRules(letters="unicode", ascii_fold=True), "Żółw-é", "ZOŁW-E"),  # ł has no decomposition
        (NormalizationRules(letters="unicode", pad_numbers=3), "٣-4", "٣-004"),  # only ASCII digits are padded
        (only(ascii_fold=True, trim=True), "x \u0301", "x"),  # trimmed again after the mark is dropped
    ],
)
def test_keeping_letters(rules: NormalizationRules, raw: str, expected: str) -> None:
    assert normalize_key(raw, rules) == expected
    assert normalize_keys([raw] * 100, rules) == [expected] * 100


def test_distinct_non_latin_keys_stay_distinct_under_unicode_letters() -> None:
    keys = ["ЖУК-1", "МАК-1", "東京-1", "大阪-1"]
    assert len(set(normalize_keys(keys, NormalizationRules()))) == 1  # today: all become "1"
    assert len(set(normalize_keys(keys, NormalizationRules(letters="unicode")))) == 4


def test_letters_must_be_ascii_or_unicode() -> None:
    with pytest.raises(ValueError, match="letters"):
        NormalizationRules(letters="latin")


def test_rules_recorded_before_the_new_options_load_and_compare_equal() -> None:
    # What a run recorded before ascii_fold and letters existed.
    old = {"trim": True, "uppercase": True, "strip_non_alnum": True, "collapse_delims": "-", "pad_numbers": 0}
    assert NormalizationRules(**old) == NormalizationRules()
    assert NormalizationRules().as_options() == old
    assert (
        NormalizationRules().describe() == "nfkc,trim=True,uppercase=True,strip_non_alnum=True,"
        "collapse_delims='-',pad_numbers=0"
    )
    changed = NormalizationRules(letters="unicode", ascii_fold=True)
    assert changed.as_options() == {**old, "ascii_fold": True, "letters": "unicode"}
    assert NormalizationRules(**changed.as_options()) == changed
    assert changed.describe().endswith(",ascii_fold=True,letters='unicode'")


@pytest.mark.parametrize(
    ("rules", "lost"),
    [
        (NormalizationRules(), ["CAFÉ-1", "ЖУК", "東京-1", "٣٣"]),
        (NormalizationRules(ascii_fold=True), ["ЖУК", "東京-1", "٣٣"]),  # É folds to E: nothing lost
        (NormalizationRules(letters="unicode"), []),
        (NormalizationRules(strip_non_alnum=False), []),
    ],
)
def test_keys_that_lost_letters(rules: NormalizationRules, lost: list[str]) -> None:
    keys = ["CAF-1", "CAFÉ-1", "ЖУК", "CAFÉ-1", "東京-1", "#-é", "٣٣", "x\u00a0y"]
    # "#-é" is counted only where é is dropped: it is 'key is empty after normalization' then as well.
    expected = [k for k in keys if k in lost or (k == "#-é" and "CAFÉ-1" in lost)]
    assert keys_that_lost_letters(keys, rules) == list(dict.fromkeys(expected))
    assert keys_that_lost_letters(["A", "B"] * 100, rules) == []


@given(raw=texts, rules=rules_strategy)
def test_lost_letters_means_a_letter_went_missing(raw: str, rules: NormalizationRules) -> None:
    # A key lost letters exactly when letters "unicode" keeps more of its letters and digits.
    if lost_letters(raw, rules):
        kept = normalize_key(raw, attrs.evolve(rules, letters="unicode"))
        assert sum(c.isalnum() for c in kept) > sum(c.isalnum() for c in normalize_key(raw, rules))


# ---- normalize_array: Arrow arrays in, Arrow arrays out ----------------------------------------------

# Text Arrow can hold (no lone surrogates), heavy in what the rules and the scan for changed keys act on: keys
# that are canonical or nearly (the scan must tell them apart), whitespace of every kind, delimiters, full-width
# and half-width forms, accents (composed and not), Cyrillic, CJK, other scripts' digits, control characters, and
# code points some Pythons' Unicode leaves unassigned that a newer one gives an NFKC mapping (U+209D, U+A7F1,
# U+1CCD6: pyarrow's utf8_normalize makes them "w", "S", "A").
NEAR_CANONICAL = "AZ09-_ a"
ARROW_CHARS = KEY_CHARS + "\u2000\u200b\u3000\u1680\u202f\uff3f\uff0e\uff65ｶﾞ٠۵߀०๓１\u209d\ua7f1\U0001ccd6"
arrow_text = st.one_of(
    st.text(st.sampled_from(NEAR_CANONICAL), max_size=12),
    st.text(st.sampled_from(ARROW_CHARS), max_size=20),
    st.text(st.characters(exclude_categories=("Cs",)), max_size=20),
)
arrow_types = st.sampled_from([pa.string(), pa.large_string()])


@settings(deadline=None)  # the first call loads pyarrow's compute functions
@given(keys=st.lists(arrow_text, max_size=40), rules=rules_strategy, kind=arrow_types, cut=st.integers(0, 3))
@example(keys=["AB-1", "23"], rules=NormalizationRules(pad_numbers=3), kind=pa.string(), cut=0)  # runs meet
@example(keys=["1", "", "2"], rules=NormalizationRules(pad_numbers=2), kind=pa.string(), cut=0)  # across ""
@example(keys=["A-", "-B", "A--B"], rules=NormalizationRules(), kind=pa.string(), cut=0)
@example(keys=["0-", ""], rules=only(strip_non_alnum=True), kind=pa.string(), cut=0)  # an empty key last
@example(keys=["CUST\u209d", "ＣＵＳＴ－１"], rules=NormalizationRules(), kind=pa.string(), cut=0)
def test_array_equals_reference(keys: list[str], rules: NormalizationRules, kind: pa.DataType, cut: int) -> None:
    # Tiny slices for the scan, and an array that starts inside its buffers (a slice), like a reader's chunk.
    array = pa.array(["#", *keys], kind).slice(1) if cut else pa.array(keys, kind)
    with mock.patch.object(normalization, "_CHUNK", cut * 3 or normalization._CHUNK):
        normalized = normalize_array(array, rules)
    assert normalized.type == kind
    assert normalized.to_pylist() == [normalize_key(key, rules) for key in keys]
    assert normalize_array(normalized, rules).equals(normalized)  # idempotent


@settings(max_examples=30, deadline=None)
@given(keys=st.lists(arrow_text, min_size=1, max_size=12), rules=rules_strategy, chunks=st.integers(1, 4))
def test_chunked_array_stays_chunked(keys: list[str], rules: NormalizationRules, chunks: int) -> None:
    array = pa.chunked_array([pa.array(keys, pa.string())] * chunks)
    normalized = normalize_array(array, rules)
    assert [len(chunk) for chunk in normalized.chunks] == [len(keys)] * chunks
    assert normalized.to_pylist() == [normalize_key(key, rules) for key in keys] * chunks


def test_array_on_many_typical_keys() -> None:
    rng = random.Random(11)
    forms = ["CUST-{}", "cust_{}", " PROD-ABC-{}  ", "TXN.2024.{}", "ＣＵＳＴ－{}", "#x..{}--*", "Ж-{}", "{}", ""]
    keys = [rng.choice(forms).format(rng.randrange(10 ** rng.randrange(1, 9))) for _ in range(20_011)]
    for rules in (NormalizationRules(), ALL_ON, only(trim=True, pad_numbers=8), NormalizationRules(letters="unicode")):
        expected = [normalize_key(key, rules) for key in keys]
        assert normalize_array(pa.array(keys), rules).to_pylist() == expected
        assert normalize_keys(keys, rules) == expected


@pytest.mark.parametrize("rules", [NormalizationRules(), ALL_ON, ALL_OFF])
def test_an_array_of_canonical_keys_comes_back_as_it_is(rules: NormalizationRules) -> None:
    keys = [f"CUST-{n:05d}" for n in range(200)]
    array = pa.array(keys)
    assert normalize_array(array, rules) is array  # nothing to do: not even a copy


def test_full_width_keys_are_folded_as_nfkc_does() -> None:
    # normalize_array folds the keys made only of ASCII and the full-width forms of it as bytes.
    wide = ["\u3000", *map(chr, range(0xFF01, 0xFF5F))]
    keys = [f"a{c}{c}1{c}" for c in wide] + ["ＣＵＳＴ－００１", "", "plain"]
    assert all(pc.match_substring_regex(pa.array(keys), normalization._FULL_WIDTH).to_pylist())
    for kind in (pa.string(), pa.large_string()):
        folded = normalization._fold_full_width(pa.array(["#", *keys], kind).slice(1))
        assert folded.type == kind
        assert folded.to_pylist() == [unicodedata.normalize("NFKC", key) for key in keys]
    # Characters that are not full-width forms of ASCII: composed one by one.
    others = ["\uff00", "\uff5f", "\uff65", "ｶﾞ", "é", "\u3001", "\U0001ccd6"]
    assert not any(pc.match_substring_regex(pa.array(others), normalization._FULL_WIDTH).to_pylist())


def test_array_must_hold_strings_and_no_nulls() -> None:
    with pytest.raises(TypeError, match="string"):
        normalize_array(pa.array([1, 2]), NormalizationRules())
    with pytest.raises(ValueError, match="null"):
        normalize_array(pa.array(["A", None]), NormalizationRules())


def test_rows_normalized_to_a_key() -> None:
    keys = pa.array([" cust_1 ", "CUST-2", "cust-1", "ＣＵＳＴ－１", "CUST-10"])
    assert rows_normalized_to(keys, "CUST-1", NormalizationRules()).tolist() == [0, 2, 3]
    assert rows_normalized_to(keys, "CUST-00001", NormalizationRules(pad_numbers=5)).tolist() == [0, 2, 3]
    assert rows_normalized_to(pa.chunked_array([keys, keys]), "CUST-2", NormalizationRules()).tolist() == [1, 6]


def test_the_audit_finds_a_key_also_in_a_column_arrow_cannot_hold() -> None:
    from keysync.application.key_events import rows_holding

    rules = NormalizationRules()
    assert rows_holding("cust_1\nx\ud800\nCUST-1", "CUST-1", rules).tolist() == [0, 2]
    assert rows_holding("cust_1\nCUST-2", "CUST-2", rules).tolist() == [1]
    assert rows_holding(["a-\ud800", "A"], "A", rules).tolist() == [0, 1]


@settings(deadline=None)
@given(keys=st.lists(arrow_text, max_size=40), rules=rules_strategy)
def test_letter_loss_candidates_leave_out_no_key_that_lost_letters(keys: list[str], rules: NormalizationRules) -> None:
    candidates = letter_loss_candidates(pa.array(keys, pa.string()))
    assert set(candidates) <= set(keys)
    assert keys_that_lost_letters(candidates, rules) == keys_that_lost_letters(keys, rules)
