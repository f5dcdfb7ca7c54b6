"""Publishing key records by RFC 2136 dynamic update, TSIG-signed (RFC 8945). I/O; parsing pure.

`parse_tsig_key_file` is pure; `load_tsig_key` reads the key file (refusing
one that others can read, like the key store); `publish_txt` and
`remove_txt` send one signed UPDATE to the zone's primary and say, when it
is refused, what the server answered and what to check. The secret never
reaches a message, a log line or a repr.
"""

from __future__ import annotations

import base64
import binascii
import errno
import re
import socket
import struct
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.TXT
import dns.resolver
import dns.tsig
import dns.update

from reputable.config import Nameserver
from reputable.errors import ConfigError, Problem, ReputableError
from reputable.keys.files import unsafe_mode
from reputable.keys.record import MAX_STRING
from reputable.regular_file import UnreadableFile, read_regular_file
from reputable.resolver import failure_reason

# BIND's spelling of each TSIG algorithm (RFC 8945 §6) and dnspython's name for it.
_ALGORITHMS: dict[str, dns.name.Name] = {
    "hmac-md5": dns.tsig.HMAC_MD5,
    "hmac-sha1": dns.tsig.HMAC_SHA1,
    "hmac-sha224": dns.tsig.HMAC_SHA224,
    "hmac-sha256": dns.tsig.HMAC_SHA256,
    "hmac-sha384": dns.tsig.HMAC_SHA384,
    "hmac-sha512": dns.tsig.HMAC_SHA512,
}
_ALGORITHM_ALIASES = {"hmac-md5.sig-alg.reg.int": "hmac-md5"}
_GENERATE = "make one with `tsig-keygen NAME > FILE` and `chmod 600 FILE`"


@dataclass(frozen=True, slots=True)
class TsigKey:
    """A TSIG key: its name (as the server knows it), algorithm and secret."""

    name: str
    algorithm: str  # BIND's spelling, e.g. "hmac-sha256"
    secret: bytes = field(repr=False)


class PublishError(ReputableError):
    """A dynamic update that did not happen: what the server answered and what to check."""


# --- the key file (pure) ---

# A BIND named.conf fragment: comments in three styles, quoted strings, braces, words.
_BIND_TOKEN = re.compile(
    r"""
    (?P<space>\s+)
  | (?P<comment>\#[^\n]*|//[^\n]*|/\*.*?\*/)
  | "(?P<string>(?:[^"\\\n]|\\.)*)"
  | (?P<punct>[{};])
  | (?P<word>(?:[^\s{};"\#/]|/(?![/*]))+)
    """,
    re.VERBOSE | re.DOTALL,
)


@dataclass(frozen=True, slots=True)
class _Token:
    kind: str  # "string", "punct" or "word"
    text: str
    line: int


