"""TSIG key files (BIND, tsig-keygen, Knot keymgr), their refusal, checks made before sending."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest

from reputable.config import Nameserver
from reputable.errors import ConfigError, ReputableError
from reputable.keys.publish import (
    PublishError,
    TsigKey,
    load_tsig_key,
    parse_tsig_key_file,
    publish_txt,
    remove_txt,
)

SECRET = bytes(range(7, 39))
B64 = base64.b64encode(SECRET).decode()

# What `tsig-keygen -a hmac-sha256 reputable.example.com` prints (BIND 9.18).
TSIG_KEYGEN = f'key "reputable.example.com" {{\n\talgorithm hmac-sha256;\n\tsecret "{B64}";\n}};\n'

# What `keymgr -t reputable.example.com hmac-sha256` prints (Knot 3.2).
KEYMGR = f"""# hmac-sha256:reputable.example.com.:{B64}
key:
  - id: reputable.example.com.
    algorithm: hmac-sha256
    secret: {B64}
"""

NOWHERE = Nameserver("192.0.2.1")  # TEST-NET-1: never contacted by these tests
KEY = TsigKey("reputable.example.com", "hmac-sha256", SECRET)


def test_tsig_keygen_output() -> None:
    assert parse_tsig_key_file(TSIG_KEYGEN) == KEY


def test_bind_file_with_comments_and_unquoted_name() -> None:
    text = f"""
    # the key reputable uses to publish DKIM records
    // from /etc/bind/keys.conf
    /* a block
       comment */
    key reputable.example.com. {{
        algorithm HMAC-SHA256;   # upper case as some tools write it
        secret "{B64}";
    }};
    """
    assert parse_tsig_key_file(text) == KEY


def test_bind_file_without_final_semicolon_and_old_md5_name() -> None:
    text = f'key "k1" {{ secret "{B64}"; algorithm hmac-md5.sig-alg.reg.int; }}'
    assert parse_tsig_key_file(text) == TsigKey("k1", "hmac-md5", SECRET)


def test_knot_keymgr_output() -> None:
    assert parse_tsig_key_file(KEYMGR) == KEY


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("", "no key in the file"),
        ("# only a comment\n", "no key in the file"),
        (B64, "expected key"),
        (f'server 192.0.2.1 {{ keys {{ "k"; }}; }}; secret "{B64}";', "expected key"),
        ('key "k" { algorithm hmac-sha256; };', 'key "k" has no secret'),
        (f'key "k" {{ secret "{B64}"; }};', 'key "k" has no algorithm'),
        (f'key "k" {{ algorithm hmac-sha999; secret "{B64}"; }};', "hmac-sha999 is not one of"),
        ('key "k" { algorithm hmac-sha256; secret "not base64!"; };', "not valid base64"),
        ('key "k" { algorithm hmac-sha256; secret ""; };', "the secret is empty"),
        (f'key "k" {{ algorithm hmac-sha256; secret "{B64}" }};', 'expected ";" after the secret'),
        (f'key "k" {{ algorithm hmac-sha256; secret "{B64}";', 'the file ends where "}"'),
        (f'key "k" {{ algorithm hmac-sha256; secret "{B64}"; x y; }};', "not x"),
        (
            f'key "k" {{ algorithm hmac-sha256; secret "{B64}"; secret "{B64}"; }};',
            "two secret statements",
        ),
        (f'key "a" {{ algorithm hmac-sha256; secret "{B64}"; }};\n' * 2, "more than one key"),
        (f'key "k" {{ algorithm hmac-sha256; secret "{B64}; }};', "unterminated string"),
        (f'/* key "k" {{ algorithm hmac-sha256; secret "{B64}"; }};', "unterminated"),
        (f'key "bad..name" {{ algorithm hmac-sha256; secret "{B64}"; }};', "not a DNS name"),
        (f"key:\n  - id: k\n    secret: {B64}\n    colour: blue\n", 'expected "id:"'),
        (f"key:\n  - id: k\n    secret: {B64}\n", 'key "k" has no algorithm'),
    ],
)
def test_bad_key_files_say_what_is_wrong_never_the_secret(text: str, says: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_tsig_key_file(text)
    message = str(caught.value)
    assert says in message
    assert B64 not in message
    assert B64[:12] not in message


def test_repr_and_str_never_show_the_secret() -> None:
    for shown in (repr(KEY), str(KEY), f"{KEY}", repr([KEY])):
        assert B64 not in shown
        assert repr(SECRET) not in shown
        assert "secret" not in shown
    assert "reputable.example.com" in repr(KEY)


def write_key(path: Path, mode: int, text: str = TSIG_KEYGEN) -> Path:
    path.write_text(text)
    os.chmod(path, mode)
    return path


def test_load_private_key_file(tmp_path: Path) -> None:
    assert load_tsig_key(write_key(tmp_path / "tsig.key", 0o600)) == KEY
    assert load_tsig_key(write_key(tmp_path / "ro.key", 0o400)) == KEY


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660])
def test_load_refuses_a_key_others_can_read(tmp_path: Path, mode: int) -> None:
    path = write_key(tmp_path / "tsig.key", mode)
    with pytest.raises(ConfigError) as caught:
        load_tsig_key(path)
    (problem,) = caught.value.problems
    assert problem.source == str(path)
    assert problem.value == f"{mode:04o}"
    assert f"chmod 600 {path}" in problem.allowed
    assert B64 not in str(caught.value)


def test_load_missing_and_invalid_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_tsig_key(tmp_path / "absent.key")
    assert "tsig-keygen" in str(caught.value)
    bad = write_key(tmp_path / "bad.key", 0o600, f'key "k" {{ secret "{B64}"; }};')
    with pytest.raises(ConfigError) as caught:
        load_tsig_key(bad)
    assert "has no algorithm" in str(caught.value)
    assert B64 not in str(caught.value)


def test_publish_error_is_a_reputable_error() -> None:
    assert issubclass(PublishError, ReputableError)


def test_publish_refuses_a_string_over_255_bytes_before_sending() -> None:
    with pytest.raises(PublishError, match="256 bytes"):
        publish_txt(NOWHERE, "s1._domainkey.example.com", ["x" * 256], 300, KEY, zone="example.com")
    with pytest.raises(PublishError, match="no TXT strings"):
        publish_txt(NOWHERE, "s1._domainkey.example.com", [], 300, KEY, zone="example.com")


def test_publish_refuses_a_name_outside_the_zone_before_sending() -> None:
    with pytest.raises(PublishError, match=r"not inside zone example\.net"):
        publish_txt(NOWHERE, "s1._domainkey.example.com", ["v=DKIM1; p="], 300, KEY, "example.net")
    with pytest.raises(PublishError, match="not inside zone"):
        remove_txt(NOWHERE, "s1._domainkey.example.com", KEY, zone="example.org")


def test_publish_refuses_an_unknown_algorithm_before_sending() -> None:
    key = TsigKey("k", "hmac-whirlpool", SECRET)
    with pytest.raises(PublishError, match="unknown algorithm hmac-whirlpool"):
        remove_txt(NOWHERE, "s1._domainkey.example.com", key, zone="example.com")
