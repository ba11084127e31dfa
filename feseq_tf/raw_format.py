"""Raw-value rules shared by the pipelines, the serving graph and the REST client.

How a raw value becomes a trimmed string, a missing value, a number, a timestamp, a
history entry or a vocabulary key, written once. The pipelines apply these rules vectorised with pyarrow, the serving graph with
TensorFlow string ops and the REST client in plain Python; each takes them from here.
This module uses the Python standard library only, so that any side can import it
without pulling in a data or model stack.

* Trimming: the characters of :data:`WHITESPACE` are removed at both ends of a value
  (the set of Arrow's ``utf8_trim_whitespace``; zero-width spaces are not whitespace).
* Missing: null, NaN, or a trimmed string in :data:`MISSING_TOKENS`.
* Numbers: a trimmed string that fully matches :data:`FLOAT_PATTERN` (no ``inf``,
  ``nan`` or ``1_000``, which Python's ``float`` would accept).
* Integer timestamps: a trimmed string that fully matches
  :data:`INTEGER_TIMESTAMP_PATTERN` (an integer, optionally with a zero fraction,
  ``"1700000000.0"``); removing :data:`TIMESTAMP_EXTRAS_PATTERN` leaves its digits.
* Canonical strings: a raw value as the pipelines write it into a vocabulary
  (:func:`canonical_string`: ``12.0`` -> ``"12"``, ``True`` -> ``"1"``).
* Histories: one string per history, the entries joined by :data:`HISTORY_SEPARATOR`
  (oldest first); every entry is trimmed and empty entries are padding
  (:func:`split_history`); a missing entry is a missing-value token
  (:func:`join_history` writes :data:`MISSING_ENTRY`).
* Vocabulary files: UTF-8, one value per line ending in ``"\\n"``, the value on line
  ``i`` (from 0) has id ``i + FIRST_VOCABULARY_ID``; id :data:`PAD_ID` is padding and
  :data:`OOV_ID` out-of-vocabulary, missing and rare values (:func:`read_vocabulary`,
  :func:`write_vocabulary`).

The patterns are written in the syntax that RE2 (pyarrow's ``match_substring_regex``,
``tf.strings.regex_full_match``) and Python's ``re`` read alike: ``[0-9]`` rather than
``\\d`` (Unicode digits in Python), two-digit ``\\x`` escapes and characters beyond
U+00FF as themselves (no ``\\x{...}`` or ``\\u`` escapes). Match them against the whole
string (``re.fullmatch``); they are anchored with ``^`` and ``$`` for RE2's partial
matchers.
"""

from __future__ import annotations

import decimal
import math
import re
from collections.abc import Iterable
from typing import Any

#: Trimmed strings that mean "no value".
MISSING_TOKENS: tuple[str, ...] = ("", "nan", "NaN", "NAN", "null", "NULL", "None", "\\N")
#: How a client writes a missing entry inside a history ("" is padding there).
MISSING_ENTRY = "NULL"
#: Separates the entries of a history written as one string.
HISTORY_SEPARATOR = "^"

#: Characters trimmed at both ends of a raw value (Arrow's ``utf8_trim_whitespace``).
WHITESPACE = (
    "\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680"
    + "".join(chr(c) for c in range(0x2000, 0x200B))
    + "\u2028\u2029\u202f\u205f\u3000"
)
#: The part of :data:`WHITESPACE` that ASCII-only trimming (C's ``isspace``, which
#: ``tf.strings.strip`` uses) removes.
ASCII_WHITESPACE = "\t\n\x0b\x0c\r "


def character_class(chars: str) -> str:
    """A regex character class matching exactly ``chars`` (RE2 and Python ``re``)."""
    if not chars:
        raise ValueError("chars must not be empty.")
    parts = []
    for ch in dict.fromkeys(chars):
        code = ord(ch)
        parts.append(f"\\x{code:02x}" if code < 0x100 else ch)
    return "[" + "".join(parts) + "]"


#: One whitespace character, as a regex.
WHITESPACE_CLASS = character_class(WHITESPACE)
#: Whitespace at the start or the end (replace every match by "" to trim).
TRIM_PATTERN = f"^{WHITESPACE_CLASS}+|{WHITESPACE_CLASS}+$"
#: A decimal number: optional sign, digits with an optional point, optional exponent.
FLOAT_PATTERN = r"^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?$"
#: An integer timestamp (at most 18 digits, so that it fits int64), optionally with a
#: zero fraction.
INTEGER_TIMESTAMP_PATTERN = r"^[+-]?[0-9]{1,18}(\.0*)?$"
#: What to remove from a matching timestamp to leave an integer literal.
TIMESTAMP_EXTRAS_PATTERN = r"^\+|\.0*$"

#: Floats with a larger magnitude are not written as integers (not all are exact).
MAX_EXACT_INTEGER = 2**53

PAD_ID = 0
OOV_ID = 1
#: Id of the first value of a vocabulary file (ids below it are reserved).
FIRST_VOCABULARY_ID = 2
VOCABULARY_ENCODING = "utf-8"


