"""The postfix.* rows of `reputable check`, decided on postconf's output and probe results as data."""

from __future__ import annotations

from dataclasses import replace

import pytest

from reputable.checks.findings import Finding, Status
from reputable.checks.postfix import interpret_postfix
from reputable.checks.postfix_sockets import socket_targets
from reputable.config import MilterSocket
from reputable.postfix.commands import Commands
from reputable.postfix.milters import UnixEndpoint
from reputable.postfix.paths import Entry, PostfixView, mail_paths, view_postfix
from reputable.postfix.probe import Probe, Reach
from reputable.postfix.settings import PostfixSettings, parse_settings
from reputable.signing.canonicalization import Canonicalization
from tests.unit.test_postfix_settings import load_case

SOCKET = MilterSocket("unix", path="/var/spool/postfix/reputable/milter.sock")
RELAXED = Canonicalization.RELAXED
ABSOLUTE_IN_CHROOT = "/var/spool/postfix/var/spool/postfix/reputable/milter.sock"
DEFAULTS = """\
queue_directory = /var/spool/postfix
mail_owner = postfix
smtpd_milters =
non_smtpd_milters =
milter_default_action = tempfail
milter_protocol = 6
receive_override_options =
content_filter =
"""
MASTER = """\
smtp       inet  n       -       y       -       -       smtpd
pickup     unix  n       -       y       60      1       pickup
cleanup    unix  n       -       y       -       0       cleanup
"""
GOOD_MAIN = """\
smtpd_milters = unix:reputable/milter.sock
non_smtpd_milters = $smtpd_milters
"""


def settings_of(main: str, master: str = MASTER, overrides: str = "") -> PostfixSettings:
    """Settings as postconf prints them (main.cf already expanded, as with -nx)."""
    expanded = main.replace("$smtpd_milters", "unix:reputable/milter.sock")
    return parse_settings(expanded, DEFAULTS, master, overrides, main)


def rows(
    view: PostfixView,
    probes: dict[str, Probe] | None = None,
    canonicalization: Canonicalization = RELAXED,
) -> dict[str, Finding]:
    if probes is None:
        probes = {t.where: Probe(Reach.LISTENING) for t in socket_targets(view)}
    return {f.id: f for f in interpret_postfix(view, canonicalization, probes)}


def test_a_correct_setup_gives_only_ok_rows_and_no_fixes() -> None:
    found = rows(view_postfix(settings_of(GOOD_MAIN), SOCKET))
    assert list(found) == [
        "postfix.smtpd_milters",
        "postfix.non_smtpd_milters",
        "postfix.milter.unix:reputable/milter.sock",
        "postfix.milter_default_action",
        "postfix.milter_protocol",
        "postfix.no_milters",
        "postfix.content_filter",
    ]
    assert {f.status for f in found.values()} == {Status.OK}
    assert {f.fix for f in found.values()} == {""}
    assert found["postfix.milter_default_action"].summary == (
        "milter_default_action = tempfail (Postfix's default) for smtp/inet, "
        "pickup/unix (sendmail): while reputable is down, Postfix defers mail and retries it"
    )


def test_debian_with_opendkim_and_amavis_before_reputable() -> None:
    found = rows(view_postfix(load_case("debian-amavis"), SOCKET))
    add = (
        "postconf -e 'smtpd_milters = unix:opendkim/opendkim.sock, "
        "unix:opendmarc/opendmarc.sock, unix:reputable/milter.sock' && postfix reload"
    )
    smtpd = found["postfix.smtpd_milters"]
    assert (smtpd.status, smtpd.fix) == (Status.FAIL, add)
    assert smtpd.summary.startswith("mail submitted over SMTP is not signed: smtpd_milters (")
    sendmail = found["postfix.non_smtpd_milters"]
    # non_smtpd_milters = $smtpd_milters is kept: the fix goes to the list it follows.
    assert (sendmail.status, sendmail.fix) == (Status.FAIL, add)
    assert sendmail.summary.startswith("mail from sendmail and cron is not signed")
    action = found["postfix.milter_default_action"]
    assert action == Finding(
        "postfix.milter_default_action",
        Status.FAIL,
        "milter_default_action = accept: while reputable is down or too slow, mail leaves unsigned",
        "postconf -e 'milter_default_action = tempfail' && postfix reload",
    )
    twice = found["postfix.content_filter"]
    assert twice.status is Status.WARN
    assert "re-injects through 127.0.0.1:10025/inet, which runs the milters again" in twice.summary
    assert twice.fix == (
        "postconf -P 127.0.0.1:10025/inet/receive_override_options="
        "no_header_body_checks,no_unknown_recipient_checks,no_milters && postfix reload"
    )
    assert found["postfix.no_milters"].status is Status.OK
    assert found["postfix.milter_protocol"].status is Status.OK