def _tokens(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    position = 0
    while position < len(text):
        match = _BIND_TOKEN.match(text, position)
        line = text.count("\n", 0, position) + 1
        if match is None:
            what = "an unterminated string or comment" if text[position] in '"/' else "a stray "
            if what.endswith(" "):
                what += repr(text[position])
            raise ValueError(f"line {line}: {what}")
        kind = match.lastgroup or "space"
        if kind not in ("space", "comment"):
            tokens.append(_Token(kind, match.group(kind), line))
        position = match.end()
    return tokens


def _key_from_fields(name: str, algorithm: str | None, secret: str | None) -> TsigKey:
    """Check each field; messages name the field, never the secret's value."""
    if not name:
        raise ValueError("the key has no name")
    try:
        dns.name.from_text(name)
    except dns.exception.DNSException:
        raise ValueError(f'key name "{name}" is not a DNS name') from None
    if algorithm is None:
        raise ValueError(f'key "{name}" has no algorithm (e.g. "algorithm hmac-sha256;")')
    spelled = _ALGORITHM_ALIASES.get(algorithm.lower(), algorithm.lower())
    if spelled not in _ALGORITHMS:
        raise ValueError(
            f'key "{name}": algorithm {algorithm} is not one of ' + ", ".join(_ALGORITHMS)
        )
    if secret is None:
        raise ValueError(f'key "{name}" has no secret')
    try:
        raw = base64.b64decode("".join(secret.split()), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f'key "{name}": the secret is not valid base64') from None
    if not raw:
        raise ValueError(f'key "{name}": the secret is empty')
    return TsigKey(name.rstrip(".").lower() or ".", spelled, raw)


def _parse_bind(tokens: list[_Token]) -> TsigKey:
    """key "name" { algorithm hmac-sha256; secret "base64=="; }; (exactly one)."""
    position = 0

    def take(expected: str) -> _Token:
        nonlocal position
        if position >= len(tokens):
            raise ValueError(f"the file ends where {expected} was expected")
        token = tokens[position]
        position += 1
        return token

    first = take('"key"')
    if first.kind != "word" or first.text.lower() != "key":
        raise ValueError(f'line {first.line}: expected key "NAME" {{ ... }}; ({_GENERATE})')
    name_token = take("the key name")
    if name_token.kind not in ("string", "word"):
        raise ValueError(f"line {name_token.line}: expected the key name after key")
    name = name_token.text
    brace = take('"{"')
    if brace.text != "{" or brace.kind != "punct":
        raise ValueError(f'line {brace.line}: expected "{{" after key "{name}"')
    values: dict[str, str] = {}
    while True:
        token = take(f'"}}" closing key "{name}"')
        if token.kind == "punct" and token.text == "}":
            break
        statement = token.text.lower()
        if token.kind != "word" or statement not in ("algorithm", "secret"):
            shown = f" {token.text}" if token.kind == "word" and statement != "secret" else ""
            raise ValueError(
                f'line {token.line}: key "{name}" may hold only "algorithm" and "secret", '
                f"not{shown or ' this'}"
            )
        if statement in values:
            raise ValueError(f'line {token.line}: key "{name}" has two {statement} statements')
        value = take(f"the {statement} of key {name}")
        if value.kind not in ("string", "word"):
            raise ValueError(f'line {value.line}: key "{name}": {statement} has no value')
        end = take(f'";" after the {statement}')
        if end.kind != "punct" or end.text != ";":
            raise ValueError(f'line {end.line}: key "{name}": expected ";" after the {statement}')
        values[statement] = value.text
    if position < len(tokens) and tokens[position].text == ";":
        position += 1
    if position < len(tokens):
        extra = tokens[position]
        more = extra.kind == "word" and extra.text.lower() == "key"
        raise ValueError(
            f"line {extra.line}: "
            + ("the file holds more than one key; keep one" if more else "text after the key")
        )
    return _key_from_fields(name, values.get("algorithm"), values.get("secret"))


def _parse_knot(text: str) -> TsigKey:
    """Knot's `keymgr -t` form: "key:" then "- id: NAME", "algorithm: ALG", "secret: B64"."""
    values: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip().removeprefix("-").strip()
        if not line or line == "key:":
            continue
        field_name, colon, value = line.partition(":")
        field_name = field_name.strip()
        if not colon or field_name not in ("id", "algorithm", "secret"):
            raise ValueError(f'line {number}: expected "id:", "algorithm:" or "secret:"')
        if field_name in values:
            raise ValueError(f"line {number}: a second {field_name}: (one key per file)")
        values[field_name] = value.strip().strip("\"'")
    return _key_from_fields(values.get("id", ""), values.get("algorithm"), values.get("secret"))


def parse_tsig_key_file(text: str) -> TsigKey:
    """The one TSIG key in a BIND key file (also `tsig-keygen` output, or Knot's `keymgr -t`).

    Raises ValueError naming what is wrong (line, field); the secret is never quoted.
    """
    uncommented = [line.split("#", 1)[0].strip() for line in text.splitlines()]
    if next((line for line in uncommented if line), "") == "key:":
        return _parse_knot(text)
    tokens = _tokens(text)
    if not tokens:
        raise ValueError(f"no key in the file ({_GENERATE})")
    return _parse_bind(tokens)


def load_tsig_key(path: Path) -> TsigKey:
    """Read the key file; ConfigError if it is missing, invalid or readable by others."""
    try:
        text = read_regular_file(path).data.decode("utf-8")
        mode = unsafe_mode(path)
    except UnreadableFile as exc:
        if exc.missing:
            raise ConfigError([Problem(str(path), "TSIG key file", "missing", _GENERATE)]) from None
        raise ConfigError(
            [Problem(str(path), "TSIG key file", exc.reason, "a readable regular key file")]
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigError(
            [Problem(str(path), "TSIG key file", "unreadable", f"a readable key file ({reason})")]
        ) from None
    if mode is not None:
        fix = f"others must not read a TSIG key; run: chmod 600 {path}"
        raise ConfigError([Problem(str(path), "file mode", f"{mode:04o}", fix)])
    try:
        return parse_tsig_key_file(text)
    except ValueError as exc:
        raise ConfigError([Problem(str(path), "TSIG key", "invalid", str(exc))]) from None


# --- the update (I/O) ---


class _DnsKey(dns.tsig.Key):
    """dnspython's key, whose repr would show the secret: this one's does not."""

    def __repr__(self) -> str:
        return f"<TSIG key {self.name} {self.algorithm}>"


def _name(text: str, what: str) -> dns.name.Name:
    try:
        return dns.name.from_text(text)
    except dns.exception.DNSException as exc:
        raise PublishError(f"{what} {text!r}: {failure_reason(exc)}") from None


def _text(name: dns.name.Name) -> str:
    return name.to_text(omit_final_dot=True) or "."


def _soa_owner(response: dns.message.Message, candidate: dns.name.Name) -> dns.name.Name | None:
    """The zone the response speaks for: the SOA in the answer, or in the authority section."""
    for rrset in response.answer:
        if rrset.rdtype == dns.rdatatype.SOA and rrset.name == candidate:
            return candidate
    # RFC 2308 §3: a negative answer carries the zone's SOA in the authority section.
    for rrset in response.authority:
        if rrset.rdtype == dns.rdatatype.SOA and candidate.is_subdomain(rrset.name):
            return rrset.name
    return None


def _zone_from_server(server: Nameserver, owner: dns.name.Name, timeout_s: float) -> dns.name.Name:
    """Ask `server` for the SOA, walking up from `owner` until it names its zone."""
    candidate = owner
    answers: list[str] = []
    while True:
        query = dns.message.make_query(candidate, dns.rdatatype.SOA, flags=0)
        try:
            response = dns.query.udp(query, server.host, timeout=timeout_s, port=server.port)
        except dns.exception.Timeout:
            raise PublishError(
                f"{server} did not answer within {timeout_s:g} s: is it the zone's primary, "
                "and reachable from this host?"
            ) from None
        except (OSError, dns.exception.DNSException) as exc:
            raise PublishError(
                f"cannot ask {server} for the zone of {_text(owner)}: {failure_reason(exc)}"
            ) from None
        if response.rcode() in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
            zone = _soa_owner(response, candidate)
            if zone is not None:
                return zone
        answers.append(f"{_text(candidate)}: {dns.rcode.to_text(response.rcode())}")
        if candidate == dns.name.root:
            raise PublishError(
                f"{server} serves no zone holding {_text(owner)} ({'; '.join(answers[-3:])}): "
                "set [keys.publish] zone, or point server at the zone's primary"
            )
        candidate = candidate.parent()


def _find_zone(
    server: Nameserver,
    owner: dns.name.Name,
    zone: str,
    resolver: dns.resolver.Resolver | None,
    timeout_s: float,
) -> dns.name.Name:
    if zone:
        found = _name(zone, "zone")
    elif resolver is not None:
        try:
            found = dns.resolver.zone_for_name(owner, resolver=resolver)
        except dns.exception.DNSException:
            found = _zone_from_server(server, owner, timeout_s)  # e.g. a zone not yet delegated
    else:
        found = _zone_from_server(server, owner, timeout_s)
    if not owner.is_subdomain(found):
        raise PublishError(
            f"{_text(owner)} is not inside zone {_text(found)}: fix [keys.publish] zone"
        )
    return found


def _refusal(rcode: dns.rcode.Rcode, server: Nameserver, zone: str, key: TsigKey) -> str:
    said = f"{server} answered {dns.rcode.to_text(rcode)}"
    advice = {
        dns.rcode.NOTAUTH: (
            f"TSIG key {key.name} is not accepted for zone {zone} (a wrong key name, algorithm or "
            "secret, or the key may not update this zone): compare [keys.publish] tsig_key_file "
            "with the server's key and its update ACL"
        ),
        dns.rcode.REFUSED: (
            f"updates to zone {zone} are not allowed (for key {key.name} from this host): allow "
            "them in the server's update policy or ACL, or point server at the zone's primary"
        ),
        dns.rcode.NOTZONE: (
            f"the name is not in zone {zone} as the server sees it: set [keys.publish] zone"
        ),
        dns.rcode.SERVFAIL: "it could not apply the update: see its log",
        dns.rcode.NOTIMP: "it does not take dynamic updates (RFC 2136)",
        dns.rcode.FORMERR: "it could not parse the update",
    }.get(rcode, f"the update of zone {zone} was not made")
    return f"{said}: {advice}"


def _exchange(wire: bytes, server: Nameserver, timeout_s: float) -> bytes:
    """Send one message over TCP (RFC 7766: length-prefixed) and return the answer's bytes."""
    deadline = time.monotonic() + timeout_s
    with socket.create_connection((server.host, server.port), timeout=timeout_s) as sock:
        sock.sendall(struct.pack("!H", len(wire)) + wire)
        (length,) = struct.unpack("!H", _read(sock, 2, deadline))
        return _read(sock, length, deadline)


def _read(sock: socket.socket, size: int, deadline: float) -> bytes:
    data = bytearray()
    while len(data) < size:
        sock.settimeout(max(deadline - time.monotonic(), 0.001))
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionResetError(errno.ECONNRESET, "the server closed the connection")
        data += chunk
    return bytes(data)


def _send(
    update: dns.update.UpdateMessage, server: Nameserver, zone: str, key: TsigKey, timeout_s: float
) -> None:
    # RFC 8945 §5.3: a TSIG error comes back unsigned; dnspython raises it as a Peer* error.
    peer_errors: dict[type[Exception], str] = {
        dns.tsig.PeerBadKey: f"does not know TSIG key {key.name} ({key.algorithm}) (BADKEY): "
        "the key name or algorithm differs from the server's",
        dns.tsig.PeerBadSignature: f"rejected the signature made with TSIG key {key.name} "
        "(BADSIG): the secret differs from the server's",
        dns.tsig.PeerBadTime: f"rejected the time signed with TSIG key {key.name} (BADTIME): "
        "this host's clock is off; synchronise it (NTP)",
    }
    wire = update.to_wire()  # signs, and keeps the MAC the answer must cover
    try:
        answer = _exchange(wire, server, timeout_s)
    except TimeoutError:
        raise PublishError(f"{server} did not answer the update within {timeout_s:g} s") from None
    except OSError as exc:
        raise PublishError(
            f"cannot send the update to {server} over TCP: {exc.strerror or exc}"
        ) from None
    try:
        response = dns.message.from_wire(answer, keyring=update.keyring, request_mac=update.mac)
    except dns.tsig.PeerError as exc:
        said = peer_errors.get(type(exc), f"answered a TSIG error ({type(exc).__name__})")
        raise PublishError(f"{server} {said}") from None
    except (dns.tsig.BadSignature, dns.message.UnknownTSIGKey, dns.tsig.BadTime) as exc:
        raise PublishError(
            f"{server}'s answer does not verify with TSIG key {key.name} "
            f"({failure_reason(exc)}): "
            "is it the server that holds this key?"
        ) from None
    except dns.exception.DNSException as exc:
        if len(answer) >= 4:
            # An unsigned answer (RFC 8945 §5.3.2: e.g. for a zone the server does not
            # serve) cannot be trusted, but its rcode says what went wrong.
            rcode = dns.rcode.Rcode.make(struct.unpack("!H", answer[2:4])[0] & 0xF)
            if rcode != dns.rcode.NOERROR:
                raise PublishError(
                    _refusal(rcode, server, zone, key)
                    + f" (the answer was not signed: does the server serve zone {zone}?)"
                ) from None
        raise PublishError(
            f"{server} sent a bad answer to the update: {failure_reason(exc)}"
        ) from None
    if response.id != update.id or not response.flags & dns.flags.QR:
        raise PublishError(f"{server} answered another message than the update")
    if response.rcode() != dns.rcode.NOERROR:
        raise PublishError(_refusal(response.rcode(), server, zone, key))


def _update(
    server: Nameserver,
    name: str,
    key: TsigKey,
    zone: str,
    resolver: dns.resolver.Resolver | None,
    timeout_s: float,
    strings: Sequence[bytes] | None,
    ttl: int = 0,
) -> str:
    """Replace (strings given) or delete the TXT rrset at `name`; the zone used."""
    owner = _name(name, "record name")
    if key.algorithm not in _ALGORITHMS:
        raise PublishError(f"TSIG key {key.name}: unknown algorithm {key.algorithm}")
    found = _find_zone(server, owner, zone, resolver, timeout_s)
    zone_text = _text(found)
    update = dns.update.UpdateMessage(found)
    update.use_tsig(_DnsKey(key.name, key.secret, _ALGORITHMS[key.algorithm]))
    # RFC 2136 §2.5.2 then §2.5.1 in one message: the server applies both or neither.
    update.delete(owner, dns.rdatatype.TXT)
    if strings is not None:
        txt = dns.rdtypes.ANY.TXT.TXT(dns.rdataclass.IN, dns.rdatatype.TXT, list(strings))
        update.add(owner, ttl, txt)
    _send(update, server, zone_text, key, timeout_s)
    return zone_text


def publish_txt(
    server: Nameserver,
    name: str,
    strings: Sequence[str],
    ttl: int,
    key: TsigKey,
    zone: str = "",
    resolver: dns.resolver.Resolver | None = None,
    timeout_s: float = 5.0,
) -> str:
    """Make `name` hold exactly one TXT record of `strings` (each ≤ 255 bytes); the zone used.

    The zone is `zone`, else the SOA found through `resolver`, else by asking
    `server`. Raises PublishError with the server's answer and what to check.
    """
    data = [text.encode("utf-8") for text in strings]
    if not data:
        raise PublishError(f"no TXT strings to publish at {name}")
    for number, chunk in enumerate(data, start=1):
        if len(chunk) > MAX_STRING:
            # RFC 1035 §3.3: a character-string holds at most 255 bytes.
            raise PublishError(
                f"TXT string {number} for {name} has {len(chunk)} bytes; split it into strings "
                f"of at most {MAX_STRING}"
            )
    return _update(server, name, key, zone, resolver, timeout_s, data, ttl)


def remove_txt(
    server: Nameserver,
    name: str,
    key: TsigKey,
    zone: str = "",
    resolver: dns.resolver.Resolver | None = None,
    timeout_s: float = 5.0,
) -> str:
    """Delete every TXT record at `name` (nothing to delete is fine); the zone used."""
    return _update(server, name, key, zone, resolver, timeout_s, None)
