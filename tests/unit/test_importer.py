"""`reputable keys import`: OpenDKIM and dkimpy-milter set-ups mapped onto the key store.

The sample configurations in data/import/ are templates: each test writes
them into its own directory and generates the private keys they name there
(no private key is committed).
"""

from __future__ import annotations

import io
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from dkim import dknewkey
from hypothesis import given
from hypothesis import strategies as st

from reputable.config import Config, SigningConfig
from reputable.errors import ConfigError
from reputable.keys import importer
from reputable.keys.importer import (
    ConfLine,
    ImportedKey,
    ImportPlan,
    Scope,
    Software,
    TomlSetting,
    import_command,
    map_settings,
    parse_conf,
    parse_key_table,
    parse_private_key,
    parse_signing_table,
    pattern_scope,
    perform_import,
    plan_dkimpy_milter,
    plan_opendkim,
    plan_tables,
)
from reputable.keys.metadata import KeyState
from reputable.keys.record import record_value
from reputable.keys.store import algorithm_of, key_path, read_store
from reputable.signing.algorithm import Algorithm

DATA = Path(__file__).parent / "data" / "import"
NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
RSA = Algorithm.RSA_SHA256
ED = Algorithm.ED25519_SHA256
PKCS1 = serialization.PrivateFormat.TraditionalOpenSSL  # OpenDKIM's "BEGIN RSA PRIVATE KEY"
PKCS8 = serialization.PrivateFormat.PKCS8  # opendkim-genkey on OpenSSL 3, dknewkey

# Every key file the samples name, and how its software would have written it.
RSA_KEYS = {
    "keys/example.com/mail.private": PKCS1,
    "keys/example.net/default.private": PKCS1,
    "keys/example.com/ceo.private": PKCS1,
    "keys/example.com/2019.private": PKCS1,
    "keys/shared.private": PKCS1,
    "keys/example.org.private": PKCS8,
    "keys/lists.example.private": PKCS1,
    "keys/single.private": PKCS1,
    "keys/dkimpy-rsa.key": PKCS8,
    "keys/com-rsa.key": PKCS8,
    "keys/net-rsa.key": PKCS8,
}
ED25519_SEEDS = ("keys/dkimpy-ed25519.key", "keys/com-ed.key")


@pytest.fixture(scope="module")
def rsa_pool() -> Callable[[str], rsa.RSAPrivateKey]:
    """One 2048-bit key per name for the whole module: generating them is the slow part."""
    made: dict[str, rsa.RSAPrivateKey] = {}

    def key(name: str) -> rsa.RSAPrivateKey:
        if name not in made:
            made[name] = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        return made[name]

    return key


@dataclass
class Sample:
    dir: Path

    def __call__(self, name: str) -> Path:
        return self.dir / name

    def snapshot(self) -> dict[Path, tuple[bytes, int, int]]:
        return {
            p: (p.read_bytes(), p.stat().st_mode, p.stat().st_mtime_ns)
            for p in sorted(self.dir.rglob("*"))
            if p.is_file() and "store" not in p.parts
        }


@pytest.fixture
def sample(tmp_path: Path, rsa_pool: Callable[[str], rsa.RSAPrivateKey]) -> Sample:
    for template in DATA.iterdir():
        text = template.read_text(encoding="utf-8").replace("@DIR@", str(tmp_path))
        (tmp_path / template.name).write_text(text, encoding="utf-8")
    for name, form in RSA_KEYS.items():
        pem = rsa_pool(name).private_bytes(
            serialization.Encoding.PEM, form, serialization.NoEncryption()
        )
        write_private(tmp_path / name, pem)
    (tmp_path / "keys/example.net/default.private").chmod(0o640)  # as some guides set it
    for name in ED25519_SEEDS:
        dknewkey.GenEd25519Keys(str(tmp_path / name), verbose=False)  # dkimpy's own format
    if os.geteuid() == 0:
        # OpenDKIM's keys belong to its own user; the import runs as root and reads them.
        os.chown(tmp_path / "keys/example.com/mail.private", 65534, 65534)
    return Sample(tmp_path)