def test_per_milter_braces_and_master_cf_overrides() -> None:
    view = view_postfix(load_case("postscreen-braces"), SOCKET)
    probes = {t.where: Probe(Reach.LISTENING) for t in socket_targets(view)}
    probes[ABSOLUTE_IN_CHROOT] = Probe(Reach.MISSING, "No such file or directory")
    found = rows(view, probes)
    assert found["postfix.smtpd_milters"].status is Status.OK  # the pass service, not postscreen
    mended = (
        "postconf -e 'smtpd_milters = { unix:reputable/milter.sock, default_action=tempfail, "
        "protocol=6 }, inet:[::1]:8893'"
    )
    action = found["postfix.milter_default_action"]
    assert action.status is Status.FAIL
    assert action.summary.startswith(
        "milter_default_action = accept (in reputable's smtpd_milters entry) for smtpd/pass: "
    )
    assert action.fix == f"{mended} && postfix reload"
    protocol = found["postfix.milter_protocol"]
    assert protocol.status is Status.WARN
    assert protocol.summary.startswith(
        "milter_protocol = 4 (in reputable's smtpd_milters entry) for smtpd/pass; "
        "2 (-o on submissions/inet) for submissions/inet: reputable speaks 6"
    )
    # The same rewrite of reputable's entry: running one fix does not undo the other.
    assert protocol.fix == (
        f"{mended} && postconf -P submissions/inet/milter_protocol=6 && postfix reload"
    )
    off = found["postfix.no_milters"]
    assert off.status is Status.FAIL
    assert off.summary == (
        "mail entering through pickup/unix (sendmail) is not signed: "
        "receive_override_options includes no_milters (pickup/unix)"
    )
    assert off.fix == "postconf -PX pickup/unix/receive_override_options && postfix reload"


def test_simple_header_canonicalization_makes_an_old_protocol_a_failure() -> None:
    view = view_postfix(settings_of(GOOD_MAIN + "milter_protocol = 2\n"), SOCKET)
    assert rows(view)["postfix.milter_protocol"].status is Status.WARN
    failed = rows(view, canonicalization=Canonicalization.SIMPLE)["postfix.milter_protocol"]
    assert failed.status is Status.FAIL
    assert "every signature fails" in failed.summary
    assert failed.fix == "postconf -e 'milter_protocol = 6' && postfix reload"


@pytest.mark.parametrize(
    ("action", "status"),
    [
        ("accept", Status.FAIL),
        ("reject", Status.WARN),
        ("quarantine", Status.WARN),
        ("x", Status.WARN),
    ],
)
def test_every_default_action_but_tempfail_is_named(action: str, status: Status) -> None:
    view = view_postfix(settings_of(GOOD_MAIN + f"milter_default_action = {action}\n"), SOCKET)
    found = rows(view)["postfix.milter_default_action"]
    assert found.status is status
    assert found.summary.startswith(f"milter_default_action = {action} for smtp/inet, ")


def test_a_service_override_of_the_action_is_fixed_where_it_is() -> None:
    overrides = "smtp/inet/milter_default_action = accept\n"
    view = view_postfix(settings_of(GOOD_MAIN, overrides=overrides), SOCKET)
    found = rows(view)["postfix.milter_default_action"]
    assert found.summary.startswith(
        "milter_default_action = accept (-o on smtp/inet) for smtp/inet:"
    )
    assert found.fix == "postconf -P smtp/inet/milter_default_action=tempfail && postfix reload"


