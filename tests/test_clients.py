"""Who is asking: the client address behind none, one or two trusted reverse proxies."""

import pytest
from django.test import RequestFactory
from django.urls import reverse

from directpay.clients import client_ip
from stations import scans


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


def test_a_client_behind_our_proxy_cannot_pose_as_many_by_writing_the_header(
    client, connector, settings
):
    settings.TRUSTED_PROXY_COUNT = 1
    evse = connector.evse
    forged = f"{evse.pk}-1-{'a' * 16}"
    for n in range(5):  # what our proxy appends (the real client) comes last
        client.get(
            reverse("checkout:scan", args=[forged]),
            REMOTE_ADDR="10.0.0.2",
            HTTP_X_FORWARDED_FOR=f"203.0.113.{n}, 198.51.100.9",
        )
    assert scans.signals([evse.pk])[evse.pk].suspicious == 1