# ---- Python forms of the rules -------------------------------------------------------------
def trim(text: str) -> str:
    """``text`` without :data:`WHITESPACE` at either end."""
    return text.strip(WHITESPACE)


def is_missing(value: Any) -> bool:
    """Whether a raw value is missing: None, NaN, or a missing-value token once trimmed."""
    return clean(value) is None


def is_number(text: str) -> bool:
    """Whether a trimmed string is a number by :data:`FLOAT_PATTERN`."""
    return _full_match(FLOAT_PATTERN, text)


def is_integer_timestamp(text: str) -> bool:
    """Whether a trimmed string is an integer timestamp by :data:`INTEGER_TIMESTAMP_PATTERN`."""
    return _full_match(INTEGER_TIMESTAMP_PATTERN, text)


def _full_match(pattern: str, text: str) -> bool:
    return re.fullmatch(pattern, text) is not None


def canonical_string(value: Any) -> str:
    """A raw value as the pipelines write it into a vocabulary.

    Strings stay as they are (trimming comes later: ``"12.0"`` stays ``"12.0"``);
    integers print without a decimal point and so do integral floats below
    :data:`MAX_EXACT_INTEGER` (``12.0`` -> ``"12"``); other floats print as Arrow
    casts them to strings (the shortest round-trip digits, plain notation for
    magnitudes from 1e-6 to below 1e10, else ``1e-07`` as ``"1e-7"``, ``1.5e17`` as
    ``"1.5e+17"``); booleans are ``"1"``/``"0"``; None and NaN are ``""`` (missing).
    NumPy scalars count as the Python value they hold.

    The pipelines write a float column as integers only when every finite value of
    the column is integral and below :data:`MAX_EXACT_INTEGER`; a column that also
    holds fractions is written by the float rule throughout (``1e15`` then reads
    ``"1e+15"``). Categorical ids stored as floats are integral, so their two forms
    agree.
    """
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return ""
        if value == round(value) and abs(value) < MAX_EXACT_INTEGER:
            return str(int(value))
        return float_text(value)
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):  # NumPy scalars
        return canonical_string(value.item())
    return str(value)


def float_text(value: float) -> str:
    """A float as Arrow casts it to a string (see :func:`canonical_string`)."""
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    if math.isnan(value):
        return "nan"
    sign, digits, exponent = decimal.Decimal(repr(float(value))).normalize().as_tuple()
    text = "".join(map(str, digits))
    point = exponent + len(text)  # the value is 0.<text> * 10**point
    if -6 <= point - 1 < 10:
        if exponent >= 0:
            body = text + "0" * exponent
        elif point > 0:
            body = text[:point] + "." + text[point:]
        else:
            body = "0." + "0" * -point + text
    else:
        mantissa = text[0] + ("." + text[1:] if len(text) > 1 else "")
        body = f"{mantissa}e{'+' if point - 1 >= 0 else '-'}{abs(point - 1)}"
    return ("-" if sign else "") + body


def clean(value: Any) -> str | None:
    """A raw value as the pipelines read it: its canonical string trimmed, None if missing."""
    text = trim(canonical_string(value))
    return None if text in MISSING_TOKENS else text


def join_history(values: Iterable[Any]) -> str:
    """History entries (oldest first) -> one string: canonical strings joined by
    :data:`HISTORY_SEPARATOR`, missing entries (None, NaN) as :data:`MISSING_ENTRY`.

    Raises:
        ValueError: an entry holds the separator.
    """
    texts = []
    for v in values:
        text = MISSING_ENTRY if v is None or (isinstance(v, float) and math.isnan(v)) else None
        text = text if text is not None else canonical_string(v)
        if HISTORY_SEPARATOR in text:
            raise ValueError(
                f"A history entry must not contain {HISTORY_SEPARATOR!r}, got {text!r}."
            )
        texts.append(text)
    return HISTORY_SEPARATOR.join(texts)


def split_history(text: str) -> list[str]:
    """One history string -> its entries, trimmed, without the empty ones (padding)."""
    entries = (trim(t) for t in text.split(HISTORY_SEPARATOR))
    return [t for t in entries if t]


# ---- Vocabulary files ----------------------------------------------------------------------
def read_vocabulary(path: str) -> list[str]:
    """The values of a vocabulary file in id order (the first has id
    :data:`FIRST_VOCABULARY_ID`)."""
    with open(path, encoding=VOCABULARY_ENCODING, newline="\n") as fh:
        return [line[:-1] if line.endswith("\n") else line for line in fh]


def write_vocabulary(path: str, values: Iterable[Any], *, name: str | None = None) -> str:
    """Write a vocabulary file: one value (as ``str``) per line, in id order.

    Args:
        path: str. The file (its directory must exist).
        values: the values in id order.
        name: str or None. The field, for error messages. Defaults to ``path``.

    Raises:
        ValueError: a value contains a newline.
    """
    lines = []
    for v in values:
        v = str(v)
        if "\n" in v:
            raise ValueError(f"Vocabulary value of {name or path!r} contains a newline: {v!r}.")
        lines.append(v + "\n")
    with open(path, "w", encoding=VOCABULARY_ENCODING, newline="\n") as fh:
        fh.writelines(lines)
    return path
