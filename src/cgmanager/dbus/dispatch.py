"""Method dispatch: object registry → handler, strict signatures, errors.

Besides the registered objects, calls reach the standard interfaces (:mod:`.standard`: the
bus-driver stubs and ``Peer`` at any path, ``Introspectable`` also at the ancestors of registered
paths, ``Properties``).

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
from .marshal import Marshalled
from .message import (
    ERROR,
    METHOD_RETURN,
    NO_REPLY_EXPECTED,
    Message,
)
from .objects import Interface, MethodCall, PeerCredentials
from .registry import (
    BUS_NAME,
    BUS_PATH,
    INTROSPECTABLE,
    PEER,
    IfaceEntry,
    MethodEntry,
    close_fds,
    close_returned_fds,
    validate,
)
from .standard import StandardInterfaces

log = logging.getLogger("cgmanager.dbus")


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
        self.server_id = server_id or os.urandom(16).hex()
        standard = StandardInterfaces(
            self._objects, self._children, self.server_id, machine_id_paths
        )
        self._builtins = standard.entries
        self._driver = self._builtins[BUS_NAME]
        self._peer = self._builtins[PEER]
        self._object_builtins = standard.at_objects

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
        body: tuple[Any, ...] = ()
        raw = None  # a body a worker marshalled ahead (never carries fds)
        if type(result) is Marshalled and result.signature == entry.out_sig:
            raw = result
        elif type(result) is tuple:
            body = result
        else:
            log.error(
                "handler for %s.%s returned %s, not a tuple",
                entry.interface,
                msg.member,
                type(result).__name__,
            )
            return _error(msg, errors.FAILED, "internal error")
        if msg.flags & NO_REPLY_EXPECTED:
            if "h" in entry.out_sig:  # returned fds are ours to close
                close_returned_fds(entry.out_sig, body)
            return None
        return Message(
            METHOD_RETURN,
            reply_serial=msg.serial,
            signature=entry.out_sig,
            body=body,
            raw_body=raw,
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
