"""What `reputable setup postfix` would change in main.cf, and the notes it prints, on postconf's output as data."""

from __future__ import annotations

from dataclasses import replace

from reputable.config import MilterSocket
from reputable.postfix.commands import Commands, line
from reputable.postfix.plan import plan_setup
from reputable.postfix.settings import PostfixSettings
from tests.unit.test_postfix_rows import MASTER, settings_of
from tests.unit.test_postfix_settings import load_case

SOCKET = MilterSocket("unix", path="/var/spool/postfix/reputable/milter.sock")


def carried_out(settings: PostfixSettings, changes: tuple[tuple[str, str], ...]) -> PostfixSettings:
    """The settings after `postconf -e` of the changes (no $references in these tests)."""
    written = {**settings.written, **dict(changes)}
    return replace(settings, main={**settings.main, **dict(changes)}, written=written)


def test_a_main_cf_without_milters_gets_all_four_settings() -> None:
    plan = plan_setup(settings_of(""), SOCKET)
    assert plan.address == "unix:reputable/milter.sock"
    assert plan.changes == (
        ("smtpd_milters", "unix:reputable/milter.sock"),
        ("non_smtpd_milters", "unix:reputable/milter.sock"),
        ("milter_default_action", "tempfail"),
        ("milter_protocol", "6"),
    )
    assert plan.notes == ()
    again = plan_setup(carried_out(settings_of(""), plan.changes), SOCKET)
    assert again.changes == ()


def test_other_milters_are_kept_and_another_signer_is_named_not_removed() -> None:
    plan = plan_setup(load_case("debian-amavis"), SOCKET, Commands("/etc/postfix"))
    # non_smtpd_milters = $smtpd_milters follows: it is left as written.
    assert plan.changes == (
        (
            "smtpd_milters",
            "unix:opendkim/opendkim.sock, unix:opendmarc/opendmarc.sock, "
            "unix:reputable/milter.sock",
        ),
        ("milter_default_action", "tempfail"),
        ("milter_protocol", "6"),
    )
    assert plan.notes == (
        "unix:opendkim/opendkim.sock (OpenDKIM) is also in smtpd_milters: until it goes, mail "
        "is signed twice. Once reputable signs (reputable check, then a test message), "
        "remove it with:",
        "  "
        + line(
            Commands("/etc/postfix").set(
                "smtpd_milters", "unix:opendmarc/opendmarc.sock, unix:reputable/milter.sock"
            )
        ),
    )


def test_reputable_already_in_by_another_spelling_is_not_added_again() -> None:
    main = (
        "smtpd_milters = unix:/var/spool/postfix/reputable/milter.sock\n"
        "non_smtpd_milters = local:reputable/milter.sock\n"
        "milter_default_action = tempfail\nmilter_protocol = 6\n"
    )
    assert plan_setup(settings_of(main), SOCKET).changes == ()


def test_values_written_with_references_are_appended_to_as_written() -> None:
    settings = settings_of("")
    settings = replace(
        settings,
        main={"smtpd_milters": "inet:127.0.0.1:8893"},
        written={"smtpd_milters": "$dmarc_milter"},
    )
    plan = plan_setup(settings, SOCKET)
    assert plan.changes[0] == ("smtpd_milters", "$dmarc_milter, unix:reputable/milter.sock")


def test_master_cf_overrides_that_keep_mail_from_reputable_are_pointed_out() -> None:
    master = MASTER + "submission inet  n       -       y       -       -       smtpd\n"
    overrides = (
        "submission/inet/smtpd_milters = inet:127.0.0.1:8893\n"
        "pickup/unix/receive_override_options = no_milters\n"
    )
    plan = plan_setup(settings_of("", master, overrides), SOCKET)
    assert plan.notes == (
        "mail through submission/inet will still not reach reputable (smtpd_milters = "
        "inet:127.0.0.1:8893, from submission/inet): reputable check gives the command",
        "mail through pickup/unix (sendmail) will still not reach reputable "
        "(receive_override_options = no_milters, from pickup/unix): reputable check gives "
        "the command",
    )


def test_a_socket_outside_the_queue_directory_is_out_of_a_chrooted_smtpd_s_reach() -> None:
    socket = MilterSocket("unix", path="/run/reputable/milter.sock")
    plan = plan_setup(settings_of(""), socket)
    assert plan.changes[0] == ("smtpd_milters", "unix:/run/reputable/milter.sock")
    assert plan.notes == (
        "smtp/inet, pickup/unix (sendmail) run chrooted in /var/spool/postfix (master.cf) and "
        "cannot reach /run/reputable/milter.sock: put the socket inside it "
        '([milter] socket = "unix:/var/spool/postfix/reputable/milter.sock")',
    )
    unchrooted = MASTER.replace("  y  ", "  n  ")
    assert plan_setup(settings_of("", unchrooted), socket).notes == ()


def test_an_inet_socket_is_named_host_and_port() -> None:
    socket = MilterSocket("inet6", host="::1", port=8891)
    plan = plan_setup(settings_of(""), socket)
    assert plan.address == "inet:[::1]:8891"
    assert plan.changes[0] == ("smtpd_milters", "inet:[::1]:8891")
