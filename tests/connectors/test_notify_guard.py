"""Where a webhook may go (connectors/notify/guard.py): exact refusals, and hostile URLs at the door."""

from __future__ import annotations

import ipaddress
import socket
from unittest import mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.notify import guard

REFUSED = [
    ("http://127.0.0.1:8080/x", "127.0.0.1 is loopback"),
    ("http://[::1]/x", "::1 is loopback"),
    ("http://localhost/x", "localhost (127.0.0.1) is loopback"),
    ("http://10.1.2.3/", "10.1.2.3 is private"),
    ("http://192.168.0.10/", "192.168.0.10 is private"),
    ("http://172.16.5.4/", "172.16.5.4 is private"),
    ("http://169.254.169.254/latest/meta-data", "169.254.169.254 is link-local"),
    ("http://[fe80::1]/", "fe80::1 is link-local"),
    ("http://[::ffff:127.0.0.1]/", "::ffff:127.0.0.1 (::ffff:7f00:1) is loopback"),
    ("http://0.0.0.0/", "0.0.0.0 is private"),
    ("http://2130706433/", "2130706433 (127.0.0.1) is loopback"),
    ("http://100.64.0.1/", "100.64.0.1 is not globally routable"),
    ("http://224.0.0.1/", "224.0.0.1 is multicast"),
]


@pytest.mark.parametrize("url,why", REFUSED)
def test_non_public_addresses_are_refused_unless_allowed(url, why):
    with pytest.raises(ValueError) as exc:
        guard.check_url(url, allow_private=False)
    assert str(exc.value) == f"{why}: a webhook may only go to public addresses unless --allow-private-url"
    guard.check_url(url, allow_private=True)  # the operator's choice


def test_public_addresses_and_unresolvable_names_pass():
    guard.check_url("https://93.184.215.14/hooks", allow_private=False)
    guard.check_url("https://[2606:4700::6810:84e5]/hooks", allow_private=False)
    guard.check_url("https://shop.invalid/hooks", allow_private=False)  # checked again at every connection
    assert guard.literal_refusal("https://shop.invalid/hooks") is None
    assert guard.literal_refusal("http://10.0.0.1/") == ("10.0.0.1 is private: a webhook may only go to public "
                                                         "addresses unless --allow-private-url")


@pytest.mark.parametrize("url,message", [
    ("ftp://example.com/x", "not an http(s) URL: 'ftp://example.com/x'"),
    ("http:///nohost", "not an http(s) URL: 'http:///nohost'"),
    ("https://example.com:99999/", "bad port in 'https://example.com:99999/': Port out of range 0-65535"),
])
def test_malformed_urls_are_refused_with_their_reason(url, message):
    with pytest.raises(ValueError) as exc:
        guard.check_url(url, allow_private=True)
    assert str(exc.value) == message


_private_v4 = st.sampled_from(["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "127.0.0.0/8", "169.254.0.0/16"]) \
    .flatmap(lambda net: st.integers(0, ipaddress.ip_network(net).num_addresses - 1)
             .map(lambda i, net=net: str(ipaddress.ip_network(net)[i])))


@settings(max_examples=300, deadline=None)
@given(_private_v4, st.integers(1, 65535))
def test_every_private_ipv4_literal_is_refused(address, port):
    with pytest.raises(ValueError, match=r"^.* is (private|loopback|link-local): a webhook may only go"):
        guard.check_url(f"http://{address}:{port}/hook", allow_private=False)
    assert guard.literal_refusal(f"http://{address}:{port}/hook") is not None


@settings(max_examples=500, deadline=None)
@given(st.text(max_size=300))
def test_any_text_is_accepted_or_refused_with_a_value_error(text):
    """A hostile `webhook add` argument never ends in anything but a clean refusal (exit 2 in the CLI).
    Names resolve to a loopback address here (no DNS round trips): each is then refused by name."""
    def resolve(host, port, *args, **kwargs):
        host.encode("idna")  # what the real resolver does first: UnicodeError for what cannot be a name
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.2", port))]

    with mock.patch.object(guard.socket, "getaddrinfo", resolve):
        for url in (text, "http://" + text, "https://" + text + "/x"):
            try:
                guard.check_url(url, allow_private=False)
            except ValueError as exc:
                assert str(exc)
            else:
                raise AssertionError(f"accepted {url!r}")
