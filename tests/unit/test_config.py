"""Configuration: defaults, the documented example file, and every kind of refusal."""

from __future__ import annotations

import ipaddress
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from reputable.config import (
    Config,
    MilterSocket,
    OnError,
    config_path,
    load_config,
    parse_config,
    parse_socket,
)
from reputable.errors import EX_CONFIG, ConfigError
from reputable.signing.algorithm import Algorithm
from reputable.signing.canonicalization import Canonicalization

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "conf" / "reputable.toml"


def test_example_file_loads_to_exactly_the_defaults() -> None:
    loaded = load_config(str(EXAMPLE), environ={})
    assert loaded == Config(source=str(EXAMPLE))


def test_example_file_sets_every_key_the_loader_knows() -> None:
    from reputable.config import _SCHEMA

    document = tomllib.loads(EXAMPLE.read_text())
    document["keys.publish"] = document["keys"].pop("publish")
    assert set(document) == set(_SCHEMA)
    for section, keys in _SCHEMA.items():
        assert set(document[section]) == set(keys), section


def test_no_file_gives_embedded_defaults(tmp_path: Path) -> None:
    assert config_path(None, {}) in (None, Path("/etc/reputable/reputable.toml"))
    config = parse_config({}, "<defaults>")
    assert config.milter.socket == MilterSocket("inet", host="127.0.0.1", port=8891)
    assert config.signing.algorithms == (Algorithm.RSA_SHA256,)
    assert config.signing.header_canonicalization is Canonicalization.RELAXED
    assert config.signing.oversign[0] == "from"


def test_environment_variable_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "r.toml"
    path.write_text('[milter]\nsocket = "unix:/run/x.sock"\n')
    config = load_config(None, environ={"REPUTABLE_CONFIG": str(path)})
    assert config.milter.socket.postfix == "unix:/run/x.sock"
    assert config.source == str(path)


def test_values_are_parsed_into_types() -> None:
    config = parse_config(
        {
            "milter": {
                "socket": "inet6:9999@::1",
                "on_error": "accept",
                "timeout": "2m",
                "socket_mode": "0600",
            },
            "signing": {
                "domains": ["Example.COM.", "bücher.example"],
                "algorithms": ["ed25519-sha256", "rsa-sha256"],
                "canonicalization": "simple/relaxed",
                "oversign": [],
            },
            "trust": {"internal_hosts": ["192.0.2.0/24", "2001:db8::1"], "authenticated": False},
        },
        "t.toml",
    )
    assert config.milter.socket.postfix == "inet:[::1]:9999"
    assert config.milter.on_error is OnError.ACCEPT
    assert config.milter.timeout_s == 120
    assert config.milter.socket_mode == 0o600
    assert config.signing.domains == ("example.com", "xn--bcher-kva.example")
    assert config.signing.algorithms == (Algorithm.ED25519_SHA256, Algorithm.RSA_SHA256)
    assert config.signing.header_canonicalization is Canonicalization.SIMPLE
    assert config.signing.body_canonicalization is Canonicalization.RELAXED
    assert config.trust.internal_hosts[1] == ipaddress.ip_network("2001:db8::1/128")
    assert config.trust.authenticated is False


@pytest.mark.parametrize(
    ("text", "postfix"),
    [
        ("inet:8891@127.0.0.1", "inet:127.0.0.1:8891"),
        ("inet:8891@localhost", "inet:localhost:8891"),
        ("unix:/run/reputable/milter.sock", "unix:/run/reputable/milter.sock"),
        ("local:/run/r.sock", "unix:/run/r.sock"),
        ("inet6:8891@::1", "inet:[::1]:8891"),
    ],
)
def test_socket_forms(text: str, postfix: str) -> None:
    assert parse_socket(text).postfix == postfix


BAD_VALUES = [
    ("milter", "socket", "tcp:8891"),
    ("milter", "socket", "inet:99999@127.0.0.1"),
    ("milter", "socket", "inet6:8891@127.0.0.1"),
    ("milter", "socket", "unix:relative.sock"),
    ("milter", "socket", 8891),
    ("milter", "on_error", "discard"),
    ("milter", "timeout", "ten minutes"),
    ("milter", "socket_mode", "rw-rw----"),
    ("signing", "domains", "example.com"),
    ("signing", "domains", ["exa mple.com"]),
    ("signing", "domains", ["-bad-.example"]),
    ("signing", "domains", ["localhost"]),  # never a mail domain: nothing is signed for it
    ("signing", "domains", ["vm"]),
    ("signing", "domains", ["vm.localdomain"]),
    ("signing", "keys", "relative/keys"),
    ("signing", "algorithms", ["rsa-sha1"]),
    ("signing", "algorithms", []),
    ("signing", "canonicalization", "loose/relaxed"),
    ("signing", "headers", ["sub ject"]),
    ("signing", "headers", []),
    ("signing", "headers", ["subject", "to"]),
    ("signing", "oversign", "from"),
    ("trust", "internal_hosts", ["10.0.0.300"]),
    ("trust", "authenticated", "yes"),
    ("dns", "nameservers", ["resolver.example.com"]),
    ("dns", "nameservers", ["127.0.0.1:99999"]),
    ("dns", "timeout", "5 minutes"),
    ("dns", "timeout", "90s"),
    ("keys", "grace", "a week"),
    ("keys", "selector", "fixed"),
    ("keys", "selector", "%Y/%m"),
    ("keys", "verify_nameservers", "192.0.2.1"),
    ("log", "format", "xml"),
    ("log", "target", "journal"),
    ("log", "level", "verbose"),
    ("metrics", "listen", "localhost:9787"),  # an address, not a name to resolve
    ("metrics", "listen", "127.0.0.1"),
    ("metrics", "listen", "127.0.0.1:99999"),
    ("metrics", "listen", 9787),
    ("inbound", "verify", "yes"),
    ("inbound", "authserv_id", "mx.example.org; dkim=pass"),
    ("inbound", "authserv_id", "two words"),
    ("inbound", "dmarc_enforce", 1),
    ("inbound", "trusted_arc_signers", "lists.example.org"),
    ("inbound", "trusted_arc_signers", ["not a domain"]),
]


