"""postconf's output as data: parameters, master.cf services and their -o overrides, and which wins."""

from __future__ import annotations

from pathlib import Path

from reputable.postfix.settings import (
    PostfixSettings,
    Service,
    Setting,
    parse_overrides,
    parse_parameters,
    parse_services,
    parse_settings,
    words,
)

DATA = Path(__file__).parent / "data" / "postfix"


def load_case(name: str) -> PostfixSettings:
    """A case of data/postfix: what postconf said of its main.cf and master.cf."""
    case = DATA / name
    return parse_settings(
        *((case / f"postconf-{flags}.txt").read_text() for flags in ("nx", "dx", "M", "Px", "n"))
    )


def test_parameters_keep_empty_values_and_equals_signs_inside_values() -> None:
    text = "content_filter =\nmynetworks = 127.0.0.0/8\nsmtpd_milters = { inet:h:1, a=b }\n"
    assert parse_parameters(text) == {
        "content_filter": "",
        "mynetworks": "127.0.0.0/8",
        "smtpd_milters": "{ inet:h:1, a=b }",
    }


def test_services_of_postconf_m_with_their_chroot_and_daemon() -> None:
    services = load_case("debian-amavis").services
    assert [s.key for s in services] == [
        "smtp/inet",
        "submission/inet",
        "pickup/unix",
        "cleanup/unix",
        "qmgr/unix",
        "rewrite/unix",
        "smtp/unix",
        "smtp-amavis/unix",
        "127.0.0.1:10025/inet",
    ]
    assert services[0] == Service("smtp", "inet", True, "smtpd")
    assert services[-1] == Service("127.0.0.1:10025", "inet", False, "smtpd")
    assert services[5].command == "trivial-rewrite"


def test_the_folded_form_reads_the_same_services() -> None:
    case = DATA / "postscreen-braces"
    folded = parse_services((case / "postconf-Mf.txt").read_text())
    assert folded == parse_services((case / "postconf-M.txt").read_text())
    assert [(s.key, s.command, s.chroot) for s in folded] == [
        ("smtp/inet", "postscreen", True),
        ("smtpd/pass", "smtpd", True),
        ("submissions/inet", "smtpd", True),
        ("pickup/unix", "pickup", True),
        ("cleanup/unix", "cleanup", False),
    ]


def test_a_dash_in_the_chroot_column_is_no_chroot() -> None:
    (service,) = parse_services("relay      unix  -       -       -       -       -       smtp\n")
    assert service.chroot is False


def test_overrides_by_service_including_addresses_and_braced_values() -> None:
    overrides = parse_overrides((DATA / "postscreen-braces" / "postconf-Px.txt").read_text())
    assert overrides["submissions/inet"]["smtpd_milters"] == (
        "unix:/var/spool/postfix/reputable/milter.sock, inet:[::1]:8893"
    )
    reinject = parse_overrides((DATA / "debian-amavis" / "postconf-Px.txt").read_text())
    assert reinject["127.0.0.1:10025/inet"]["content_filter"] == ""


def test_a_service_override_wins_over_main_cf_which_wins_over_the_default() -> None:
    settings = load_case("debian-amavis")
    reinject = settings.service("127.0.0.1:10025/inet")
    smtp = settings.service("smtp/inet")
    assert reinject is not None and smtp is not None
    assert settings.get("content_filter", reinject) == Setting("", "127.0.0.1:10025/inet")
    assert settings.get("content_filter", smtp) == Setting(
        "smtp-amavis:[127.0.0.1]:10024", "main.cf"
    )
    assert settings.get("milter_protocol", smtp) == Setting("6", "")
    assert settings.get("milter_default_action") == Setting("accept", "main.cf")


def test_main_cf_is_read_expanded_and_as_written() -> None:
    settings = load_case("debian-amavis")
    assert settings.written["non_smtpd_milters"] == "$smtpd_milters"
    assert settings.main["non_smtpd_milters"] == settings.main["smtpd_milters"]
    assert settings.queue_directory == "/var/spool/postfix"


def test_postfix_lists_split_on_commas_and_white_space() -> None:
    assert words("no_milters,no_header_body_checks  no_address_mappings") == (
        "no_milters",
        "no_header_body_checks",
        "no_address_mappings",
    )
    assert words("") == ()