def test_without_reputable_anywhere_the_main_cf_action_still_counts() -> None:
    view = view_postfix(settings_of("milter_default_action = accept\n"), SOCKET)
    assert rows(view)["postfix.milter_default_action"].status is Status.FAIL


def test_a_submission_service_without_reputable_is_a_warning_with_its_own_fix() -> None:
    master = MASTER + "submission inet  n       -       y       -       -       smtpd\n"
    overrides = "submission/inet/smtpd_milters = inet:127.0.0.1:8893, unix:opendkim/o.sock\n"
    found = rows(view_postfix(settings_of(GOOD_MAIN, master, overrides), SOCKET))
    smtpd = found["postfix.smtpd_milters"]
    assert smtpd.status is Status.WARN
    assert smtpd.summary.startswith("mail submitted to submission/inet is not signed")
    assert smtpd.fix == (
        "postconf -P submission/inet/smtpd_milters="
        "inet:127.0.0.1:8893,unix:opendkim/o.sock,unix:reputable/milter.sock && postfix reload"
    )


def test_no_milters_in_main_cf_is_dropped_from_main_cf() -> None:
    main = GOOD_MAIN + "receive_override_options = no_address_mappings, no_milters\n"
    found = rows(view_postfix(settings_of(main), SOCKET))["postfix.no_milters"]
    assert found.status is Status.FAIL
    assert found.summary.startswith(
        "mail entering through smtp/inet, pickup/unix (sendmail) is not signed"
    )
    assert found.fix == (
        "postconf -e 'receive_override_options = no_address_mappings' && postfix reload"
    )


def test_a_content_filter_without_a_way_back_is_a_warning() -> None:
    main = GOOD_MAIN + "content_filter = amavis:[127.0.0.1]:10024\n"
    found = rows(view_postfix(settings_of(main), SOCKET))["postfix.content_filter"]
    assert found.status is Status.WARN
    assert "no way back was found" in found.summary
    assert "postconf -M '127.0.0.1:10025/inet=127.0.0.1:10025 inet n - n - - smtpd'" in found.fix


def test_the_way_back_with_no_milters_is_expected_not_a_failure() -> None:
    main = GOOD_MAIN + "content_filter = amavis:[127.0.0.1]:10024\n"
    master = MASTER + "127.0.0.1:10025 inet n   -       n       -       -       smtpd\n"
    overrides = (
        "127.0.0.1:10025/inet/content_filter =\n"
        "127.0.0.1:10025/inet/receive_override_options = no_milters\n"
    )
    found = rows(view_postfix(settings_of(main, master, overrides), SOCKET))
    assert found["postfix.no_milters"].status is Status.OK
    assert "but the content filter's way back (127.0.0.1:10025/inet)" in (
        found["postfix.no_milters"].summary
    )
    assert found["postfix.content_filter"].status is Status.OK
    # The way back is no way in for signing: smtpd_milters is not asked of it.
    assert found["postfix.smtpd_milters"].summary.startswith("every smtpd service (smtp/inet)")


def test_a_loopback_smtpd_is_no_way_back_without_a_content_filter_elsewhere() -> None:
    master = MASTER + "127.0.0.1:10587 inet n   -       n       -       -       smtpd\n"
    paths = mail_paths(settings_of(GOOD_MAIN, master))
    assert [p.reinjection for p in paths] == [False, False, False]
    assert [p.entry for p in paths] == [Entry.SMTPD, Entry.SMTPD, Entry.SENDMAIL]


