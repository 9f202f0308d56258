"""The object registry a server serves: interfaces checked once, indexed for dispatch.

Definitions are validated when the server is built (a typo in a signature fails at start-up,
not on the first call), then indexed: per path, per interface, per member, with each method's
joined signatures.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Mapping, Sequence
from typing import Any

from .objects import Interface, Method
from .signature import (
    SignatureError,
    parse_signature,
    split_signature,
    valid_interface_name,
    valid_member_name,
    valid_object_path,
)

BUS_NAME = "org.freedesktop.DBus"
BUS_PATH = "/org/freedesktop/DBus"
PEER = "org.freedesktop.DBus.Peer"
INTROSPECTABLE = "org.freedesktop.DBus.Introspectable"
PROPERTIES = "org.freedesktop.DBus.Properties"
#: the interfaces every server answers itself
BUILT_IN = (BUS_NAME, PEER, INTROSPECTABLE, PROPERTIES)


class MethodEntry:
    __slots__ = ("method", "interface", "in_sig", "out_sig", "is_coro")

    def __init__(self, method: Method, interface: str) -> None:
        self.method = method
        self.interface = interface
        self.in_sig = "".join(sig for _n, sig in method.in_args)
        self.out_sig = "".join(sig for _n, sig in method.out_args)
        self.is_coro = inspect.iscoroutinefunction(method.handler)


class IfaceEntry:
    __slots__ = ("interface", "methods", "properties")

    def __init__(self, interface: Interface) -> None:
        self.interface = interface
        self.methods = {m.name: MethodEntry(m, interface.name) for m in interface.methods}
        self.properties = {p.name: p for p in interface.properties}


def check_args(where: str, args: Sequence[tuple[str, str]]) -> None:
    for arg in args:
        if len(arg) != 2:
            raise ValueError(f"{where}: args must be (name, signature) pairs, got {arg!r}")
        name, sig = arg
        try:
            if len(parse_signature(sig)) != 1:
                raise SignatureError(f"{sig!r} is not one complete type")
        except SignatureError as exc:
            raise ValueError(f"{where}: argument {name!r}: {exc}") from None


def validate(objects: Mapping[str, Sequence[Interface]]) -> None:
    for path, ifaces in objects.items():
        if not valid_object_path(path):
            raise ValueError(f"invalid object path {path!r}")
        if path == BUS_PATH:
            raise ValueError(f"{BUS_PATH} is reserved for the bus-driver stubs")
        seen = set()
        for iface in ifaces:
            if not valid_interface_name(iface.name):
                raise ValueError(f"invalid interface name {iface.name!r}")
            if iface.name in BUILT_IN:
                raise ValueError(f"{iface.name} is built in")
            if iface.name in seen:
                raise ValueError(f"interface {iface.name} twice at {path}")
            seen.add(iface.name)
            names = set()
            for m in iface.methods:
                if not valid_member_name(m.name) or m.name in names:
                    raise ValueError(f"{iface.name}: bad or duplicate method name {m.name!r}")
                names.add(m.name)
                if not callable(m.handler):
                    raise ValueError(f"{iface.name}.{m.name}: handler is not callable")
                check_args(f"{iface.name}.{m.name}", m.in_args)
                check_args(f"{iface.name}.{m.name}", m.out_args)
            pnames = set()
            for p in iface.properties:
                if not valid_member_name(p.name) or p.name in pnames:
                    raise ValueError(f"{iface.name}: bad or duplicate property name {p.name!r}")
                pnames.add(p.name)
                check_args(f"{iface.name}.{p.name}", [(p.name, p.signature)])


def close_fds(fds: Sequence[int]) -> None:
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass


def close_returned_fds(out_sig: str, result: tuple[Any, ...]) -> None:
    """Close fds a handler returned when no reply is sent (top-level ``h`` args only)."""
    for sig, value in zip(split_signature(out_sig), result):
        if sig == "h":
            try:
                os.close(value.fileno() if hasattr(value, "fileno") else value)
            except (OSError, TypeError):
                pass
