"""Method dispatch: object registry → handler, strict signatures, errors, built-in interfaces.

Built in (answered at every registered path unless noted):

* ``org.freedesktop.DBus`` (any path): ``Hello`` (a made-up unique name ``:1.<n>``), ``AddMatch``,
  ``RemoveMatch``, ``GetNameOwner``, ``RequestName``, ``ReleaseName``, ``NameHasOwner``,
  ``ListNames``, ``GetId`` — stubs, because gdbus, busctl and most Python clients talk to any
  address as if a bus daemon were behind it and give up without them.  There is no bus: the
  stubs only make those clients happy; nothing is routed or matched.
* ``org.freedesktop.DBus.Peer`` (any path): ``Ping``, ``GetMachineId``.
* ``org.freedesktop.DBus.Introspectable``: ``Introspect`` — also at the ancestors of registered
  paths (``/``, ``/org``, …), which list their children as ``<node name=…/>``.
* ``org.freedesktop.DBus.Properties``: ``Get``, ``GetAll``, ``Set``.

The dispatcher is synchronous for synchronous handlers (no coroutine per call — the common case
is cheap) and returns an awaitable when a handler is a coroutine.
"""

from __future__ import annotations

import inspect
import logging
import os
from collections.abc import Awaitable, Mapping, Sequence
from typing import Any

from . import errors
from .codec import (
    ERROR,
    METHOD_RETURN,
    NO_REPLY_EXPECTED,
    Message,
    SignatureError,
    parse_signature,
    split_signature,
    valid_interface_name,
    valid_member_name,
    valid_object_path,
)
from .errors import DBusError
from .objects import Interface, Method, MethodCall, PeerCredentials, Property

log = logging.getLogger("cgmanager.dbus")

BUS_NAME = "org.freedesktop.DBus"
BUS_PATH = "/org/freedesktop/DBus"
PEER = "org.freedesktop.DBus.Peer"
INTROSPECTABLE = "org.freedesktop.DBus.Introspectable"
PROPERTIES = "org.freedesktop.DBus.Properties"
#: The unique name the server pretends to own (what GetNameOwner answers).
SERVER_UNIQUE_NAME = ":1.0"

_DOCTYPE = (
    '<!DOCTYPE node PUBLIC "-//freedesktop//DTD D-BUS Object Introspection 1.0//EN"\n'
    ' "http://www.freedesktop.org/standards/dbus/1.0/introspect.dtd">\n'
)


class _MethodEntry:
    __slots__ = ("method", "interface", "in_sig", "out_sig", "is_coro")

    def __init__(self, method: Method, interface: str) -> None:
        self.method = method
        self.interface = interface
        self.in_sig = "".join(sig for _n, sig in method.in_args)
        self.out_sig = "".join(sig for _n, sig in method.out_args)
        self.is_coro = inspect.iscoroutinefunction(method.handler)


class _IfaceEntry:
    __slots__ = ("interface", "methods", "properties")

    def __init__(self, interface: Interface) -> None:
        self.interface = interface
        self.methods = {m.name: _MethodEntry(m, interface.name) for m in interface.methods}
        self.properties = {p.name: p for p in interface.properties}


def _check_args(where: str, args: Sequence[tuple[str, str]]) -> None:
    for arg in args:
        if len(arg) != 2:
            raise ValueError(f"{where}: args must be (name, signature) pairs, got {arg!r}")
        name, sig = arg
        try:
            if len(parse_signature(sig)) != 1:
                raise SignatureError(f"{sig!r} is not one complete type")
        except SignatureError as exc:
            raise ValueError(f"{where}: argument {name!r}: {exc}") from None


