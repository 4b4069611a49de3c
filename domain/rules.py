"""The normalization rules: which steps apply (keysync.domain.normalization applies them).

Apart from the code that applies them, so that reading a config or a run's options needs no array library.
"""

from __future__ import annotations

import attrs

# Characters that separate the parts of a key. Whitespace means anything str.isspace() accepts.
DELIMITER_PUNCTUATION = "-_./\\:|"
LETTERS = ("ascii", "unicode")  # what strip_non_alnum keeps: see keysync.domain.normalization's docstring


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
