"""Where a webhook may go: public addresses only, unless the operator allowed private ones.

A subscription's URL is checked twice (SPEC 7): when it is added (`check_url`: an IP literal, or every
address its host name resolves to now) and at every connection the notifier opens (`GuardedResolver`,
the aiohttp resolver of the delivery session, with its DNS cache off), so a name that later resolves
to 127.0.0.1 or 169.254.169.254 (DNS rebinding) is still refused. `--allow-private-url` on
`stockledger webhook add` stores `allow_private` on the subscription; the notifier then skips the check
for that subscription's requests (a context variable set around each request).
"""

from __future__ import annotations

import contextvars
import ipaddress
import re
import socket
from typing import Any
from urllib.parse import urlsplit

from aiohttp.abc import AbstractResolver
from aiohttp.resolver import DefaultResolver

ALLOW_PRIVATE: contextvars.ContextVar[bool] = contextvars.ContextVar("stockledger_allow_private", default=False)


class PrivateAddress(OSError):
    """The host resolves to an address a webhook may not reach without --allow-private-url."""


def non_public(address: str) -> str | None:
    """Why `address` is not a public unicast address (loopback, private, link-local, ...), or None."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return "not an IP address"
    mapped = getattr(ip, "ipv4_mapped", None)
    if mapped is not None:
        ip = mapped
    for what, flag in (("loopback", ip.is_loopback), ("link-local", ip.is_link_local),
                       ("private", ip.is_private), ("multicast", ip.is_multicast),
                       ("unspecified", ip.is_unspecified), ("reserved", ip.is_reserved),
                       ("not globally routable", not ip.is_global)):
        if flag:
            return what
    return None


def refusal(host: str, addresses: list[str]) -> str | None:
    """The refusal message when any of `addresses` of `host` is not public, else None (the first such
    address in sorted order is named, so the message does not depend on the resolver's order)."""
    for a in sorted(set(addresses)):
        why = non_public(a)
        if why is not None:
            where = a if host == a else f"{host} ({a})"
            return f"{where} is {why}: a webhook may only go to public addresses unless --allow-private-url"
    return None


_LABEL = re.compile(r"^(?!-)[A-Za-z0-9_-]{1,63}(?<!-)$")


def _valid_name(host: str) -> bool:
    """A DNS name: IDNA-encodable, labels of letters, digits, `-` and `_`, at most 253 characters."""
    try:
        ascii_ = host.encode("idna").decode("ascii")
    except UnicodeError:
        return False
    return 0 < len(ascii_) <= 253 and all(_LABEL.match(label) for label in ascii_.rstrip(".").split("."))


def _literal(host: str) -> str | None:
    try:
        return str(ipaddress.ip_address(host.split("%", 1)[0]))
    except ValueError:
        return None


def check_url(url: str, allow_private: bool) -> None:
    """ValueError naming the URL's problem: not http(s), no host, or a non-public address."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an http(s) URL: {url!r}")
    try:
        parts.port  # noqa: B018 - a port out of range or not a number raises here
    except ValueError as exc:
        raise ValueError(f"bad port in {url!r}: {exc}") from None
    if allow_private:
        return
    host = parts.hostname
    literal = _literal(host)
    if literal is not None:
        addresses = [literal]
    else:
        if not _valid_name(host):
            raise ValueError(f"not a valid host name: {host!r}")
        try:
            infos = socket.getaddrinfo(host, parts.port or 443, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError):
            return  # not resolvable now: the notifier checks every address it connects to
        addresses = [str(i[4][0]) for i in infos]
    why = refusal(host, addresses)
    if why is not None:
        raise ValueError(why)


def literal_refusal(url: str) -> str | None:
    """Why a request to `url` may not go out, when its host is an IP literal (aiohttp resolves no
    literal, so the resolver never sees it); None for names and public literals."""
    host = urlsplit(url).hostname or ""
    literal = _literal(host)
    return None if literal is None else refusal(host, [literal])


class GuardedResolver(AbstractResolver):
    """aiohttp's resolver, refusing non-public addresses unless ALLOW_PRIVATE is set for the request."""

    def __init__(self) -> None:
        self._inner = DefaultResolver()

    async def resolve(self, host: str, port: int = 0, family: Any = socket.AF_INET) -> Any:
        infos = await self._inner.resolve(host, port, family)
        if not ALLOW_PRIVATE.get():
            why = refusal(host, [i["host"] for i in infos])
            if why is not None:
                raise PrivateAddress(why)
        return infos

    async def close(self) -> None:
        await self._inner.close()
