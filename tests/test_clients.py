"""Who is asking: the client address behind none, one or two trusted reverse proxies."""

import pytest
from django.test import RequestFactory

from directpay.clients import client_ip


def request(forwarded=None):
    headers = {"REMOTE_ADDR": "10.0.0.2"}
    if forwarded is not None:
        headers["HTTP_X_FORWARDED_FOR"] = forwarded
    return RequestFactory().get("/", **headers)


@pytest.mark.parametrize(
    "proxies, forwarded, expected",
    [
        (0, None, "10.0.0.2"),
        (0, "198.51.100.9", "10.0.0.2"),  # no proxy of ours: the header is the client's own words
        (1, "198.51.100.9", "198.51.100.9"),
        (1, "6.6.6.6, 198.51.100.9", "198.51.100.9"),  # the client wrote the first entry
        (2, "6.6.6.6, 198.51.100.9, 172.16.0.1", "198.51.100.9"),
        (2, "198.51.100.9", "10.0.0.2"),  # fewer entries than proxies: not through them
        (1, "", "10.0.0.2"),
        (1, "not-an-address", "10.0.0.2"),
        (1, "2001:DB8::1", "2001:db8::1"),
    ],
)
def test_the_client_is_the_entry_our_last_trusted_proxy_appended(
    settings, proxies, forwarded, expected
):
    settings.TRUSTED_PROXY_COUNT = proxies
    assert client_ip(request(forwarded)) == expected
