"""The interfaces every peer-to-peer D-Bus server answers without registering them.

* ``org.freedesktop.DBus`` (any path): ``Hello`` (a made-up unique name ``:1.<n>``), ``AddMatch``,
  ``RemoveMatch``, ``GetNameOwner``, ``RequestName``, ``ReleaseName``, ``NameHasOwner``,
  ``ListNames``, ``GetId`` — stubs, because gdbus, busctl and most Python clients talk to any
  address as if a bus daemon were behind it and give up without them.  There is no bus: the
  stubs only make those clients happy; nothing is routed or matched.
* ``org.freedesktop.DBus.Peer`` (any path): ``Ping``, ``GetMachineId``.
* ``org.freedesktop.DBus.Introspectable``: ``Introspect`` — also at the ancestors of registered
  paths (``/``, ``/org``, …), which list their children as ``<node name=…/>``.
* ``org.freedesktop.DBus.Properties``: ``Get``, ``GetAll``, ``Set``.

Where a call goes is :mod:`.dispatch`'s business; this module only answers.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any

from . import errors
from .errors import DBusError
from .introspect import node_xml
from .objects import Interface, Method, MethodCall, Property
from .registry import BUS_NAME, INTROSPECTABLE, PEER, PROPERTIES, IfaceEntry

#: The unique name the server pretends to own (what GetNameOwner answers).
SERVER_UNIQUE_NAME = ":1.0"


class StandardInterfaces:
    """The bus-driver stubs, Peer, Introspectable and Properties of one dispatcher's objects."""

    def __init__(
        self,
        objects: dict[str, dict[str, IfaceEntry]],
        children: dict[str, list[str]],
        server_id: str,
        machine_id_paths: Sequence[str],
    ) -> None:
        self._objects = objects
        self._children = children
        self.server_id = server_id
        self._machine_id_paths = tuple(machine_id_paths)
        self._machine_id: str | None = None
        self._xml: dict[str, str] = {}
        #: the interfaces by name, as the dispatcher looks them up
        self.entries = self._make()
        #: those answered at every registered object too (and listed by its Introspect)
        self.at_objects = (
            self.entries[INTROSPECTABLE],
            self.entries[PROPERTIES],
            self.entries[PEER],
        )

    def _make(self) -> dict[str, IfaceEntry]:
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
            ifaces = [ie.interface for ie in (*entries.values(), *self.at_objects)]
        else:
            ifaces = [self.entries[INTROSPECTABLE].interface, self.entries[PEER].interface]
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


async def _await_then(awaitable: Any, then: Callable[[Any], Any]) -> Any:
    return then(await awaitable)
