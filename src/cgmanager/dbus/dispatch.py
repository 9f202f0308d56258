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
from .errors import DBusError
from .introspect import node_xml
from .message import (
    ERROR,
    METHOD_RETURN,
    NO_REPLY_EXPECTED,
    Message,
)
from .objects import Interface, Method, MethodCall, PeerCredentials, Property
from .registry import (
    BUS_NAME,
    BUS_PATH,
    INTROSPECTABLE,
    PEER,
    PROPERTIES,
    IfaceEntry,
    MethodEntry,
    close_fds,
    close_returned_fds,
    validate,
)

log = logging.getLogger("cgmanager.dbus")

#: The unique name the server pretends to own (what GetNameOwner answers).
SERVER_UNIQUE_NAME = ":1.0"


def _error(msg: Message, name: str, text: str) -> Message:
    return Message(
        ERROR,
        error_name=name,
        reply_serial=msg.serial,
        signature="s",
        body=(text,),
        destination=msg.sender,
    )


class Dispatcher:
    """Routes method calls to handlers.  Built once from the object registry (validated here)."""

    def __init__(
        self,
        objects: Mapping[str, Sequence[Interface]],
        *,
        machine_id_paths: Sequence[str] = ("/etc/machine-id", "/var/lib/dbus/machine-id"),
        server_id: str | None = None,
    ) -> None:
        validate(objects)
        self._objects: dict[str, dict[str, IfaceEntry]] = {
            path: {i.name: IfaceEntry(i) for i in ifaces} for path, ifaces in objects.items()
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
            close_fds(msg.fds)
            return _error(msg, exc.name, exc.message)
        if (msg.signature or "") != entry.in_sig:
            close_fds(msg.fds)
            return _error(msg, errors.INVALID_ARGS, f"Invalid arguments to {msg.member} method")
        call = MethodCall(
            peer=peer,
            pidfd=pidfd,
            sender=sender,
            path=msg.path or "",
            interface=msg.interface,
            member=msg.member or "",
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
            close_fds(call.untaken_fds())
            return _error(msg, exc.name, exc.message)
        except Exception:
            close_fds(call.untaken_fds())
            log.exception("handler for %s.%s failed", entry.interface, msg.member)
            return _error(msg, errors.FAILED, "internal error")
        close_fds(call.untaken_fds())
        return self._reply(msg, entry, result)

    async def _finish_async(
        self, msg: Message, entry: MethodEntry, call: MethodCall, awaitable: Any
    ) -> Message | None:
        try:
            result = await awaitable
        except DBusError as exc:
            return _error(msg, exc.name, exc.message)
        except Exception:
            log.exception("handler for %s.%s failed", entry.interface, msg.member)
            return _error(msg, errors.FAILED, "internal error")
        finally:
            close_fds(call.untaken_fds())
        return self._reply(msg, entry, result)

    def _reply(self, msg: Message, entry: MethodEntry, result: Any) -> Message | None:
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
                close_returned_fds(entry.out_sig, result)
            return None
        return Message(
            METHOD_RETURN,
            reply_serial=msg.serial,
            signature=entry.out_sig,
            body=result,
            destination=msg.sender,
        )

    def _resolve(self, msg: Message) -> MethodEntry:
        path, iface, member = msg.path, msg.interface, msg.member
        if path is None or member is None:  # (the codec refuses such method calls)
            raise DBusError(errors.INVALID_ARGS, "a method call needs a path and a member")
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
    def _find(ie: IfaceEntry, msg: Message) -> MethodEntry:
        me = ie.methods.get(msg.member or "")
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

    def _make_builtins(self) -> dict[str, IfaceEntry]:
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
        return {i.name: IfaceEntry(i) for i in (driver, peer, introspectable, properties)}

    @staticmethod
    def _get_name_owner(call: MethodCall) -> tuple[str]:
        (name,) = call.body
        if name.startswith(":"):
            return (name,)
        return (SERVER_UNIQUE_NAME,)

    def _get_machine_id(self, call: MethodCall) -> tuple[str]:
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

    def _introspect(self, call: MethodCall) -> tuple[str]:
        path = call.path
        xml = self._xml.get(path)
        if xml is None:
            xml = self._xml[path] = self._build_xml(path)
        return (xml,)

    def _build_xml(self, path: str) -> str:
        entries = self._objects.get(path)
        if entries is not None:
            ifaces = [ie.interface for ie in (*entries.values(), *self._object_builtins)]
        else:
            ifaces = [self._builtins[INTROSPECTABLE].interface, self._peer.interface]
        return node_xml(ifaces, self._children.get(path, ()))

    def _props_of(self, call: MethodCall, iface: str) -> list[IfaceEntry]:
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

        async def finish() -> tuple[dict[str, Any]]:
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