@pytest.mark.parametrize(("section", "key", "value"), BAD_VALUES)
def test_every_bad_value_is_refused_with_file_key_value_and_allowed(
    section: str, key: str, value: object
) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config({section: {key: value}}, "/etc/reputable/reputable.toml")
    (problem,) = caught.value.problems
    assert problem.source == "/etc/reputable/reputable.toml"
    assert problem.key == f"{section}.{key}"
    assert problem.value
    assert problem.allowed.startswith("expected ")


@pytest.mark.parametrize(
    ("text", "listen"),
    [("", None), ("127.0.0.1:9787", ("127.0.0.1", 9787)), ("[::1]:9787", ("::1", 9787))],
)
def test_metrics_are_off_unless_an_address_is_given(
    text: str, listen: tuple[str, int] | None
) -> None:
    config = parse_config({"metrics": {"listen": text}}, "<test>")
    assert config.metrics.listen == listen
    assert parse_config({}, "<defaults>").metrics.listen is None


def test_inbound_verifies_and_reports_by_default_and_enforces_only_when_asked() -> None:
    defaults = parse_config({}, "<defaults>").inbound
    assert (defaults.verify, defaults.authserv_id, defaults.dmarc_enforce) == (True, "", False)
    table = {
        "authserv_id": "mx.example.org",
        "dmarc_enforce": True,
        "trusted_arc_signers": ["Lists.Example.org."],
    }
    inbound = parse_config({"inbound": table}, "<test>").inbound
    assert (inbound.authserv_id, inbound.dmarc_enforce) == ("mx.example.org", True)
    assert inbound.trusted_arc_signers == ("lists.example.org",)


def test_dns_and_keys_sections() -> None:
    config = parse_config(
        {
            "dns": {
                "nameservers": ["192.0.2.53", "127.0.0.1:5353", "[2001:db8::53]:5300"],
                "timeout": "500ms",
            },
            "keys": {
                "grace": "2d",
                "selector": "{host}-%Y%m%d",
                "publish": {"server": "127.0.0.1:5300", "ttl": 300},
            },
        },
        "f.toml",
    )
    assert [str(n) for n in config.dns.nameservers] == [
        "192.0.2.53:53",
        "127.0.0.1:5353",
        "[2001:db8::53]:5300",
    ]
    assert config.dns.timeout_s == 0.5
    assert config.keys.grace_s == 2 * 86400
    assert config.keys.publish.server is not None
    assert config.keys.publish.server.port == 5300
    assert config.keys.publish.ttl == 300


def test_bad_publish_key_is_named_with_its_table() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config({"keys": {"publish": {"server": "primary.example.com", "ttl": 5}}}, "f.toml")
    assert [p.key for p in caught.value.problems] == ["keys.publish.server", "keys.publish.ttl"]


def test_unknown_section_and_key_name_what_is_known() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config({"milters": {}, "signing": {"domain": ["example.com"]}}, "f.toml")
    problems = {p.key: p for p in caught.value.problems}
    assert "[signing]" in problems["[milters]"].allowed
    assert "domains" in problems["signing.domain"].allowed


def test_all_problems_are_reported_at_once() -> None:
    document = {"milter": {"socket": "bad", "on_error": "bad"}, "log": {"level": "bad"}, "x": {}}
    with pytest.raises(ConfigError) as caught:
        parse_config(document, "f.toml")
    assert len(caught.value.problems) == 4


def test_syntax_error_and_missing_file(tmp_path: Path) -> None:
    broken = tmp_path / "broken.toml"
    broken.write_text("[milter\nsocket = 1\n")
    with pytest.raises(ConfigError) as caught:
        load_config(str(broken), environ={})
    assert caught.value.problems[0].key == "(syntax)"
    with pytest.raises(ConfigError) as caught:
        load_config(str(tmp_path / "absent.toml"), environ={})
    assert caught.value.problems[0].value == "missing"


def test_daemon_refuses_bad_config_with_exit_78_and_no_traceback(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('[milter]\nsocket = "tcp:1"\n[signing]\nalgorithms = ["rsa-sha1"]\n')
    done = subprocess.run(
        [sys.executable, "-m", "reputable", "milter", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == EX_CONFIG
    assert "Traceback" not in done.stderr
    assert f'{path}: milter.socket = "tcp:1": expected' in done.stderr
    assert f'{path}: signing.algorithms = ["rsa-sha1"]: expected' in done.stderr
    assert "['" not in done.stderr  # values as TOML writes them, not as Python lists


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (["rsa-sha1"], '["rsa-sha1"]'),
        (["rsa-sha256", 1, True], '["rsa-sha256", 1, true]'),
        ({"zone": "x", "kind": ["a"]}, '{ zone = "x", kind = ["a"] }'),
        ('say "hi"', '"say \\"hi\\""'),
    ],
)
def test_a_refused_value_is_shown_as_toml(value: object, shown: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config({"signing": {"algorithms": value}}, "r.toml")
    assert caught.value.problems[0].value == shown
