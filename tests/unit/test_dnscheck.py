"""Judging published DKIM key records (every branch of interpret_key_records) and the resolver."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reputable.config import DnsConfig, Nameserver
from reputable.errors import ConfigError
from reputable.keys.dnscheck import (
    DnsStatus,
    KeyRecord,
    Malformed,
    RecordCheck,
    ServerAnswer,
    check_key_record,
    interpret_key_records,
    parse_key_record,
    parse_tag_list,
)
from reputable.resolver import EDNS_PAYLOAD, build_resolver, nameserver_addresses

# A 392-character p= like an RSA-2048 SubjectPublicKeyInfo, and another key.
P_OURS = base64.b64encode(b"\x30\x82\x01\x22" + bytes(range(256)) + bytes(34)).decode()
P_OTHER = base64.b64encode(b"\x30\x82\x01\x22" + bytes(range(255, -1, -1)) + bytes(34)).decode()
OURS = f"v=DKIM1; k=rsa; p={P_OURS}"
NS1 = "ns1.example.com (192.0.2.53:53)"
NS2 = "ns2.example.net (198.51.100.53:53)"


def answer(server: str, *values: str | bytes) -> ServerAnswer:
    return ServerAnswer(server, tuple(v.encode() if isinstance(v, str) else v for v in values))


def failed(server: str, error: str) -> ServerAnswer:
    return ServerAnswer(server, None, error)


def check(*answers: ServerAnswer, expected: str = OURS) -> RecordCheck:
    return interpret_key_records(answers, expected)


# --- matching ---


def test_every_server_with_our_key_is_matching() -> None:
    result = check(answer(NS1, OURS), answer(NS2, OURS))
    assert result.status is DnsStatus.MATCHING
    assert result.servers == (NS1, NS2)
    assert result.testing is False
    assert result.detail == f"{NS1}, {NS2} have our key"


def test_whitespace_inside_p_and_between_tags_is_ignored() -> None:
    spaced = " ".join(P_OURS[i : i + 64] for i in range(0, len(P_OURS), 64))
    record = f"v=DKIM1;\tk = rsa ;  p = {spaced}\r\n ;"
    assert check(answer(NS1, record)).status is DnsStatus.MATCHING
    ours_spaced = f"v=DKIM1; k=rsa; p={spaced}"
    assert check(answer(NS1, OURS), expected=ours_spaced).status is DnsStatus.MATCHING


def test_k_defaults_to_rsa_and_v_is_optional() -> None:
    assert check(answer(NS1, f"p={P_OURS}")).status is DnsStatus.MATCHING
    assert check(answer(NS1, f"v=DKIM1; p={P_OURS}")).status is DnsStatus.MATCHING
    assert check(answer(NS1, OURS), expected=f"p={P_OURS}").status is DnsStatus.MATCHING


def test_strings_split_at_255_are_joined_by_the_caller() -> None:
    # ServerAnswer holds each record with its strings joined: what a split record becomes.
    joined = (OURS[:255] + OURS[255:]).encode()
    assert check(ServerAnswer(NS1, (joined,))).status is DnsStatus.MATCHING


def test_other_txt_records_at_the_name_do_not_matter() -> None:
    result = check(answer(NS1, OURS, "hello=world", "some free text"))
    assert result.status is DnsStatus.MATCHING


def test_a_revoked_record_matches_an_expected_revocation() -> None:
    assert check(answer(NS1, "v=DKIM1; p="), expected="v=DKIM1; p=").status is DnsStatus.MATCHING


@pytest.mark.parametrize("flags", ["y", "y:s", "s:y", " y : s "])
def test_testing_mode_is_matching_with_a_warning(flags: str) -> None:
    result = check(answer(NS1, f"{OURS}; t={flags}"))
    assert result.status is DnsStatus.MATCHING
    assert result.testing is True
    assert "t=y" in result.detail


def test_t_s_alone_is_not_testing() -> None:
    result = check(answer(NS1, f"v=DKIM1; k=rsa; t=s; p={P_OURS}"))
    assert result.status is DnsStatus.MATCHING
    assert result.testing is False


def test_h_allowing_sha256_matches() -> None:
    assert check(answer(NS1, f"{OURS}; h=sha1:sha256")).status is DnsStatus.MATCHING
    assert check(answer(NS1, f"{OURS}; s=email")).status is DnsStatus.MATCHING


# --- mismatch ---


def test_two_records_one_ours_is_a_mismatch() -> None:
    other = f"v=DKIM1; k=rsa; p={P_OTHER}"
    result = check(answer(NS1, OURS, other))
    assert result.status is DnsStatus.MISMATCH
    assert "our key and another DKIM record" in result.detail
    assert f"p={P_OTHER[:4]}…{P_OTHER[-4:]}" in result.detail
    assert "remove the other" in result.detail


def test_another_key_is_a_mismatch_naming_server_and_key() -> None:
    result = check(answer(NS1, f"v=DKIM1; k=rsa; p={P_OTHER}"))
    assert result.status is DnsStatus.MISMATCH
    assert result.detail == f"{NS1} has p={P_OTHER[:4]}…{P_OTHER[-4:]} (another key)"


def test_record_truncated_at_255_characters_says_so() -> None:
    result = check(answer(NS1, OURS[:255]))
    assert result.status is DnsStatus.MISMATCH
    kept = 255 - len("v=DKIM1; k=rsa; p=")
    assert f"cut short at {kept} of {len(P_OURS)} characters" in result.detail
    assert "truncated" in result.detail
    assert "\n" not in result.detail


def test_revoked_record_is_a_mismatch() -> None:
    result = check(answer(NS1, "v=DKIM1; k=rsa; p="))
    assert result.status is DnsStatus.MISMATCH
    assert "revoked" in result.detail


def test_ed25519_record_where_rsa_is_expected() -> None:
    result = check(answer(NS1, f"v=DKIM1; k=ed25519; p={P_OURS}"))
    assert result.status is DnsStatus.MISMATCH
    assert "k=ed25519 (the same p=); ours is k=rsa" in result.detail
    ed = "v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="
    result = check(answer(NS1, OURS), expected=ed)
    assert result.status is DnsStatus.MISMATCH
    assert "k=rsa (another key); ours is k=ed25519" in result.detail


def test_h_without_sha256_and_s_without_email_cannot_verify() -> None:
    result = check(answer(NS1, f"{OURS}; h=sha1"))
    assert result.status is DnsStatus.MISMATCH
    assert "h=sha1" in result.detail
    result = check(answer(NS1, f"{OURS}; s=tlsrpt"))
    assert result.status is DnsStatus.MISMATCH
    assert "s=tlsrpt" in result.detail


@pytest.mark.parametrize(
    ("record", "reason"),
    [
        (f"v=DKIM1; p={P_OURS}; p={P_OTHER}", "not a valid tag=value list"),
        ("v=DKIM1; k=rsa", "no p= tag"),
        (f"k=rsa; v=DKIM1; p={P_OURS}", "v=DKIM1 is not the first tag"),
        ("v=DKIM1; this is not a tag list", "not a valid tag=value list"),
    ],
)
def test_malformed_key_record_is_a_mismatch(record: str, reason: str) -> None:
    result = check(answer(NS1, record))
    assert result.status is DnsStatus.MISMATCH
    assert f"malformed DKIM record ({reason})" in result.detail


def test_one_stale_server_is_a_mismatch_naming_it() -> None:
    result = check(answer(NS1, OURS), answer(NS2, f"v=DKIM1; k=rsa; p={P_OTHER}"))
    assert result.status is DnsStatus.MISMATCH
    assert result.detail.startswith(f"{NS2} has p=")
    assert f"({NS1} has our key)" in result.detail


def test_servers_with_the_same_problem_are_named_together() -> None:
    other = f"v=DKIM1; k=rsa; p={P_OTHER}"
    result = check(answer(NS1, other), answer(NS2, other))
    assert result.detail == f"{NS1}, {NS2} have p={P_OTHER[:4]}…{P_OTHER[-4:]} (another key)"


def test_a_mismatch_outranks_a_failed_server() -> None:
    result = check(failed(NS1, "no answer within 2 s"), answer(NS2, "v=DKIM1; p="))
    assert result.status is DnsStatus.MISMATCH
    assert NS2 in result.detail


# --- missing ---


def test_no_key_record_anywhere_is_missing() -> None:
    result = check(answer(NS1), answer(NS2))
    assert result.status is DnsStatus.MISSING
    assert result.detail == f"{NS1}, {NS2} have no DKIM key record"


def test_only_other_txt_records_is_missing() -> None:
    result = check(answer(NS1, "google-site-verification=abc", b"\xff\x00binary"))
    assert result.status is DnsStatus.MISSING
    assert "only other TXT records" in result.detail


def test_another_dkim_version_is_discarded() -> None:
    # RFC 6376 §3.6.1: a record whose v= is not DKIM1 MUST be discarded.
    assert check(answer(NS1, f"v=DKIM2; p={P_OTHER}")).status is DnsStatus.MISSING


def test_one_server_not_updated_yet_is_missing() -> None:
    result = check(answer(NS1, OURS), answer(NS2))
    assert result.status is DnsStatus.MISSING
    assert result.detail.startswith(f"{NS2} has no DKIM key record while {NS1} has it")
    assert "SOA serials" in result.detail


# --- error ---


def test_one_server_timed_out_is_an_error_saying_which_and_why() -> None:
    result = check(answer(NS1, OURS), failed(NS2, "no answer within 2 s"))
    assert result.status is DnsStatus.ERROR
    assert result.detail == f"{NS2} failed: no answer within 2 s ({NS1} has our key)"
    assert result.servers == (NS1, NS2)


def test_an_error_outranks_missing() -> None:
    result = check(answer(NS1), failed(NS2, "answered SERVFAIL"))
    assert result.status is DnsStatus.ERROR
    assert "SERVFAIL" in result.detail


def test_a_failure_without_reason_still_says_something() -> None:
    assert check(failed(NS1, "")).detail == f"{NS1} failed: no answer"


def test_no_servers_is_an_error() -> None:
    result = check()
    assert result.status is DnsStatus.ERROR
    assert "no name server" in result.detail


def test_an_expected_value_without_p_is_an_error() -> None:
    assert check(answer(NS1, OURS), expected="v=DKIM1; k=rsa").status is DnsStatus.ERROR


# --- the parser and the property ---


def test_parse_tag_list() -> None:
    assert parse_tag_list("v=DKIM1; k=rsa; p=abc;") == {"v": "DKIM1", "k": "rsa", "p": "abc"}
    assert parse_tag_list("a=1; a=2") is None  # RFC 6376 §3.2: duplicates invalidate the list
    assert parse_tag_list("1a=x") is None
    assert parse_tag_list("") == {}


def test_parse_key_record() -> None:
    assert parse_key_record(f"k=ED25519; p={P_OURS}; t=y:s".encode()) == KeyRecord(
        "ed25519", P_OURS, ("y", "s")
    )
    assert parse_key_record(b"v=spf1 -all") is None
    assert parse_key_record(b"x=1") is None
    assert parse_key_record(b"v=DKIM1") == Malformed("no p= tag")


def test_control_characters_in_a_record_never_reach_the_detail() -> None:
    result = check(answer(NS1, b"v=DKIM1; k=rsa; p=\x85\x0bab\x1b[31mcdefghijklmnop\x00"))
    assert result.status is DnsStatus.MISMATCH
    assert result.detail.isprintable()
    assert len(result.detail.splitlines()) == 1


@given(
    st.lists(
        st.tuples(
            st.sampled_from([NS1, NS2, "192.0.2.1:53"]),
            st.one_of(st.none(), st.lists(st.binary(max_size=600), max_size=4)),
            st.text(max_size=20),
        ),
        max_size=4,
    ),
    st.one_of(st.just(OURS), st.text(max_size=300)),
)
def test_interpret_never_raises(
    raw: list[tuple[str, list[bytes] | None, str]], expected: str
) -> None:
    answers = [
        ServerAnswer(server, tuple(records) if records is not None else None, error)
        for server, records, error in raw
    ]
    result = interpret_key_records(answers, expected)
    assert isinstance(result.status, DnsStatus)
    assert result.status is not DnsStatus.NOT_CHECKED
    assert result.detail


@given(st.lists(st.binary(max_size=600), max_size=4))
def test_records_never_make_a_multi_line_detail(records: list[bytes]) -> None:
    result = interpret_key_records([ServerAnswer(NS1, tuple(records))], OURS)
    assert result.detail.isprintable()


# --- the resolver ---


def test_resolver_asks_the_configured_servers_on_their_ports() -> None:
    config = DnsConfig(nameservers=(Nameserver("127.0.0.1", 5353), Nameserver("::1")), timeout_s=3)
    resolver = build_resolver(config)
    assert nameserver_addresses(resolver) == [("127.0.0.1", 5353), ("::1", 53)]
    assert resolver.lifetime == 3
    assert resolver.timeout == 1.5
    assert resolver.payload == EDNS_PAYLOAD
    assert resolver.search == []
    assert resolver.use_search_by_default is False


def test_resolver_reads_resolv_conf_when_none_configured(tmp_path: Path) -> None:
    conf = tmp_path / "resolv.conf"
    conf.write_text("search example.com\nnameserver 192.0.2.53\noptions timeout:9\n")
    resolver = build_resolver(DnsConfig(timeout_s=2), resolv_conf=conf)
    assert nameserver_addresses(resolver) == [("192.0.2.53", 53)]
    assert resolver.search == []
    assert resolver.lifetime == 2
    assert resolver.timeout == 2


def test_resolver_refuses_one_address_with_two_ports() -> None:
    # dnspython keys a server's port by its address: one of the two would go unasked.
    twice = (Nameserver("127.0.0.1"), Nameserver("192.0.2.53"), Nameserver("127.0.0.1", 5353))
    with pytest.raises(ConfigError) as caught:
        build_resolver(DnsConfig(nameservers=twice))
    (problem,) = caught.value.problems
    assert (problem.source, problem.key) == ("[dns]", "nameservers")
    assert problem.value == '["127.0.0.1:53", "127.0.0.1:5353"]'
    same = (Nameserver("127.0.0.1", 5353), Nameserver("127.0.0.1", 5353))
    assert nameserver_addresses(build_resolver(DnsConfig(nameservers=same))) == 2 * [
        ("127.0.0.1", 5353)
    ]


def test_resolver_without_any_nameserver_is_a_config_error(tmp_path: Path) -> None:
    conf = tmp_path / "resolv.conf"
    conf.write_text("# nothing here\n")
    with pytest.raises(ConfigError) as caught:
        build_resolver(DnsConfig(), resolv_conf=conf)
    (problem,) = caught.value.problems
    assert problem.source == str(conf)
    assert "[dns] nameservers" in problem.allowed
    with pytest.raises(ConfigError):
        build_resolver(DnsConfig(), resolv_conf=tmp_path / "absent")


def test_check_with_a_server_that_is_no_address_is_an_error_not_an_exception() -> None:
    resolver = build_resolver(DnsConfig(nameservers=(Nameserver("127.0.0.1", 9),)))
    result = check_key_record("s1", "example.com", OURS, resolver, [Nameserver("ns1")], 1.0)
    assert result.status is DnsStatus.ERROR
    assert result.detail == "ns1:53 failed: ns1 is not an IP address"
