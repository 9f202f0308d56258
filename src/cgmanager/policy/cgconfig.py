"""libcgroup's ``cgconfig.conf``, parsed into a model (pure: no I/O, names not yet resolved).

Accepted (libcgroup's grammar, a little more liberal)::

    mount { cpu = /sys/fs/cgroup/cpu; }          # ignored, with a note: the daemon never mounts
    namespace { cpu = daemons; }                  # groups in cpu live below daemons/
    default { perm { task { … } admin { … } } }   # perm of groups that give none
    group daemons/www {
        perm {
            task  { uid = root; gid = webmaster; fperm = 770; }
            admin { uid = root; gid = root; dperm = 775; fperm = 744; }
        }
        cpu { cpu.shares = 1000; }
        memory { memory.limit_in_bytes = 1G; }
    }
    template users/%u { cpu { cpu.shares = 100; } }   # made on demand by the rules engine

``perm`` may give ``task``, ``admin`` or both (libcgroup wants both).  What the daemon does with
each part is decided when planning (:mod:`cgmanager.policy.plan`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from .. import names
from ..errors import InvalidArgument
from .lexer import ConfigError, Token, tokenize

TASK_KEYS = frozenset({"uid", "gid", "fperm"})
ADMIN_KEYS = frozenset({"uid", "gid", "dperm", "fperm"})
#: bounds on what one configuration may describe (the daemon plans it all in memory)
MAX_GROUPS = 4096
MAX_VALUES_PER_BLOCK = 256


@dataclass(frozen=True)
class Setting:
    key: str
    value: str
    line: int


@dataclass(frozen=True)
class Perm:
    """``perm { task {…} admin {…} }``: ids as written (names or numbers), modes parsed."""

    line: int
    source: str
    task: dict[str, Setting] = field(default_factory=dict)
    admin: dict[str, Setting] = field(default_factory=dict)


@dataclass
class Block:
    """``<controller> { key = value; … }``"""

    controller: str
    line: int
    settings: list[Setting] = field(default_factory=list)


@dataclass
class Group:
    name: str  # relative path, e.g. "daemons/www"; templates keep their %u etc.
    line: int
    source: str
    template: bool = False
    perm: Perm | None = None
    blocks: list[Block] = field(default_factory=list)


@dataclass
class Config:
    groups: list[Group] = field(default_factory=list)
    templates: list[Group] = field(default_factory=list)
    default: Perm | None = None
    namespaces: dict[str, Setting] = field(default_factory=dict)
    #: what was accepted but has no effect here ("file:line: …")
    notes: list[str] = field(default_factory=list)

    def merge(self, other: Config, source: str) -> None:
        """Add another file's content (a configuration directory is read in name order)."""
        seen = {g.name for g in self.groups}
        for g in other.groups:
            if g.name in seen:
                raise ConfigError(source, g.line, f"group {g.name} is described twice")
            seen.add(g.name)
        self.groups += other.groups
        self.templates += other.templates
        if other.default is not None:
            if self.default is not None:
                raise ConfigError(source, other.default.line, "a second default block")
            self.default = other.default
        for ctrl, s in other.namespaces.items():
            if ctrl in self.namespaces:
                raise ConfigError(source, s.line, f"namespace of {ctrl} given twice")
            self.namespaces[ctrl] = s
        self.notes += other.notes