def write_private(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    path.chmod(0o600)


def store_of(sample: Sample) -> Path:
    return sample("store")


def public_of(path: Path) -> str:
    key = parse_private_key(path.read_bytes())
    return record_value(algorithm_of(key), key)


def assert_notes(notes: tuple[str, ...], expected: list[tuple[str, str]]) -> None:
    """Each note starts with its line and says the expected thing; no note is unaccounted for."""
    assert len(notes) == len(expected), "\n".join(notes)
    for note, (start, says) in zip(notes, expected, strict=True):
        assert note.startswith(start), f"{note!r} should start with {start!r}"
        assert says in note, f"{note!r} should say {says!r}"


# --- the configuration file ---


def test_conf_lines_with_comments_blank_lines_and_odd_spacing() -> None:
    text = (
        "# comment\n"
        "\n"
        "   KeyTable\t\tfile:/etc/opendkim/key.table   # trailing comment\n"
        "Socket inet:8891@localhost\r\n"
        "InternalHosts  127.0.0.1, 10.0.0.0/8\n"
        "socket local:/run/opendkim/opendkim.sock\n"
        "Flagonly\n"
    )
    conf = parse_conf(text)
    assert conf["keytable"] == ConfLine(
        3, "KeyTable", "file:/etc/opendkim/key.table", "opendkim.conf"
    )
    assert conf["internalhosts"].value == "127.0.0.1, 10.0.0.0/8"
    # OpenDKIM compares names case-insensitively and the last setting counts.
    assert conf["socket"].value == "local:/run/opendkim/opendkim.sock"
    assert conf["flagonly"].value == ""


# --- KeyTable and SigningTable ---


def test_key_table_lines() -> None:
    table = parse_key_table(
        "# keys\n"
        "mail._domainkey.Example.COM \t Example.COM:Mail:/etc/dkimkeys/example.private  \n"
        "shared %:s1:/etc/dkimkeys/shared.private\n"
        "rel example.net:r:./keys/net.private\n",
        source="/etc/opendkim/key.table",
    )
    assert table.problems == ()
    first, shared, rel = table.entries
    assert (first.name, first.domain, first.selector, first.key_file, first.line) == (
        "mail._domainkey.Example.COM",
        "example.com",
        "mail",
        "/etc/dkimkeys/example.private",
        2,
    )
    assert first.where == "KeyTable line 2"
    assert (shared.domain, shared.selector) == ("%", "s1")
    assert rel.key_file == "./keys/net.private"


@pytest.mark.parametrize(
    ("line", "says"),
    [
        ("k example.com:/etc/dkimkeys/k.private", "this line has 2 of 3 fields"),
        ("k", "this line has 0 of 3 fields"),
        ("k example.com::/etc/dkimkeys/k.private", "this line has 2 of 3 fields"),
        ("k exa_mple..com:s:/k.private", "expected a domain name"),
        ("k example.com:s_1:/k.private", "expected a selector"),
        ("k example.com:s:k.private", "expected the path of the key file"),
    ],
)
def test_bad_key_table_lines_are_problems(line: str, says: str) -> None:
    table = parse_key_table(f"ok example.com:s:/ok.private\n{line}\n", source="/t/key.table")
    assert [e.name for e in table.entries] == ["ok"]
    (problem,) = table.problems
    assert (problem.source, problem.key) == ("/t/key.table", "line 2")
    assert says in problem.allowed


def test_duplicate_key_names_are_a_problem() -> None:
    table = parse_key_table("k example.com:a:/a.private\nk example.com:b:/b.private\n")
    (problem,) = table.problems
    assert "on line 1 already" in problem.allowed


def test_key_data_in_a_key_table_is_never_echoed() -> None:
    key = ed25519.Ed25519PrivateKey.generate()
    der = key.private_bytes(
        serialization.Encoding.DER, PKCS8, serialization.NoEncryption()
    ).hex()  # long, like the base64 DER OpenDKIM accepts in place of a path
    table = parse_key_table(f"inline example.com:sel:{der}\n")
    (problem,) = table.problems
    assert der not in str(problem)
    assert "<key data>" in problem.value
    assert "put the key data in a file" in problem.allowed


def test_signing_table_lines() -> None:
    table = parse_signing_table(
        "# patterns\n*@example.com\tmail._domainkey.example.com\n"
        "@example.net  default:@example.net\nlonely\n",
        refile=True,
        source="/t/signing.table",
    )
    first, second = table.rules
    assert (first.pattern, first.key_name, first.signer, first.line) == (
        "*@example.com",
        "mail._domainkey.example.com",
        "",
        2,
    )
    assert (second.key_name, second.signer) == ("default", "@example.net")
    (problem,) = table.problems
    assert (problem.source, problem.key, problem.value) == (
        "/t/signing.table",
        "line 4",
        "'lonely'",
    )


@pytest.mark.parametrize(
    ("pattern", "refile", "scope", "domain", "says"),
    [
        ("example.com", False, Scope.DOMAIN, "example.com", ""),
        ("@example.com", False, Scope.DOMAIN, "example.com", ""),
        ("*@example.com", True, Scope.DOMAIN, "example.com", ""),
        ("*@Bücher.Example", True, Scope.DOMAIN, "xn--bcher-kva.example", ""),
        ("*@example.com", False, Scope.DOMAIN, "example.com", "plain-file SigningTable"),
        ("ceo@example.com", False, Scope.DOMAIN, "example.com", "some senders only"),
        ("news-*@example.com", True, Scope.DOMAIN, "example.com", "some senders only"),
        ("*example.com", True, Scope.DOMAIN, "example.com", "also matches other domains"),
        ("*@*.example.org", True, Scope.OTHER, "", "covers subdomains of example.org"),
        (".example.org", False, Scope.OTHER, "", "covers subdomains of example.org"),
        ("user@.example.org", False, Scope.OTHER, "", "covers subdomains"),
        ("*", True, Scope.ALL, "", "covers every sender domain"),
        ("user@*", False, Scope.ALL, "", "covers every sender domain"),
        ("*@ex*ample.com", True, Scope.OTHER, "", "wildcard reputable cannot turn into domains"),
        ("*@-bad-.com", True, Scope.OTHER, "", "names no valid domain"),
    ],
)
def test_pattern_scope(pattern: str, refile: bool, scope: Scope, domain: str, says: str) -> None:
    result = pattern_scope(pattern, refile)
    assert (result.scope, result.domain) == (scope, domain)
    assert says in result.note
    assert bool(result.note) == bool(says)


@given(st.text())
def test_parsers_never_raise(text: str) -> None:
    parse_conf(text)
    parse_key_table(text)
    parse_signing_table(text, refile=True)
    for word in text.split():
        pattern_scope(word, refile=False)


# --- OpenDKIM: KeyTable + SigningTable, file: form ---


def test_opendkim_file_form(sample: Sample) -> None:
    plan = plan_opendkim(sample("opendkim-file.conf"))
    assert plan.keys == (
        ImportedKey("example.com", "mail", sample("keys/example.com/mail.private"), RSA, 2048),
        ImportedKey(
            "example.net", "default", sample("keys/example.net/default.private"), RSA, 2048
        ),
        ImportedKey("example.com", "ceo", sample("keys/example.com/ceo.private"), RSA, 2048),
    )
    assert (plan.origin, plan.software) == (str(sample("opendkim-file.conf")), Software.OPENDKIM)
    conf, inc = "opendkim-file.conf line", "opendkim-file.include.conf line"
    assert_notes(
        plan.notes,
        [
            (f"{conf} 6: 'Syslog yes'", 'carried over as [log] target = "syslog"'),
            (f"{conf} 7: 'SyslogSuccess yes'", "reputable logs one line per message"),
            (
                f"{conf} 13: 'Canonicalization relaxed/simple'",
                'carried over as [signing] canonicalization = "relaxed/simple"',
            ),
            (f"{conf} 16: 'OversignHeaders From'", "by default: nothing to set"),
            (f"{conf} 32: 'UserID opendkim'", "how the daemon runs"),
            (f"{conf} 33: 'UMask 007'", "how the daemon runs"),
            (
                f"{conf} 40: 'Socket inet:8891@localhost'",
                'carried over as [milter] socket = "inet:8891@localhost"',
            ),
            (f"{conf} 44: 'PidFile /run/opendkim/opendkim.pid'", "how the daemon runs"),
            (
                f"{conf} 48: 'InternalHosts refile:{sample.dir}/opendkim-file.trustedhosts'",
                'internal_hosts = ["127.0.0.1", "::1", "192.168.10.0/24"]; not carried over: '
                "'*.example.com', '!192.168.10.66', 'mx.example.com'",
            ),
            (f"{conf} 52: 'TrustAnchorFile /usr/share/dns/root.key'", "a verifying setting"),
            (
                f"{inc} 2: 'Mode sv': OpenDKIM verified inbound mail in this mode; reputable "
                "verifies it too: [inbound] verify = true (the default) writes one "
                "Authentication-Results header, with dkim=, spf=, dmarc= and arc=, on mail that "
                "is not outbound; its authserv-id is this host's name",
                "as OpenDKIM's was without AuthservID",
            ),
            (f"{inc} 3: 'SignatureAlgorithm rsa-sha256'", "takes the algorithm from each key"),
            (f"{inc} 4: 'MinimumKeyBits 1024'", "a verifying setting"),
            ("SigningTable line 3: signer '@example.net'", "the i= tag"),
            ("SigningTable line 4: 'ceo@example.com'", "all example.com mail is signed"),
            ("SigningTable line 5: '.example.com'", "covers subdomains of example.com"),
            ("SigningTable line 7: '*@example.com'", "wildcard in a plain-file SigningTable"),
            ("KeyTable line 6: key 'old._domainkey.example.com'", "not imported"),
            ("example.com has 2 rsa-sha256 keys (mail, ceo)", "with one, 'mail'"),
        ],
    )
    assert plan.settings == (
        TomlSetting("log", "target", "syslog"),
        TomlSetting("signing", "canonicalization", "relaxed/simple"),
        TomlSetting("milter", "socket", "inet:8891@localhost"),
        TomlSetting("trust", "internal_hosts", ("127.0.0.1", "::1", "192.168.10.0/24")),
    )


# --- OpenDKIM: refile: form with wildcards and '%' ---


def test_opendkim_refile_form_with_wildcards_and_percent(sample: Sample) -> None:
    plan = plan_opendkim(sample("opendkim-refile.conf"))
    shared = sample("keys/shared.private")
    assert plan.keys == (
        ImportedKey("example.org", "mail", sample("keys/example.org.private"), RSA, 2048),
        # One SigningTable key with domain '%' serves every domain mapped to it.
        ImportedKey("customer-one.example", "s2024", shared, RSA, 2048),
        ImportedKey("customer-two.example", "s2024", shared, RSA, 2048),
        # '%' in the key path is the domain too.
        ImportedKey("lists.example", "byname", sample("keys/lists.example.private"), RSA, 2048),
    )
    conf = "opendkim-refile.conf line"
    assert_notes(
        plan.notes,
        [
            (f"{conf} 3: 'Syslog yes'", f"set again at {conf} 21"),
            (f"{conf} 4: 'UMask 002'", "how the daemon runs"),
            (f"{conf} 5: 'UserID opendkim:opendkim'", "how the daemon runs"),
            (
                f"{conf} 6: 'Socket local:/var/spool/postfix/opendkim/opendkim.sock'",
                'socket = "unix:/var/spool/postfix/opendkim/opendkim.sock"',
            ),
            (f"{conf} 7: 'PidFile /run/opendkim/opendkim.pid'", "how the daemon runs"),
            (f"{conf} 9: 'Canonicalization relaxed'", "the same as reputable's default"),
            (f"{conf} 10: 'Mode s': signing only: nothing to set", ""),
            (f"{conf} 11: 'SubDomains no'", "exact domains only, like reputable"),
            (
                f"{conf} 12: 'OversignHeaders From,To,Subject,Date,List-Unsubscribe'",
                'oversign = ["from", "reply-to", "subject", "to", "cc", "date", '
                '"list-unsubscribe"]',
            ),
            (
                f"{conf} 13: 'SignHeaders From,To,Subject,Date,Message-ID'",
                'set [signing] headers = ["from", "to", "subject", "date", "message-id"]',
            ),
            (f"{conf} 17: 'ExternalIgnoreList refile:", "OpenDKIM did not verify in this mode"),
            (
                f"{conf} 18: 'InternalHosts 127.0.0.1, 10.0.0.0/8, [2001:db8::]/32'",
                'internal_hosts = ["127.0.0.1", "10.0.0.0/8", "2001:db8::/32"]',
            ),
            (f"{conf} 19: 'AutoRestart Yes'", "how the daemon runs"),
            (f"{conf} 20: 'AutoRestartRate 10/1h'", "how the daemon runs"),
            (f"{conf} 21: 'Syslog no'", "standard error by default"),
            (
                "SigningTable line 3: '*@*.example.org' covers subdomains of example.org; "
                "reputable signs exact domains: add them to [signing] domains",
                "",
            ),
            ("SigningTable line 6: '*@*.customer-two.example'", "covers subdomains"),
            ("SigningTable line 7: 'news-*@lists.example'", "all lists.example mail is signed"),
            ("SigningTable line 8: '*' signs every From domain with key 'shared' (%)", "--signing"),
        ],
    )
    assert TomlSetting("milter", "socket", "unix:/var/spool/postfix/opendkim/opendkim.sock") in (
        plan.settings
    )


# --- OpenDKIM: Domain, Selector, KeyFile ---


def test_opendkim_single_key_form(sample: Sample) -> None:
    plan = plan_opendkim(sample("opendkim-single.conf"))
    key = sample("keys/single.private")
    assert plan.keys == (
        ImportedKey("example.com", "sel2023", key, RSA, 2048),
        ImportedKey("example.net", "sel2023", key, RSA, 2048),
        ImportedKey("mail.example.com", "sel2023", key, RSA, 2048),
    )
    conf = "opendkim-single.conf line"
    assert_notes(
        plan.notes,
        [
            (f"{conf} 2: 'Syslog yes'", '[log] target = "syslog"'),
            (f"{conf} 3: 'UMask 002'", "how the daemon runs"),
            (f"{conf} 8: 'SubDomains yes'", "add each subdomain to [signing] domains"),
            (
                f"{conf} 10: 'Socket inet:8891'",
                'socket = "inet:8891@127.0.0.1" (OpenDKIM listened on every interface',
            ),
            (f"{conf} 11: 'Canonicalization simple'", 'canonicalization = "simple/simple"'),
            (
                "no Mode line: OpenDKIM verified inbound mail by default (Mode sv); reputable "
                "verifies it too: [inbound] verify = true (the default)",
                "as OpenDKIM's was without AuthservID",
            ),
        ],
    )


def test_single_key_form_needs_its_parts(tmp_path: Path) -> None:
    conf = tmp_path / "opendkim.conf"
    conf.write_text("KeyFile /etc/dkimkeys/x.private\nSocket inet:8891@localhost\n")
    with pytest.raises(ConfigError) as caught:
        plan_opendkim(conf)
    assert {(p.key, p.value) for p in caught.value.problems} == {
        ("Selector", "missing"),
        ("Domain", "missing"),
    }
    conf.write_text("Syslog yes\n")
    with pytest.raises(ConfigError) as caught:
        plan_opendkim(conf)
    assert [p.key for p in caught.value.problems] == ["KeyTable / KeyFile", "Domain"]


# --- dkimpy-milter ---


def test_dkimpy_milter_rsa_and_ed25519(sample: Sample) -> None:
    plan = plan_dkimpy_milter(sample("dkimpy-milter.conf"))
    assert plan.keys == (
        ImportedKey("example.com", "rsa2024", sample("keys/dkimpy-rsa.key"), RSA, 2048),
        ImportedKey("example.com", "ed2024", sample("keys/dkimpy-ed25519.key"), ED, 256),
    )
    assert plan.software is Software.DKIMPY_MILTER
    conf = "dkimpy-milter.conf line"
    assert_notes(
        plan.notes,
        [
            (f"{conf} 3: 'Syslog yes'", '[log] target = "syslog"'),
            (f"{conf} 4: 'SyslogSuccess yes'", "one line per message"),
            (f"{conf} 5: 'UMask 007'", "how the daemon runs"),
            (f"{conf} 6: 'Mode sv'", "dkimpy-milter verified inbound mail in this mode"),
            (f"{conf} 7: 'Socket local:/run/dkimpy-milter/dkimpy-milter.sock'", "unix:/run/"),
            (f"{conf} 8: 'PidFile", "how the daemon runs"),
            (f"{conf} 9: 'UserID dkimpy-milter'", "how the daemon runs"),
            (f"{conf} 10: 'Canonicalization relaxed/simple'", '"relaxed/simple"'),
            (
                f"{conf} 11: 'InternalHosts 127.0.0.1,::1,192.0.2.0/24'",
                'internal_hosts = ["127.0.0.1", "::1", "192.0.2.0/24"]',
            ),
            (f"{conf} 18: 'MacroList daemon_name|ORIGINATING'", "[trust] authenticated"),
        ],
    )


def test_dkimpy_ed25519_seed_gives_dkimpys_public_key(tmp_path: Path) -> None:
    """dkimpy keeps the raw base64 RFC 8032 seed; the imported key must publish the same p=."""
    seed_file, dns_file = tmp_path / "ed.key", tmp_path / "ed.dns"
    signing_key = dknewkey.GenEd25519Keys(str(seed_file), verbose=False)
    dknewkey.ExtractEd25519PublicKey(str(dns_file), signing_key, verbose=False)
    key = parse_private_key(seed_file.read_bytes())
    assert isinstance(key, ed25519.Ed25519PrivateKey)
    assert record_value(ED, key) == dns_file.read_text()
    assert b"BEGIN" not in seed_file.read_bytes()  # it really was the raw form


def test_dkimpy_tables_with_their_ed25519_twin(sample: Sample) -> None:
    plan = plan_dkimpy_milter(sample("dkimpy-tables.conf"))
    assert plan.keys == (
        ImportedKey("example.com", "rsa1", sample("keys/com-rsa.key"), RSA, 2048),
        ImportedKey("example.com", "ed1", sample("keys/com-ed.key"), ED, 256),
        ImportedKey("example.net", "rsa1", sample("keys/net-rsa.key"), RSA, 2048),
    )
    assert_notes(
        plan.notes,
        [
            ("dkimpy-tables.conf line 2: 'Socket inet:8892@127.0.0.1'", "[milter] socket"),
            ("dkimpy-tables.conf line 3: 'Mode s'", "signing only"),
        ],
    )


# --- the tables given directly, and what is wrong in them ---


def test_tables_given_directly(sample: Sample) -> None:
    plan = plan_tables(
        sample("opendkim-refile.keytable"), sample("opendkim-refile.signingtable"), refile=True
    )
    assert [(k.domain, k.selector) for k in plan.keys] == [
        ("example.org", "mail"),
        ("customer-one.example", "s2024"),
        ("customer-two.example", "s2024"),
        ("lists.example", "byname"),
    ]
    assert plan.settings == ()


def test_key_table_alone_takes_every_fixed_domain_key(sample: Sample) -> None:
    plan = plan_tables(sample("opendkim-refile.keytable"), None, refile=True)
    assert [(k.domain, k.selector) for k in plan.keys] == [("example.org", "mail")]
    assert_notes(
        plan.notes,
        [
            ("no SigningTable given", "every KeyTable key with a fixed domain"),
            ("KeyTable line 2: key 'shared' signs as the From domain (%)", "not imported"),
            ("KeyTable line 4: key 'perdomain'", "not imported"),
        ],
    )


def test_key_line_without_selector_and_unknown_key_name(sample: Sample) -> None:
    with pytest.raises(ConfigError) as caught:
        plan_tables(
            sample("bad-no-selector.keytable"), sample("bad-unknown-key.signingtable"), False
        )
    no_selector, unknown = caught.value.problems
    assert (no_selector.source, no_selector.key) == (
        str(sample("bad-no-selector.keytable")),
        "line 3",
    )
    assert "this line has 2 of 3 fields" in no_selector.allowed
    # Line 2 names the key of the bad line: reported once, with that line.
    assert (unknown.source, unknown.key) == (str(sample("bad-unknown-key.signingtable")), "line 3")
    assert unknown.value == "'example.org mail._domainkey.example.org'"
    assert "'mail._domainkey.example.com'" in unknown.allowed


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (b"this is not a key\n", "a PEM private key (RSA or Ed25519) or dkimpy's base64"),
        (b"", "a PEM private key"),
        (b"v=DKIM1; k=rsa; p=MIIBIjANBgkq\n", "this is a DNS record"),
        (b'mail._domainkey\tIN\tTXT\t( "v=DKIM1; k=rsa; "\n', "this is a DNS record"),
    ],
)
def test_a_key_file_that_is_not_a_key(sample: Sample, content: bytes, says: str) -> None:
    sample("keys/example.org.private").write_bytes(content)
    with pytest.raises(ConfigError) as caught:
        plan_opendkim(sample("opendkim-refile.conf"))
    (problem,) = caught.value.problems
    assert (problem.source, problem.key) == (str(sample("keys/example.org.private")), "private key")
    assert says in problem.allowed


