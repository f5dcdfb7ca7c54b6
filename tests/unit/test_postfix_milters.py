"""Milter lists in Postfix's syntax: entries and braces, addresses, where a daemon looks, which is ours."""

from __future__ import annotations

import pytest

from reputable.config import MilterSocket
from reputable.postfix.milters import (
    InetEndpoint,
    MilterEntry,
    UnixEndpoint,
    format_milter_list,
    known_signer,
    names_socket,
    parse_endpoint,
    parse_milter_list,
    postfix_address,
    same_host,
    seen_path,
)

QUEUE = "/var/spool/postfix"
UNIX = MilterSocket("unix", path="/var/spool/postfix/reputable/milter.sock")
INET = MilterSocket("inet", host="127.0.0.1", port=8891)


def test_a_list_with_commas_white_space_and_braced_entries() -> None:
    text = (
        "unix:opendkim/opendkim.sock,inet:127.0.0.1:8893\n"
        "  { unix:reputable/milter.sock, default_action=accept protocol=4 }, inet:[::1]:8894"
    )
    assert parse_milter_list(text) == (
        MilterEntry("unix:opendkim/opendkim.sock"),
        MilterEntry("inet:127.0.0.1:8893"),
        MilterEntry(
            "unix:reputable/milter.sock", (("default_action", "accept"), ("protocol", "4"))
        ),
        MilterEntry("inet:[::1]:8894"),
    )
    assert parse_milter_list("") == ()
    assert parse_milter_list("{}") == ()


def test_entries_are_written_back_in_both_forms() -> None:
    entries = parse_milter_list("{ unix:a.sock, default_action=accept }, inet:h:1")
    assert format_milter_list(entries) == "{ unix:a.sock, default_action=accept }, inet:h:1"
    # postconf -P refuses white space in a value.
    assert (
        format_milter_list(entries, compact=True) == "{unix:a.sock,default_action=accept},inet:h:1"
    )
    changed = entries[0].with_option("default_action", "tempfail")
    assert str(changed) == "{ unix:a.sock, default_action=tempfail }"
    assert changed.option("default_action") == "tempfail" and changed.option("protocol") == ""


@pytest.mark.parametrize(
    ("address", "endpoint"),
    [
        ("unix:reputable/milter.sock", UnixEndpoint("reputable/milter.sock")),
        ("local:/run/milter.sock", UnixEndpoint("/run/milter.sock")),
        ("inet:127.0.0.1:8891", InetEndpoint("127.0.0.1", 8891)),
        ("inet:[::1]:8891", InetEndpoint("::1", 8891)),
        ("inet:localhost:8891", InetEndpoint("localhost", 8891)),
        ("inet:8891@127.0.0.1", None),  # libmilter's spelling, not Postfix's
        ("/run/milter.sock", None),
        ("unix:", None),
    ],
)
def test_endpoints(address: str, endpoint: UnixEndpoint | InetEndpoint | None) -> None:
    assert parse_endpoint(address) == endpoint


@pytest.mark.parametrize(
    ("socket", "queue", "address"),
    [
        (UNIX, QUEUE, "unix:reputable/milter.sock"),
        (UNIX, QUEUE + "/", "unix:reputable/milter.sock"),
        (
            MilterSocket("unix", path="/run/reputable/milter.sock"),
            QUEUE,
            "unix:/run/reputable/milter.sock",
        ),
        # A directory merely starting like the queue directory is not inside it.
        (
            MilterSocket("unix", path="/var/spool/postfix2/m.sock"),
            QUEUE,
            "unix:/var/spool/postfix2/m.sock",
        ),
        (INET, QUEUE, "inet:127.0.0.1:8891"),
        (MilterSocket("inet", host="0.0.0.0", port=8891), QUEUE, "inet:127.0.0.1:8891"),
        (MilterSocket("inet6", host="::1", port=8891), QUEUE, "inet:[::1]:8891"),
        (MilterSocket("inet6", host="::", port=8891), QUEUE, "inet:[::1]:8891"),
    ],
)
def test_the_address_postfix_is_given(socket: MilterSocket, queue: str, address: str) -> None:
    assert postfix_address(socket, queue) == address


def test_where_a_daemon_looks_for_a_unix_socket() -> None:
    assert seen_path("reputable/milter.sock", QUEUE, chrooted=True) == (
        "/var/spool/postfix/reputable/milter.sock"
    )
    assert seen_path("reputable/milter.sock", QUEUE, chrooted=False) == (
        "/var/spool/postfix/reputable/milter.sock"
    )
    assert seen_path("/run/m.sock", QUEUE, chrooted=False) == "/run/m.sock"
    # The Debian trap: an absolute path, read inside smtpd's chroot.
    assert seen_path("/var/spool/postfix/r/m.sock", QUEUE, chrooted=True) == (
        "/var/spool/postfix/var/spool/postfix/r/m.sock"
    )


def test_which_entry_is_reputable() -> None:
    assert names_socket("unix:reputable/milter.sock", UNIX, QUEUE)
    assert names_socket("unix:/var/spool/postfix/reputable/milter.sock", UNIX, QUEUE)
    assert names_socket("local:reputable//milter.sock", UNIX, QUEUE)
    assert not names_socket("unix:opendkim/opendkim.sock", UNIX, QUEUE)
    assert not names_socket("inet:127.0.0.1:8891", UNIX, QUEUE)
    assert names_socket("inet:127.0.0.1:8891", INET, QUEUE)
    assert names_socket("inet:localhost:8891", INET, QUEUE)
    assert not names_socket("inet:127.0.0.1:8892", INET, QUEUE)
    assert not names_socket("unix:reputable/milter.sock", INET, QUEUE)


def test_hosts_that_reach_a_listener() -> None:
    assert same_host("127.0.0.1", "0.0.0.0")
    assert same_host("localhost", "::1")
    assert same_host("::1", "::")
    assert same_host("0:0:0:0:0:0:0:1", "::1")
    assert not same_host("::1", "127.0.0.1")
    assert not same_host("127.0.0.2", "127.0.0.1")
    assert not same_host("192.0.2.1", "0.0.0.0")  # maybe this host, maybe not: not assumed


def test_other_dkim_signers_are_known_by_name() -> None:
    assert known_signer("unix:opendkim/opendkim.sock") == "OpenDKIM"
    assert known_signer("local:/run/dkimpy-milter/dkimpy-milter.sock") == "dkimpy-milter"
    assert known_signer("unix:opendmarc/opendmarc.sock") == ""