class _Parser:
    def __init__(self, tokens: list[Token], source: str) -> None:
        self.t = tokens
        self.i = 0
        self.source = source

    def error(self, message: str, tok: Token | None = None) -> ConfigError:
        tok = tok or self.peek()
        line = tok.line if tok is not None else (self.t[-1].line if self.t else 1)
        return ConfigError(self.source, line, message)

    def peek(self) -> Token | None:
        return self.t[self.i] if self.i < len(self.t) else None

    def next(self, what: str) -> Token:
        tok = self.peek()
        if tok is None:
            raise self.error(f"unexpected end of file, expected {what}")
        self.i += 1
        return tok

    def expect(self, kind: str, what: str | None = None) -> Token:
        tok = self.next(what or repr(kind))
        if tok.kind != kind:
            raise self.error(f"expected {what or repr(kind)}, found {tok.text!r}", tok)
        return tok

    def value(self, what: str) -> Token:
        tok = self.next(what)
        if tok.kind not in ("word", "string"):
            raise self.error(f"expected {what}, found {tok.text!r}", tok)
        return tok

    def closing(self) -> bool:
        tok = self.peek()
        if tok is not None and tok.kind == "}":
            self.i += 1
            return True
        return False

    # -- blocks ---------------------------------------------------------------------------

    def assignments(self, allowed: frozenset[str] | None, what: str) -> list[Setting]:
        """``key = value; …`` up to the closing brace (already past the opening one)."""
        out: list[Setting] = []
        seen: set[str] = set()
        while not self.closing():
            key = self.value(f"a {what} name or '}}'")
            self.expect("=", "'='")
            val = self.value(f"a value for {key.text}")
            self.expect(";", f"';' after the value of {key.text}")
            if allowed is not None and key.text not in allowed:
                raise self.error(
                    f"unknown {what} {key.text!r} (one of {', '.join(sorted(allowed))})", key
                )
            if key.text in seen:
                raise self.error(f"{key.text} given twice in this block", key)
            seen.add(key.text)
            out.append(Setting(key.text, val.text, key.line))
            if len(out) > MAX_VALUES_PER_BLOCK:
                raise self.error(f"more than {MAX_VALUES_PER_BLOCK} settings in one block", key)
        return out

    def perm(self, start: Token) -> Perm:
        self.expect("{", "'{' after perm")
        p = Perm(start.line, self.source)
        while not self.closing():
            kind = self.expect("word", "task, admin or '}'")
            if kind.text not in ("task", "admin"):
                raise self.error(f"expected task or admin in perm, found {kind.text!r}", kind)
            target = p.task if kind.text == "task" else p.admin
            if target:
                raise self.error(f"{kind.text} given twice in this perm block", kind)
            self.expect("{", f"'{{' after {kind.text}")
            allowed = TASK_KEYS if kind.text == "task" else ADMIN_KEYS
            for s in self.assignments(allowed, f"{kind.text} setting"):
                target[s.key] = s
            _check_modes(self.source, target)
        return p

    def group(self, start: Token, template: bool) -> Group:
        name = self.value("a group name")
        g = Group(name.text, start.line, self.source, template=template)
        _check_group_name(self.source, name, template)
        self.expect("{", f"'{{' after the name of group {name.text}")
        blocks: set[str] = set()
        while not self.closing():
            tok = self.value("perm, a controller name or '}'")
            if tok.kind == "word" and tok.text == "perm":
                if g.perm is not None:
                    raise self.error("perm given twice in this group", tok)
                g.perm = self.perm(tok)
                continue
            if tok.text in blocks:
                raise self.error(f"controller {tok.text} given twice in this group", tok)
            blocks.add(tok.text)
            try:
                names.check_key(tok.text)
            except InvalidArgument as e:
                raise self.error(f"invalid controller name {tok.text!r}: {e}", tok) from None
            self.expect("{", f"'{{' after {tok.text}")
            block = Block(tok.text, tok.line, self.assignments(None, "key"))
            for s in block.settings:
                try:
                    names.check_key(s.key)
                except InvalidArgument as e:
                    raise self.error(str(e), _at(s)) from None
                if "\n" in s.value:
                    raise self.error(f"the value of {s.key} spans lines", _at(s))
            g.blocks.append(block)
        return g

    def table(self, what: str) -> dict[str, Setting]:
        self.expect("{", f"'{{' after {what}")
        return {s.key: s for s in self.assignments(None, f"{what} entry")}

    def parse(self) -> Config:
        cfg = Config()
        seen: set[str] = set()
        while (tok := self.peek()) is not None:
            self.i += 1
            word = tok.text if tok.kind == "word" else ""
            if word in ("group", "template"):
                g = self.group(tok, template=word == "template")
                if g.name in seen:
                    raise self.error(f"{word} {g.name} is described twice", tok)
                seen.add(g.name)
                (cfg.templates if g.template else cfg.groups).append(g)
                if len(cfg.groups) + len(cfg.templates) > MAX_GROUPS:
                    raise self.error(f"more than {MAX_GROUPS} groups", tok)
            elif word == "default":
                if cfg.default is not None:
                    raise self.error("a second default block", tok)
                self.expect("{", "'{' after default")
                perm_tok = self.expect("word", "perm")
                if perm_tok.text != "perm":
                    raise self.error("default holds a perm block only", perm_tok)
                cfg.default = self.perm(perm_tok)
                if not self.closing():
                    raise self.error("default holds one perm block only")
            elif word == "mount":
                self.table("mount")
                cfg.notes.append(
                    f"{self.source}:{tok.line}: mount block ignored: cgmanager serves the"
                    " hierarchies the host has mounted and never mounts one"
                )
            elif word == "namespace":
                for ctrl, s in self.table("namespace").items():
                    try:
                        names.split(s.value, "namespace")
                    except InvalidArgument as e:
                        raise self.error(str(e), _at(s)) from None
                    cfg.namespaces[ctrl] = s
            else:
                raise self.error(
                    f"expected group, template, default, mount or namespace, found {tok.text!r}",
                    tok,
                )
        return cfg