def test_public_encrypted_and_missing_key_files(sample: Sample) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    encrypted = key.private_bytes(
        serialization.Encoding.PEM, PKCS8, serialization.BestAvailableEncryption(b"secret")
    )
    with pytest.raises(ValueError, match="holds a public key"):
        parse_private_key(public)
    with pytest.raises(ValueError, match="without a passphrase"):
        parse_private_key(encrypted)
    sample("keys/single.private").unlink()
    with pytest.raises(ConfigError) as caught:
        plan_opendkim(sample("opendkim-single.conf"))
    (problem,) = caught.value.problems
    assert (problem.value, problem.allowed) == ("unreadable", "No such file or directory")


def test_problems_never_show_key_material(sample: Sample) -> None:
    secret = sample("keys/example.org.private").read_bytes()
    sample("keys/example.org.private").write_bytes(secret[: len(secret) // 2])  # truncated
    with pytest.raises(ConfigError) as caught:
        plan_opendkim(sample("opendkim-refile.conf"))
    body = secret.split(b"\n")[3].decode()
    assert body not in str(caught.value)


def test_two_keys_for_one_selector(sample: Sample) -> None:
    table = sample("two.keytable")
    table.write_text(
        f"a example.com:mail:{sample('keys/example.com/mail.private')}\n"
        f"b example.com:mail:{sample('keys/example.com/ceo.private')}\n"
    )
    signing = sample("two.signingtable")
    signing.write_text("*@example.com a\nboss@example.com b\n")
    with pytest.raises(ConfigError) as caught:
        plan_tables(table, signing, refile=True)
    (problem,) = caught.value.problems
    assert problem.source == str(sample("keys/example.com/mail.private"))
    assert problem.value == str(sample("keys/example.com/ceo.private"))
    assert "SigningTable line 2 names another" in problem.allowed


def test_same_key_twice_is_one_key(sample: Sample) -> None:
    table = sample("twice.keytable")
    table.write_text(
        f"a example.com:mail:{sample('keys/example.com/mail.private')}\n"
        f"b Example.com:MAIL:{sample('keys')}/../keys/example.com/mail.private\n"
    )
    signing = sample("twice.signingtable")
    signing.write_text("*@example.com a\n*@example.com b\n")
    plan = plan_tables(table, signing, refile=True)
    assert [(k.domain, k.selector) for k in plan.keys] == [("example.com", "mail")]


def test_cross_domain_signing_and_weak_keys(sample: Sample) -> None:
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    write_private(
        sample("keys/weak.private"),
        weak.private_bytes(serialization.Encoding.PEM, PKCS1, serialization.NoEncryption()),
    )
    table = sample("cross.keytable")
    table.write_text(f"k example.com:old:{sample('keys/weak.private')}\n")
    signing = sample("cross.signingtable")
    signing.write_text("*@example.com k\n*@example.net k\n* k\n")
    plan = plan_tables(table, signing, refile=True)
    assert [(k.domain, k.selector, k.bits) for k in plan.keys] == [("example.com", "old", 1024)]
    assert_notes(
        plan.notes,
        [
            ("SigningTable line 2: '*@example.net' signs example.net mail with d=example.com", ""),
            ("SigningTable line 3: '*' signs every sender domain with d=example.com", "only"),
            ("example.com selector old: a 1024-bit RSA key is weak", "reputable keys new"),
        ],
    )


def test_relative_paths_chroot_and_include_loops(sample: Sample) -> None:
    key = sample("keys/example.org.private")
    chroot = sample("jail")
    (chroot / "keys").mkdir(parents=True)
    key.rename(chroot / "keys/org.private")
    conf = sample("jailed.conf")
    conf.write_text(
        f"ChangeRootDirectory {chroot}\nBaseDirectory {sample.dir}\n"
        "KeyTable file:./jailed.keytable\nSigningTable refile:jailed.signingtable\n"
    )
    sample("jailed.keytable").write_text("org example.org:mail:/keys/org.private\n")
    sample("jailed.signingtable").write_text("*@example.org org\n")
    plan = plan_opendkim(conf)
    assert [k.source for k in plan.keys] == [chroot / "keys/org.private"]
    # Every line was used; only the default mode, which verified, is worth a note.
    assert [note.partition(":")[0] for note in plan.notes] == ["no Mode line"]
    conf.write_text(f"Include {conf}\n")
    with pytest.raises(ConfigError, match="at most 5 levels of Include"):
        plan_opendkim(conf)


@pytest.mark.parametrize(
    "value",
    ["dsn:mysql://dkim:secret@3306+db/dkim/table=keys?keycol=id?datacol=d,s,k", "keys.db"],
)
def test_tables_in_databases_are_refused_with_a_way_out(tmp_path: Path, value: str) -> None:
    conf = tmp_path / "opendkim.conf"
    conf.write_text(f"KeyTable {value}\nSigningTable refile:/etc/opendkim/signing.table\n")
    with pytest.raises(ConfigError) as caught:
        plan_opendkim(conf)
    (problem,) = caught.value.problems
    assert problem.key == "KeyTable"
    assert "--key-table FILE --signing-table FILE" in problem.allowed


def test_settings_mapping_is_pure() -> None:
    lines = (
        ConfLine(1, "InternalHosts", "file:/etc/opendkim/hosts", "x.conf"),
        ConfLine(2, "Canonicalization", "bogus/relaxed", "x.conf"),
        ConfLine(3, "Socket", "tcp:8891", "x.conf"),
        ConfLine(4, "SignatureAlgorithm", "rsa-sha1", "x.conf"),
        ConfLine(5, "Frobnicate", "yes", "x.conf"),
        ConfLine(6, "SigningTable", "refile:/etc/opendkim/signing.table", "x.conf"),
    )

    def expand(value: str) -> tuple[tuple[str, ...], str]:
        assert value == "file:/etc/opendkim/hosts"
        return ("192.0.2.1", "localhost"), ""

    notes, settings = map_settings(lines, frozenset(), Software.OPENDKIM, expand)
    assert settings == (TomlSetting("trust", "internal_hosts", ("192.0.2.1", "127.0.0.1", "::1")),)
    assert_notes(
        notes,
        [
            ("x.conf line 1", "carried over"),
            ("x.conf line 2: 'Canonicalization bogus/relaxed'", "not carried over"),
            ("x.conf line 3: 'Socket tcp:8891'", "reputable expects"),
            ("x.conf line 4: 'SignatureAlgorithm rsa-sha1'", "never signs with rsa-sha1"),
            ("x.conf line 5: 'Frobnicate yes'", "no matching reputable setting"),
            ("x.conf line 6: 'SigningTable refile:", "there is no KeyTable"),
            ("no Mode line: OpenDKIM verified inbound mail by default", "[inbound] verify"),
        ],
    )


def no_expand(value: str) -> tuple[tuple[str, ...], str]:
    raise AssertionError(f"no data set to read: {value}")


def test_a_verifying_milter_is_told_what_verifies_now_and_its_authservid_carried() -> None:
    lines = (
        ConfLine(1, "Mode", "sv", "opendkim.conf"),
        ConfLine(2, "AuthservID", "mx.example.com", "opendkim.conf"),
        ConfLine(3, "AuthservIDWithJobID", "yes", "opendkim.conf"),
        ConfLine(4, "On-BadSignature", "reject", "opendkim.conf"),
        ConfLine(5, "On-NoSignature", "a", "opendkim.conf"),
        ConfLine(6, "On-KeyNotFound", "bounce", "opendkim.conf"),
    )
    notes, settings = map_settings(lines, frozenset(), Software.OPENDKIM, no_expand)
    assert settings == (TomlSetting("inbound", "authserv_id", "mx.example.com"),)
    assert_notes(
        notes,
        [
            (
                "opendkim.conf line 1: 'Mode sv': OpenDKIM verified inbound mail in this mode; "
                "reputable verifies it too: [inbound] verify = true (the default) writes one "
                "Authentication-Results header, with dkim=, spf=, dmarc= and arc=, on mail that "
                "is not outbound",
                "",
            ),
            (
                "opendkim.conf line 2: 'AuthservID mx.example.com': carried over as "
                '[inbound] authserv_id = "mx.example.com"',
                "",
            ),
            ("opendkim.conf line 3: 'AuthservIDWithJobID yes'", "no counterpart in reputable's"),
            (
                "opendkim.conf line 4: 'On-BadSignature reject': OpenDKIM rejected such mail; "
                "reputable has no equivalent: of what it verifies, only a DMARC failure stops "
                "inbound mail, with [inbound] dmarc_enforce = true",
                "not carried over",
            ),
            ("opendkim.conf line 5: 'On-NoSignature a'", "accepted such mail, as reputable does"),
            ("opendkim.conf line 6: 'On-KeyNotFound bounce'", "expected accept, discard,"),
        ],
    )
    # AuthservID is named, so the Mode line does not speak of the host's name.
    assert "this host's name" not in notes[0]


def test_authservid_hostname_and_a_value_reputable_refuses() -> None:
    for value, says in (
        ("HOSTNAME", "the name gethostname(3) gives: reputable names this host"),
        ("mx example.com", "not carried over, as reputable's [inbound] authserv_id: "),
    ):
        lines = (ConfLine(1, "AuthservID", value, "opendkim.conf"),)
        notes, settings = map_settings(lines, frozenset(), Software.OPENDKIM, no_expand)
        assert settings == ()
        assert_notes(
            notes,
            [
                (f"opendkim.conf line 1: 'AuthservID {value}'", says),
                ("no Mode line: OpenDKIM verified inbound mail by default (Mode sv)", ""),
            ],
        )
        assert "this host's name" not in notes[1]  # AuthservID's own note says it


def test_a_signing_only_milter_hears_nothing_of_verification() -> None:
    lines = (
        ConfLine(1, "Mode", "s", "opendkim.conf"),
        ConfLine(2, "AuthservID", "mx.example.com", "opendkim.conf"),
        ConfLine(3, "On-BadSignature", "reject", "opendkim.conf"),
    )
    notes, settings = map_settings(lines, frozenset(), Software.OPENDKIM, no_expand)
    assert settings == ()
    assert_notes(
        notes,
        [
            ("opendkim.conf line 1: 'Mode s': signing only: nothing to set", ""),
            ("opendkim.conf line 2: 'AuthservID", "OpenDKIM did not verify in this mode"),
            ("opendkim.conf line 3: 'On-BadSignature", "OpenDKIM did not verify in this mode"),
        ],
    )
    assert not [note for note in notes if "[inbound]" in note]


def test_a_verify_only_milter_is_told_both() -> None:
    lines = (ConfLine(1, "Mode", "v", "dkimpy-milter.conf"),)
    notes, _ = map_settings(lines, frozenset(), Software.DKIMPY_MILTER, no_expand)
    assert_notes(
        notes,
        [
            (
                "dkimpy-milter.conf line 1: 'Mode v': dkimpy-milter did not sign in this mode "
                "(its keys are imported all the same) but verified inbound mail; reputable "
                "verifies it too",
                "as dkimpy-milter's was without AuthservID",
            )
        ],
    )


# --- into the key store ---


def test_import_writes_private_active_keys_that_load(sample: Sample) -> None:
    made = datetime(2024, 3, 1, 9, 30, tzinfo=UTC)  # the keys are older than the import
    for name in ("keys/dkimpy-rsa.key", "keys/dkimpy-ed25519.key"):
        os.utime(sample(name), (made.timestamp(), made.timestamp()))
    before = sample.snapshot()
    plan = plan_dkimpy_milter(sample("dkimpy-milter.conf"))
    written = perform_import(plan, store_of(sample), NOW)
    assert [(s.key.domain, s.key.selector) for s in written] == [
        ("example.com", "rsa2024"),
        ("example.com", "ed2024"),
    ]
    contents = read_store(store_of(sample))
    assert contents.problems == ()
    assert {(k.key.selector, k.key.algorithm, k.meta.state) for k in contents.keys} == {
        ("rsa2024", RSA, KeyState.ACTIVE),
        ("ed2024", ED, KeyState.ACTIVE),
    }
    for stored in contents.keys:
        assert stat.S_IMODE(stored.path.stat().st_mode) == 0o600
        assert stored.meta.changed == stored.meta.activated == NOW
        assert stored.meta.created == made  # key rotation counts the key's age from it
        source = {"rsa2024": "keys/dkimpy-rsa.key", "ed2024": "keys/dkimpy-ed25519.key"}
        assert record_value(stored.key.algorithm, stored.key.private_key) == public_of(
            sample(source[stored.key.selector])
        )
    assert sample.snapshot() == before  # the sources are only read


def test_import_twice_is_fine(sample: Sample) -> None:
    plan = plan_opendkim(sample("opendkim-file.conf"))
    first = perform_import(plan, store_of(sample), NOW)
    assert len(first) == 3
    files = {p: p.read_bytes() for p in store_of(sample).rglob("*") if p.is_file()}
    assert perform_import(plan_opendkim(sample("opendkim-file.conf")), store_of(sample), NOW) == []
    assert {p: p.read_bytes() for p in store_of(sample).rglob("*") if p.is_file()} == files


def test_a_different_key_in_the_store_is_refused(sample: Sample) -> None:
    plan = plan_opendkim(sample("opendkim-file.conf"))
    taken = key_path(store_of(sample), "example.net", "default")
    other = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    write_private(
        taken, other.private_bytes(serialization.Encoding.PEM, PKCS8, serialization.NoEncryption())
    )
    taken.parent.chmod(0o700)
    with pytest.raises(ConfigError) as caught:
        perform_import(plan, store_of(sample), NOW)
    (problem,) = caught.value.problems
    assert (problem.source, problem.value) == (
        str(taken),
        str(sample("keys/example.net/default.private")),
    )
    # Nothing is written when anything is wrong.
    assert not key_path(store_of(sample), "example.com", "mail").exists()


def test_metadata_left_without_its_key_is_replaced(sample: Sample) -> None:
    plan = plan_opendkim(sample("opendkim-single.conf"))
    toml = key_path(store_of(sample), "example.com", "sel2023").with_suffix(".toml")
    toml.parent.mkdir(parents=True)
    toml.write_text('algorithm = "ed25519-sha256"\n')  # a crash between the two writes
    assert len(perform_import(plan, store_of(sample), NOW)) == 3
    assert read_store(store_of(sample)).problems == ()


# --- the command ---


@dataclass
class Run:
    code: int
    out: str
    err: str


@pytest.fixture
def run(sample: Sample) -> Callable[..., Run]:
    def run_import(config: Config | None = None, **kwargs: object) -> Run:
        args: dict[str, object] = {
            "opendkim_conf": None,
            "dkimpy_conf": None,
            "key_table": None,
            "signing_table": None,
            "dry_run": False,
        }
        args.update(kwargs)
        out, err = io.StringIO(), io.StringIO()
        config = config or Config(signing=SigningConfig(keys=store_of(sample)))
        code = import_command(config, out=out, err=err, **args)  # type: ignore[arg-type]
        return Run(code, out.getvalue(), err.getvalue())

    return run_import


def test_command_reports_keys_notes_lines_and_next_steps(
    sample: Sample, run: Callable[..., Run]
) -> None:
    conf = str(sample("opendkim-file.conf"))
    result = run(opendkim_conf=conf)
    assert (result.code, result.err) == (0, "")
    lines = result.out.splitlines()
    assert lines[0] == f"Imported from {conf} into {store_of(sample)}:"
    assert lines[1] == (
        "  example.com selector mail (rsa-sha256, 2048 bits) ← "
        f"{sample('keys/example.com/mail.private')}"
    )
    assert "  SigningTable line 5: '.example.com' covers subdomains of example.com; " in result.out
    toml = result.out.split("Put these lines in /etc/reputable/reputable.toml:\n")[1]
    assert toml.startswith(
        "  [signing]\n"
        '  domains = ["example.com", "example.net"]\n'
        '  algorithms = ["rsa-sha256"]\n'
        '  canonicalization = "relaxed/simple"\n'
        "  [log]\n"
        '  target = "syslog"\n'
        "  [milter]\n"
        '  socket = "inet:8891@localhost"\n'
    )
    assert "Next steps:\n  1. DNS stays as it is" in result.out
    assert "Postfix's smtpd_milters stays as it is: stop OpenDKIM" in result.out
    again = run(opendkim_conf=conf)
    assert again.code == 0
    assert "(already in the store)" in again.out


def test_command_carries_authservid_into_an_inbound_section(
    sample: Sample, run: Callable[..., Run]
) -> None:
    conf = sample("opendkim-single.conf")
    conf.write_text(conf.read_text() + "AuthservID mx.example.com\n")
    result = run(opendkim_conf=str(conf))
    assert result.code == 0
    assert (
        "  opendkim-single.conf line 12: 'AuthservID mx.example.com': carried over as "
        '[inbound] authserv_id = "mx.example.com"\n'
    ) in result.out
    assert "  no Mode line: OpenDKIM verified inbound mail by default (Mode sv); " in result.out
    toml = result.out.split("Put these lines in /etc/reputable/reputable.toml:\n")[1]
    assert '  [inbound]\n  authserv_id = "mx.example.com"\n' in toml
    # No On- setting in this configuration: nothing is said of refusing mail.
    assert "dmarc_enforce" not in result.out
    assert "no longer verified" not in result.out


def test_command_dry_run_writes_nothing(sample: Sample, run: Callable[..., Run]) -> None:
    result = run(dkimpy_conf=str(sample("dkimpy-milter.conf")), dry_run=True)
    assert result.code == 0
    assert result.out.startswith("Dry run: nothing is written.\nWould import from ")
    assert "ed2024 (ed25519-sha256, 256 bits) ←" in result.out
    assert 'algorithms = ["rsa-sha256", "ed25519-sha256"]' in result.out
    assert "1. Run the import again without --dry-run." in result.out
    assert not store_of(sample).exists()


def test_command_merges_the_configured_domains_and_says_what_is_missing(
    sample: Sample, run: Callable[..., Run]
) -> None:
    config = Config(
        signing=SigningConfig(
            domains=("example.net", "example.edu"),
            keys=store_of(sample),
            algorithms=(RSA, ED),
        )
    )
    result = run(config, dkimpy_conf=str(sample("dkimpy-tables.conf")))
    assert result.code == 0
    assert '  domains = ["example.net", "example.edu", "example.com"]\n' in result.out
    assert (
        "  example.net has no ed25519-sha256 key: reputable logs key_missing for it until "
        "`reputable keys new example.net --algorithm ed25519`"
    ) in result.out
    assert "point Postfix's smtpd_milters" not in result.out  # the socket was carried over


def test_command_without_a_carried_socket_names_postfixs_setting(
    sample: Sample, run: Callable[..., Run]
) -> None:
    result = run(
        key_table=str(sample("dkimpy-tables.keytable")),
        signing_table="refile:" + str(sample("dkimpy-tables.signingtable")),
    )
    assert result.code == 0
    assert "at reputable instead of OpenDKIM: inet:127.0.0.1:8891; then `postfix reload`" in (
        result.out
    )


def test_command_prints_problems_and_exits_78(sample: Sample, run: Callable[..., Run]) -> None:
    result = run(
        key_table=str(sample("bad-no-selector.keytable")),
        signing_table=str(sample("bad-unknown-key.signingtable")),
    )
    assert (result.code, result.out) == (78, "")
    assert result.err.startswith("reputable keys import: fix these and run it again:")
    assert f"  {sample('bad-no-selector.keytable')}: line 3 = " in result.err
    assert not store_of(sample).exists()


def test_command_with_nothing_to_import_exits_78(sample: Sample, run: Callable[..., Run]) -> None:
    signing = sample("subdomains-only.signingtable")
    signing.write_text("*@*.example.org org\n")
    result = run(key_table=str(sample("opendkim-refile.keytable")), signing_table=str(signing))
    assert result.code == 78
    assert "nothing to import" in result.out
    assert "covers subdomains of example.org" in result.out


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"opendkim_conf": "a.conf", "dkimpy_conf": "b.conf"},
        {"signing_table": "signing.table"},
    ],
)
def test_command_usage(run: Callable[..., Run], kwargs: dict[str, str]) -> None:
    result = run(**kwargs)
    assert result.code == 64
    assert "give one of --opendkim-conf, --dkimpy-conf or --key-table" in result.err


def test_empty_plan_prints_nothing_to_import(tmp_path: Path) -> None:
    out = io.StringIO()
    importer.print_report(ImportPlan((), ("a note",), origin="x.conf"), (), Config(), False, out)
    assert out.getvalue() == (
        "No key in x.conf signs one exact domain: nothing to import.\nNotes:\n  a note\n"
    )
