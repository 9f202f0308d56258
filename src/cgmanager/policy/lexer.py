"""Tokens of libcgroup's configuration syntax (``cgconfig.conf``), with line numbers.

libcgroup's lexer knows words (``[a-zA-Z0-9_-/.,]+``), double-quoted strings without escapes
(which may span lines), the punctuation ``{ } = ;`` and comment lines starting with ``#`` (or,
oddly, ``*``).  This one accepts the same files, plus ``#`` comments after text on a line and
a few more characters in unquoted words (``%`` for templates, ``:``, ``@``, ``+``); control
characters are refused everywhere, since names end up in ``/proc/<pid>/cgroup``.
"""

from __future__ import annotations

from dataclasses import dataclass

PUNCT = frozenset("{}=;")
#: characters that may appear in an unquoted word
_WORD_EXTRA = frozenset("_-/.,%:@+*~")
#: largest file accepted (a configuration is a few kilobytes; this bounds the daemon's work)
MAX_TEXT = 1 << 20


class ConfigError(Exception):
    """A problem in a policy file, with where it is."""

    def __init__(self, source: str, line: int, message: str) -> None:
        super().__init__(f"{source}:{line}: {message}")
        self.source = source
        self.line = line
        self.message = message


@dataclass(frozen=True, slots=True)
class Token:
    kind: str  # "word", "string" or one of PUNCT
    text: str
    line: int


def _word_char(c: str) -> bool:
    return c.isalnum() or c in _WORD_EXTRA


def tokenize(text: str, source: str = "<config>") -> list[Token]:
    """The tokens of *text*; :class:`ConfigError` on a character that fits nowhere."""
    if len(text) > MAX_TEXT:
        raise ConfigError(source, 1, f"file too large (more than {MAX_TEXT} bytes)")
    out: list[Token] = []
    i, n, line = 0, len(text), 1
    at_line_start = True
    while i < n:
        c = text[i]
        if c == "\n":
            line += 1
            i += 1
            at_line_start = True
            continue
        if c in " \t\r":
            i += 1
            continue
        if c == "#" or (c == "*" and at_line_start):
            end = text.find("\n", i)
            i = n if end < 0 else end
            continue
        at_line_start = False
        if c in PUNCT:
            out.append(Token(c, c, line))
            i += 1
        elif c == '"':
            end = text.find('"', i + 1)
            if end < 0:
                raise ConfigError(source, line, "unterminated quoted string")
            value = text[i + 1 : end]
            bad = next((ch for ch in value if ord(ch) < 0x20 and ch not in "\t\n"), None)
            if bad is not None or "\x7f" in value:
                raise ConfigError(source, line, "control character in a quoted string")
            out.append(Token("string", value, line))
            line += value.count("\n")
            i = end + 1
        elif _word_char(c):
            j = i
            while j < n and _word_char(text[j]):
                j += 1
            out.append(Token("word", text[i:j], line))
            i = j
        else:
            shown = repr(c) if c.isprintable() else f"U+{ord(c):04X}"
            raise ConfigError(source, line, f"unexpected character {shown}")
    return out