def _at(s: Setting) -> Token:
    return Token("word", s.key, s.line)


def _check_group_name(source: str, tok: Token, template: bool) -> None:
    try:
        parts = names.split(tok.text, "group name")
        for part in parts:
            names.check_new_name(part)
    except InvalidArgument as e:
        raise ConfigError(source, tok.line, str(e)) from None
    if not parts:
        raise ConfigError(
            source,
            tok.line,
            f"group {tok.text!r} names cgmanager's own cgroup, whose attributes belong to"
            " whoever started cgmanager; describe groups below it",
        )
    if not template and "%" in tok.text:
        raise ConfigError(source, tok.line, f"'%' in group {tok.text!r}: only templates have it")


def _check_modes(source: str, settings: dict[str, Setting]) -> None:
    for key in ("fperm", "dperm"):
        s = settings.get(key)
        if s is not None and parse_mode(s.value) is None:
            raise ConfigError(source, s.line, f"{key} {s.value!r} is not an octal mode (0-777)")


def parse_mode(text: str) -> int | None:
    if text and len(text) <= 4 and all(c in "01234567" for c in text):
        mode = int(text, 8)
        if mode <= 0o777:
            return mode
    return None


def parse(text: str, source: str = "<config>") -> Config:
    """Parse one file; :class:`ConfigError` names the line of the first problem."""
    return _Parser(tokenize(text, source), source).parse()


#: most *.conf files one configuration directory may hold
MAX_FILES = 256


def load_dir(directory: str) -> Config:
    """Every ``*.conf`` in *directory*, in name order, as one configuration (a missing
    directory is an empty configuration; an unreadable file is an error)."""
    cfg = Config()
    try:
        entries = sorted(e for e in os.listdir(directory) if e.endswith(".conf"))
    except FileNotFoundError:
        return cfg
    except OSError as e:
        raise ConfigError(directory, 0, f"cannot read the directory: {e.strerror}") from None
    if len(entries) > MAX_FILES:
        raise ConfigError(directory, 0, f"more than {MAX_FILES} files")
    for name in entries:
        cfg.merge(load_file(os.path.join(directory, name)), os.path.join(directory, name))
    return cfg


def load_file(path: str) -> Config:
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read((1 << 20) + 1)
    except UnicodeDecodeError:
        raise ConfigError(path, 0, "not UTF-8 text") from None
    except OSError as e:
        raise ConfigError(path, 0, f"cannot read: {e.strerror}") from None
    return parse(text, path)