def _validate(objects: Mapping[str, Sequence[Interface]]) -> None:
    for path, ifaces in objects.items():
        if not valid_object_path(path):
            raise ValueError(f"invalid object path {path!r}")
        if path == BUS_PATH:
            raise ValueError(f"{BUS_PATH} is reserved for the bus-driver stubs")
        seen = set()
        for iface in ifaces:
            if not valid_interface_name(iface.name):
                raise ValueError(f"invalid interface name {iface.name!r}")
            if iface.name in (BUS_NAME, PEER, INTROSPECTABLE, PROPERTIES):
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
                _check_args(f"{iface.name}.{m.name}", m.in_args)
                _check_args(f"{iface.name}.{m.name}", m.out_args)
            pnames = set()
            for p in iface.properties:
                if not valid_member_name(p.name) or p.name in pnames:
                    raise ValueError(f"{iface.name}: bad or duplicate property name {p.name!r}")
                pnames.add(p.name)
                _check_args(f"{iface.name}.{p.name}", [(p.name, p.signature)])


def _error(msg: Message, name: str, text: str) -> Message:
    return Message(
        ERROR,
        error_name=name,
        reply_serial=msg.serial,
        signature="s",
        body=(text,),
        destination=msg.sender,
    )


def _close_fds(fds: Sequence[int]) -> None:
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass


