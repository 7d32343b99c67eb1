"""How names from the kernel (file targets, commands) are shown: one rule for
terminals and reports (``escape``: every character visible, none able to drive the
terminal or forge a line) and one for JSON (``text_fields``: exact, with the bytes of
a name that is not UTF-8 beside it). Pure functions; imports nothing of the package.
"""

from __future__ import annotations

import binascii

__all__ = ["escape", "text_fields"]

_NAMED_ESCAPES = {"\n": "\\n", "\t": "\\t", "\r": "\\r", "\\": "\\\\"}


def escape(text: str) -> str:
    """``text`` safe to print on a terminal, every character still visible:
    ``"a\\x1b[31m\\n"`` shows as ``a\\x1b[31m\\n``.

    ``\\n``, ``\\t``, ``\\r``, ``\\\\`` for a backslash, ``\\xNN`` for other ASCII
    control characters and for each byte that is not UTF-8 (a lone surrogate
    U+DC80..U+DCFF from ``os.fsdecode``), ``\\uNNNN`` / ``\\UNNNNNNNN`` for other
    unprintable characters (C1 controls, bidi overrides, line separators).
    """
    if text.isprintable() and "\\" not in text:
        return text
    out = []
    for ch in text:
        code = ord(ch)
        if ch in _NAMED_ESCAPES:
            out.append(_NAMED_ESCAPES[ch])
        elif 0xDC80 <= code <= 0xDCFF:  # a byte that was not UTF-8 (surrogateescape)
            out.append(f"\\x{code - 0xDC00:02x}")
        elif ch.isprintable():
            out.append(ch)
        elif code < 0x80:
            out.append(f"\\x{code:02x}")
        elif code < 0x10000:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    return "".join(out)


def text_fields(name: str, text: str) -> dict[str, str]:
    """``{name: text}`` for JSON; a name not in UTF-8 also gets ``{name}_bytes_b64``
    (the rules are in ``help(kcmp_rs.scan)``)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raw = text.encode("utf-8", "surrogateescape")
        return {
            name: raw.decode("utf-8", "replace"),
            f"{name}_bytes_b64": binascii.b2a_base64(raw, newline=False).decode("ascii"),
        }
    return {name: text}
