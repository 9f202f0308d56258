"""Introspection XML for a path: its interfaces, or (at an ancestor of served paths) its
children as ``<node name=…/>`` — what gdbus and busctl read before a call."""

from __future__ import annotations

from collections.abc import Iterable

from .objects import Interface

DOCTYPE = (
    '<!DOCTYPE node PUBLIC "-//freedesktop//DTD D-BUS Object Introspection 1.0//EN"\n'
    ' "http://www.freedesktop.org/standards/dbus/1.0/introspect.dtd">\n'
)


def node_xml(interfaces: Iterable[Interface], children: Iterable[str]) -> str:
    out = [DOCTYPE, "<node>\n"]
    out += [iface_xml(i) for i in interfaces]
    out += [f"  <node name={quoteattr(child)}/>\n" for child in children]
    out.append("</node>\n")
    return "".join(out)


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


def iface_xml(iface: Interface) -> str:
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
    for name, args in iface.signals:
        out.append(f"    <signal name={quoteattr(name)}>\n")
        for arg, sig in args:
            out.append(f"      <arg name={quoteattr(arg)} type={quoteattr(sig)}/>\n")
        out.append("    </signal>\n")
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