class Dispatcher:
    """Routes method calls to handlers.  Built once from the object registry (validated here)."""

    def __init__(
        self,
        objects: Mapping[str, Sequence[Interface]],
        *,
        machine_id_paths: Sequence[str] = ("/etc/machine-id", "/var/lib/dbus/machine-id"),
        server_id: str | None = None,
    ) -> None:
        _validate(objects)
        self._objects: dict[str, dict[str, _IfaceEntry]] = {
            path: {i.name: _IfaceEntry(i) for i in ifaces} for path, ifaces in objects.items()
        }
        children: dict[str, set[str]] = {"/": set()}
        for path in self._objects:
            if path == "/":
                continue
            parts = path[1:].split("/")
            for depth in range(len(parts)):
                parent = "/" + "/".join(parts[:depth])
                children.setdefault(parent, set()).add(parts[depth])
        self._children = {p: sorted(c) for p, c in children.items()}
        self._xml: dict[str, str] = {}
        self._machine_id_paths = tuple(machine_id_paths)
        self._machine_id: str | None = None
        self.server_id = server_id or os.urandom(16).hex()
        self._builtins = self._make_builtins()
        self._driver = self._builtins[BUS_NAME]
        self._peer = self._builtins[PEER]
        self._object_builtins = (
            self._builtins[INTROSPECTABLE],
            self._builtins[PROPERTIES],
            self._peer,
        )

    # ----------------------------------------------------------------------------------------
    # entry point

    def handle(
        self,
        msg: Message,
        peer: PeerCredentials,
        pidfd: int | None,
        sender: str,
        state: dict[str, Any] | None = None,
    ) -> Message | None | Awaitable[Message | None]:
        """Handle one method call (any other message type must not be passed).

        Returns the reply to send (``None`` for none), or an awaitable giving it when the handler
        is asynchronous.  Closes the received fds the handler did not take, in every case.
        """
        try:
            entry = self._resolve(msg)
        except DBusError as exc:
            _close_fds(msg.fds)
            return _error(msg, exc.name, exc.message)
        if (msg.signature or "") != entry.in_sig:
            _close_fds(msg.fds)
            return _error(msg, errors.INVALID_ARGS, f"Invalid arguments to {msg.member} method")
        call = MethodCall(
            peer=peer,
            pidfd=pidfd,
            sender=sender,
            path=msg.path,
            interface=msg.interface,
            member=msg.member,
            signature=msg.signature,
            body=msg.body,
            fds=msg.fds,
            flags=msg.flags,
            serial=msg.serial,
            state=state,
        )
        try:
            result = entry.method.handler(call)
            if entry.is_coro or (type(result) is not tuple and inspect.isawaitable(result)):
                return self._finish_async(msg, entry, call, result)
        except DBusError as exc:
            _close_fds(call.untaken_fds())
            return _error(msg, exc.name, exc.message)
        except Exception:
            _close_fds(call.untaken_fds())
            log.exception("handler for %s.%s failed", entry.interface, msg.member)
            return _error(msg, errors.FAILED, "internal error")
        _close_fds(call.untaken_fds())
        return self._reply(msg, entry, result)

    async def _finish_async(
        self, msg: Message, entry: _MethodEntry, call: MethodCall, awaitable: Any
    ) -> Message | None:
        try:
            result = await awaitable
        except DBusError as exc:
            return _error(msg, exc.name, exc.message)
        except Exception:
            log.exception("handler for %s.%s failed", entry.interface, msg.member)
            return _error(msg, errors.FAILED, "internal error")
        finally:
            _close_fds(call.untaken_fds())
        return self._reply(msg, entry, result)

    def _reply(self, msg: Message, entry: _MethodEntry, result: Any) -> Message | None:
        if result is None:
            result = ()
        if type(result) is not tuple:
            log.error(
                "handler for %s.%s returned %s, not a tuple",
                entry.interface,
                msg.member,
                type(result).__name__,
            )
            return _error(msg, errors.FAILED, "internal error")
        if msg.flags & NO_REPLY_EXPECTED:
            if "h" in entry.out_sig:  # returned fds are ours to close
                _close_returned_fds(entry.out_sig, result)
            return None
        return Message(
            METHOD_RETURN,
            reply_serial=msg.serial,
            signature=entry.out_sig,
            body=result,
            destination=msg.sender,
        )

    def _resolve(self, msg: Message) -> _MethodEntry:
        path = msg.path
        iface = msg.interface
        member = msg.member
        if iface is not None:
            if iface == BUS_NAME:
                return self._find(self._driver, msg)
            if iface == PEER:
                return self._find(self._peer, msg)
        entries = self._objects.get(path)
        if entries is not None:
            if iface is not None:
                ie = entries.get(iface)
                if ie is None:
                    for b in self._object_builtins:
                        if b.interface.name == iface:
                            return self._find(b, msg)
                    raise DBusError(
                        errors.UNKNOWN_INTERFACE,
                        f'No such interface "{iface}" at object path "{path}"',
                    )
                return self._find(ie, msg)
            for ie in entries.values():
                me = ie.methods.get(member)
                if me is not None:
                    return me
            for b in self._object_builtins:
                me = b.methods.get(member)
                if me is not None:
                    return me
            raise DBusError(
                errors.UNKNOWN_METHOD,
                f'No such method "{member}" at object path "{path}" (signature "{msg.signature}")',
            )
        if path in self._children:  # an ancestor of registered objects: introspection only
            if iface in (None, INTROSPECTABLE) and member == "Introspect":
                return self._builtins[INTROSPECTABLE].methods["Introspect"]
            if iface is None and member in self._peer.methods:
                return self._peer.methods[member]
        elif iface is None and path == BUS_PATH and member in self._driver.methods:
            return self._driver.methods[member]
        elif iface is None and member in self._peer.methods:
            return self._peer.methods[member]
        raise DBusError(errors.UNKNOWN_OBJECT, f'No such object path "{path}"')

    @staticmethod
    def _find(ie: _IfaceEntry, msg: Message) -> _MethodEntry:
        me = ie.methods.get(msg.member)
        if me is None:
            raise DBusError(
                errors.UNKNOWN_METHOD,
                f'No such method "{msg.member}" in interface '
                f'"{ie.interface.name}" at object path "{msg.path}" '
                f'(signature "{msg.signature}")',
            )
        return me

    # ----------------------------------------------------------------------------------------
    # built-ins

    def _make_builtins(self) -> dict[str, _IfaceEntry]:
        driver = Interface(
            BUS_NAME,
            methods=[
                Method("Hello", lambda call: (call.sender,), out_args=[("name", "s")]),
                Method("AddMatch", lambda call: (), in_args=[("rule", "s")]),
                Method("RemoveMatch", lambda call: (), in_args=[("rule", "s")]),
                Method(
                    "GetNameOwner",
                    self._get_name_owner,
                    in_args=[("name", "s")],
                    out_args=[("owner", "s")],
                ),
                Method(
                    "RequestName",
                    lambda call: (1,),
                    in_args=[("name", "s"), ("flags", "u")],
                    out_args=[("result", "u")],
                ),
                Method(
                    "ReleaseName",
                    lambda call: (1,),
                    in_args=[("name", "s")],
                    out_args=[("result", "u")],
                ),
                Method(
                    "NameHasOwner",
                    lambda call: (True,),
                    in_args=[("name", "s")],
                    out_args=[("has_owner", "b")],
                ),
                Method(
                    "ListNames",
                    lambda call: ([BUS_NAME, SERVER_UNIQUE_NAME, call.sender],),
                    out_args=[("names", "as")],
                ),
                Method("GetId", lambda call: (self.server_id,), out_args=[("id", "s")]),
            ],
        )
        peer = Interface(
            PEER,
            methods=[
                Method("Ping", lambda call: ()),
                Method("GetMachineId", self._get_machine_id, out_args=[("machine_uuid", "s")]),
            ],
        )
        introspectable = Interface(
            INTROSPECTABLE,
            methods=[
                Method("Introspect", self._introspect, out_args=[("xml_data", "s")]),
            ],
        )
        properties = Interface(
            PROPERTIES,
            methods=[
                Method(
                    "Get",
                    self._prop_get,
                    in_args=[("interface_name", "s"), ("property_name", "s")],
                    out_args=[("value", "v")],
                ),
                Method(
                    "GetAll",
                    self._prop_get_all,
                    in_args=[("interface_name", "s")],
                    out_args=[("props", "a{sv}")],
                ),
                Method(
                    "Set",
                    self._prop_set,
                    in_args=[("interface_name", "s"), ("property_name", "s"), ("value", "v")],
                ),
            ],
        )
        return {i.name: _IfaceEntry(i) for i in (driver, peer, introspectable, properties)}

    @staticmethod
    def _get_name_owner(call: MethodCall) -> tuple:
        (name,) = call.body
        if name.startswith(":"):
            return (name,)
        return (SERVER_UNIQUE_NAME,)

    def _get_machine_id(self, call: MethodCall) -> tuple:
        if self._machine_id is None:
            for p in self._machine_id_paths:
                try:
                    with open(p, encoding="ascii") as f:
                        text = f.read(64).strip()
                except (OSError, UnicodeDecodeError):
                    continue
                if len(text) == 32:
                    self._machine_id = text
                    break
            else:
                raise DBusError(errors.FAILED, "no machine id available")
        return (self._machine_id,)

    def _introspect(self, call: MethodCall) -> tuple:
        path = call.path
        xml = self._xml.get(path)
        if xml is None:
            xml = self._xml[path] = self._build_xml(path)
        return (xml,)

    def _build_xml(self, path: str) -> str:
        out = [_DOCTYPE, "<node>\n"]
        entries = self._objects.get(path)
        if entries is not None:
            for ie in (*entries.values(), *self._object_builtins):
                out.append(_iface_xml(ie.interface))
        else:
            out.append(_iface_xml(self._builtins[INTROSPECTABLE].interface))
            out.append(_iface_xml(self._peer.interface))
        for child in self._children.get(path, ()):
            out.append(f"  <node name={quoteattr(child)}/>\n")
        out.append("</node>\n")
        return "".join(out)

    def _props_of(self, call: MethodCall, iface: str) -> list[_IfaceEntry]:
        entries = self._objects.get(call.path, {})
        if iface == "":
            return list(entries.values())
        ie = entries.get(iface)
        if ie is not None:
            return [ie]
        if iface in (INTROSPECTABLE, PROPERTIES, PEER):
            return []
        raise DBusError(
            errors.UNKNOWN_INTERFACE, f'No such interface "{iface}" at object path "{call.path}"'
        )

    def _find_prop(self, call: MethodCall, iface: str, name: str) -> Property:
        for ie in self._props_of(call, iface):
            prop = ie.properties.get(name)
            if prop is not None:
                return prop
        raise DBusError(errors.UNKNOWN_PROPERTY, f'No such property "{name}"')

    def _prop_get(self, call: MethodCall) -> Any:
        iface, name = call.body
        prop = self._find_prop(call, iface, name)
        value = prop.getter(call)
        if inspect.isawaitable(value):
            return _await_then(value, lambda v: ((prop.signature, v),))
        return ((prop.signature, value),)

    def _prop_get_all(self, call: MethodCall) -> Any:
        (iface,) = call.body
        props = [p for ie in self._props_of(call, iface) for p in ie.properties.values()]
        values: dict[str, Any] = {}
        pending = []
        for p in props:
            v = p.getter(call)
            if inspect.isawaitable(v):
                pending.append((p, v))
            else:
                values[p.name] = (p.signature, v)
        if not pending:
            return (values,)

        async def finish() -> tuple:
            for p, aw in pending:
                values[p.name] = (p.signature, await aw)
            return ({p.name: values[p.name] for p in props},)

        return finish()

    def _prop_set(self, call: MethodCall) -> Any:
        iface, name, (sig, value) = call.body
        prop = self._find_prop(call, iface, name)
        if prop.setter is None:
            raise DBusError(errors.PROPERTY_READ_ONLY, f'Property "{name}" is read-only')
        if sig != prop.signature:
            raise DBusError(
                errors.INVALID_ARGS, f'Property "{name}" has type "{prop.signature}", not "{sig}"'
            )
        result = prop.setter(call, value)
        if inspect.isawaitable(result):
            return _await_then(result, lambda _v: ())
        return ()


