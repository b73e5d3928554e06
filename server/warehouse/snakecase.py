"""Segment's snake_case: a byte-for-byte port of github.com/segmentio/go-snakecase.

Warehouse table and column names must match what Segment would have produced, so that years of
queries written against Segment's warehouses keep working. Rules of the Go original:

* it works on bytes (UTF-8), and only ASCII letters and digits are kept: every other byte —
  spaces, punctuation, any non-ASCII character — separates words, and separators at the edges
  disappear;
* a leading run of lowercase letters, digits and inner ``_x`` (x lowercase or digit) is kept as
  it is (``sample_text`` stays, ``f_pX9`` → ``f_p_x9``);
* after that, each word is "a run of uppercase letters and digits, then a run of lowercase
  letters and digits" (``CStringRef`` → ``cstring_ref``, ``2FA Enabled`` → ``2fa_enabled``).
"""

from __future__ import annotations

from functools import lru_cache

_UNDERSCORE = ord("_")


def _lower(c: int) -> bool:
    return 97 <= c <= 122


def _upper(c: int) -> bool:
    return 65 <= c <= 90


def _digit(c: int) -> bool:
    return 48 <= c <= 57


@lru_cache(maxsize=65536)  # the same few hundred property names come back in every event
def snakecase(text: str) -> str:
    s = text.encode("utf-8")
    n = len(s)
    idx = 0
    has_lower = has_underscore = lowercase_since_underscore = False

    # The prefix that needs no change: lowercase, digits, and "_" followed by lowercase/digit.
    while idx < n:
        c = s[idx]
        if _lower(c):
            has_lower = True
            if has_underscore:
                lowercase_since_underscore = True
        elif _digit(c):
            pass
        elif c == _UNDERSCORE and 0 < idx < n - 1 and (_lower(s[idx + 1]) or _digit(s[idx + 1])):
            has_underscore = True
            lowercase_since_underscore = False
        else:
            break
        idx += 1
    if idx == n:
        return text

    out = bytearray(s[:idx])
    # An uppercase run right after an all-digit prefix ("5TEst") or after "_<digits>" ("edf_6N")
    # belongs to the current word rather than starting a new one.
    if _upper(s[idx]) and (not has_lower or (has_underscore and not lowercase_since_underscore)):
        while idx < n and (_upper(s[idx]) or _digit(s[idx])):
            out.append(s[idx] | 0x20)
            idx += 1
        while idx < n and (_lower(s[idx]) or _digit(s[idx])):
            out.append(s[idx])
            idx += 1

    while idx < n:
        c = s[idx]
        if not (_lower(c) or _upper(c) or _digit(c)):
            idx += 1
            continue
        if out:
            out.append(_UNDERSCORE)
        while idx < n and (_upper(s[idx]) or _digit(s[idx])):
            out.append(s[idx] | 0x20)  # ASCII lowercase (digits are unchanged by the bit)
            idx += 1
        while idx < n and (_lower(s[idx]) or _digit(s[idx])):
            out.append(s[idx])
            idx += 1
    return out.decode("ascii")