def test_sockets_are_probed_where_each_daemon_looks() -> None:
    master = MASTER.replace(
        "cleanup    unix  n       -       y", "cleanup    unix  n       -       n"
    )
    main = f"smtpd_milters = unix:{SOCKET.path}\nnon_smtpd_milters = unix:{SOCKET.path}\n"
    view = view_postfix(settings_of(main, master), SOCKET)
    targets = socket_targets(view)
    assert [t.where for t in targets] == [ABSOLUTE_IN_CHROOT, SOCKET.path]
    assert targets[0].endpoint == UnixEndpoint(SOCKET.path)
    probes = {ABSOLUTE_IN_CHROOT: Probe(Reach.MISSING), SOCKET.path: Probe(Reach.LISTENING)}
    found = rows(view, probes)["postfix.milter.unix:/var/spool/postfix/reputable/milter.sock"]
    assert found.status is Status.FAIL
    assert found.summary == (
        f"nothing listens on {ABSOLUTE_IN_CHROOT} (no such socket): for mail through "
        "smtp/inet, Postfix defers it (4xx) until the milter answers (the daemon is chrooted "
        f"in /var/spool/postfix, so unix:{SOCKET.path} is {ABSOLUTE_IN_CHROOT})"
    )
    assert found.fix == (
        "name it relative to the queue directory: "
        "postconf -e 'smtpd_milters = unix:reputable/milter.sock' && postfix reload"
    )


@pytest.mark.parametrize(
    ("probe", "status", "says"),
    [
        (Probe(Reach.REFUSED, "Connection refused"), Status.FAIL, "(connection refused)"),
        (Probe(Reach.MISSING, "No such file"), Status.FAIL, "(no such socket)"),
        (Probe(Reach.TIMEOUT, "no answer in 2s"), Status.FAIL, "(no answer in 2s)"),
        (
            Probe(Reach.DENIED, "Permission denied"),
            Status.UNKNOWN,
            "(permission denied): run as root",
        ),
        (Probe(Reach.ERROR, "Too many open files"), Status.WARN, ": Too many open files"),
    ],
)
def test_what_a_probe_found_becomes_a_row(probe: Probe, status: Status, says: str) -> None:
    view = view_postfix(settings_of(GOOD_MAIN), SOCKET)
    found = rows(view, {SOCKET.path: probe})["postfix.milter.unix:reputable/milter.sock"]
    assert found.status is status
    assert says in found.summary
    if status is Status.FAIL:
        assert found.fix.startswith("start reputable: systemctl start reputable")
    else:
        assert found.summary.startswith("could not check unix:reputable/milter.sock at ")


def test_another_milter_down_is_named_with_the_command_that_takes_it_out() -> None:
    main = (
        "smtpd_milters = inet:127.0.0.1:8893, unix:reputable/milter.sock\n"
        "non_smtpd_milters = $smtpd_milters\nmilter_default_action = accept\n"
    )
    settings = settings_of(main)
    settings = replace(
        settings, main={**settings.main, "non_smtpd_milters": settings.main["smtpd_milters"]}
    )
    view = view_postfix(settings, SOCKET, Commands("/etc/postfix-out"))
    probes = {SOCKET.path: Probe(Reach.LISTENING), "127.0.0.1:8893": Probe(Reach.REFUSED)}
    found = rows(view, probes)["postfix.milter.inet:127.0.0.1:8893"]
    assert found.status is Status.FAIL
    assert found.summary.endswith("Postfix passes it on without this milter")
    assert found.fix == (
        "start the milter that should listen there, or take it out: "
        "postconf -c /etc/postfix-out -e 'smtpd_milters = unix:reputable/milter.sock' "
        "&& postfix -c /etc/postfix-out reload"
    )


def test_an_address_postfix_cannot_use_is_a_warning() -> None:
    view = view_postfix(settings_of("smtpd_milters = 8891@localhost\n"), SOCKET)
    found = rows(view)["postfix.milter.8891@localhost"]
    assert found.status is Status.WARN
    assert "Postfix connects only to unix:PATH or inet:HOST:PORT" in found.summary


def test_taking_out_the_last_milter_of_main_cf_removes_the_setting() -> None:
    view = view_postfix(settings_of("smtpd_milters = inet:127.0.0.1:8893\n"), SOCKET)
    found = rows(view, {"127.0.0.1:8893": Probe(Reach.REFUSED)})[
        "postfix.milter.inet:127.0.0.1:8893"
    ]
    assert found.fix.endswith(": postconf -X smtpd_milters && postfix reload")