async def _await_then(awaitable: Any, then: Any) -> Any:
    return then(await awaitable)


def _close_returned_fds(out_sig: str, result: tuple) -> None:
    """Close fds a handler returned when no reply is sent (top-level ``h`` args only)."""
    for sig, value in zip(split_signature(out_sig), result):
        if sig == "h":
            try:
                os.close(value.fileno() if hasattr(value, "fileno") else value)
            except (OSError, TypeError):
                pass


def quoteattr(value: str) -> str:
    """An XML attribute value in double quotes (names are validated, but escape anyway)."""
    return (
        '"'
        + (
            value.replace("&", "&amp;")
            .replace("<", "&lt;")
            .replace(">", "&gt;")
            .replace('"', "&quot;")
        )
        + '"'
    )


def _iface_xml(iface: Interface) -> str:
    out = [f"  <interface name={quoteattr(iface.name)}>\n"]
    for m in iface.methods:
        if not m.in_args and not m.out_args:
            out.append(f"    <method name={quoteattr(m.name)}/>\n")
            continue
        out.append(f"    <method name={quoteattr(m.name)}>\n")
        for direction, args in (("in", m.in_args), ("out", m.out_args)):
            for name, sig in args:
                out.append(
                    f"      <arg name={quoteattr(name)} type={quoteattr(sig)} "
                    f'direction="{direction}"/>\n'
                )
        out.append("    </method>\n")
    for p in iface.properties:
        access = "read" if p.setter is None else "readwrite"
        # the server never emits PropertiesChanged: say so, or proxies would cache forever
        out.append(
            f"    <property name={quoteattr(p.name)} type={quoteattr(p.signature)} "
            f'access="{access}">\n'
            '      <annotation name="org.freedesktop.DBus.Property.EmitsChangedSignal" '
            'value="false"/>\n    </property>\n'
        )
    out.append("  </interface>\n")
    return "".join(out)
