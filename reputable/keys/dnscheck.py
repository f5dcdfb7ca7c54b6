"""Whether a DKIM key record is published as we mean it. Interpreting is pure; asking is I/O.

A key only goes live once every authoritative server of its zone serves
exactly our key (RFC 6376 §3.6.2.2 lets a verifier use any of several
records at the name, and any server of the NS set): so each server is
asked directly and without recursion, never a cache that may be stale.
"""

from __future__ import annotations

import errno
import re
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from enum import StrEnum

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.CNAME
import dns.rdtypes.ANY.NS
import dns.rdtypes.ANY.TXT
import dns.resolver

from reputable.config import Nameserver
from reputable.errors import ReputableError
from reputable.keys.record import record_name
from reputable.resolver import EDNS_PAYLOAD, failure_reason


class DnsStatus(StrEnum):
    MATCHING = "matching"
    MISMATCH = "mismatch"
    MISSING = "missing"
    ERROR = "error"
    NOT_CHECKED = "not checked"


@dataclass(frozen=True, slots=True)
class RecordCheck:
    """The verdict on one key's record over all servers asked, with what to do about it."""

    status: DnsStatus
    detail: str  # one line a mail admin can act on
    testing: bool = False  # the matching record carries t=y (RFC 6376 §3.6.1): warn
    servers: tuple[str, ...] = ()  # the servers asked, "name (ip:port)" or "ip:port"
    # False when the zone's name servers could not even be found through [dns] nameservers
    servers_found: bool = True


@dataclass(frozen=True, slots=True)
class ServerAnswer:
    """What one server said for the TXT at the name."""

    server: str
    records: tuple[bytes, ...] | None  # each TXT record, strings joined; None: the server failed
    error: str = ""  # why, when records is None


class DnsLookupError(ReputableError):
    """The authoritative servers of a name could not be found; the message says why."""


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """The tags of a DKIM key record that decide whether it verifies our signatures."""

    key_type: str  # k=, "rsa" when absent
    public_key: str  # p=, whitespace removed; "" = revoked
    flags: tuple[str, ...] = ()  # t=
    hashes: tuple[str, ...] = ()  # h=; empty: any
    services: tuple[str, ...] = ("*",)  # s=


@dataclass(frozen=True, slots=True)
class Malformed:
    """A TXT record that claims to be a DKIM key record but that verifiers must reject."""

    reason: str


# RFC 6376 §3.2: tag-name = ALPHA *ALNUMPUNC; FWS around names, "=" and values.
_TAG = re.compile(r"[ \t\r\n]*([A-Za-z][A-Za-z0-9_]*)[ \t\r\n]*=(.*)", re.DOTALL)
_WHITESPACE = re.compile(r"[ \t\r\n]+")
_SHOWN = 12  # a p= longer than this is shown as its first and last 4 characters
_MAX_CNAMES = 8  # CNAME chain length followed inside one answer

_PROBLEM_RANK = {DnsStatus.MISMATCH: 0, DnsStatus.ERROR: 1, DnsStatus.MISSING: 2}


# --- interpretation (pure) ---


def parse_tag_list(text: str) -> dict[str, str] | None:
    """An RFC 6376 §3.2 tag=value list, values stripped of surrounding FWS; None if invalid."""
    tags: dict[str, str] = {}
    parts = text.split(";")
    if parts and not parts[-1].strip():
        parts.pop()  # a trailing ";" is allowed
    for part in parts:
        match = _TAG.fullmatch(part)
        if match is None:
            return None
        name, value = match.group(1), match.group(2).strip(" \t\r\n")
        if name in tags:
            return None  # §3.2: a duplicate tag makes the whole list invalid
        tags[name] = value
    return tags


def _split_list(value: str, separator: str) -> tuple[str, ...]:
    return tuple(item.strip(" \t\r\n").lower() for item in value.split(separator) if item.strip())


def parse_key_record(data: bytes) -> KeyRecord | Malformed | None:
    """A DKIM key record (RFC 6376 §3.6.1), Malformed if it claims to be one, None if not one."""
    text = data.decode("latin-1")  # never fails; a non-ASCII key cannot equal ours anyway
    tags = parse_tag_list(text)
    claims = text.lstrip(" \t\r\n").startswith("v=DKIM1")
    if tags is None:
        return Malformed("not a valid tag=value list") if claims else None
    version = tags.get("v")
    if version is not None and version != "DKIM1":
        return None  # §3.6.1: records with another v= MUST be discarded
    if version is not None and next(iter(tags)) != "v":
        return Malformed("v=DKIM1 is not the first tag")
    if "p" not in tags:
        return Malformed("no p= tag") if version is not None else None
    return KeyRecord(
        key_type=tags.get("k", "rsa").strip().lower(),
        public_key=_WHITESPACE.sub("", tags["p"]),
        flags=_split_list(tags.get("t", ""), ":"),
        hashes=_split_list(tags.get("h", ""), ":"),
        services=_split_list(tags.get("s", "*"), ":"),
    )


def _printable(text: str) -> str:
    """Record bytes as they may appear in a detail: one line, no control characters."""
    return "".join(c if c.isascii() and c.isprintable() else f"\\x{ord(c):02x}" for c in text)


def _shown(public_key: str) -> str:
    if len(public_key) <= _SHOWN:
        return _printable(public_key)
    return f"{_printable(public_key[:4])}…{_printable(public_key[-4:])}"


def _unusable(record: KeyRecord) -> str:
    """Why verifiers cannot use this record with our (sha256, email) signatures, or ""."""
    if record.hashes and "sha256" not in record.hashes:
        hashes = _printable(":".join(record.hashes))
        return f"has our key but h={hashes} forbids sha256, which we sign with"
    if "*" not in record.services and "email" not in record.services:
        return f"has our key but s={_printable(':'.join(record.services))} excludes email"
    return ""


def _describe_other(theirs: KeyRecord | Malformed, ours: KeyRecord) -> str:
    """What is wrong with a record that is not ours, as a predicate of the server."""
    if isinstance(theirs, Malformed):
        return f"has a malformed DKIM record ({theirs.reason})"
    if not theirs.public_key and ours.public_key:
        return "has p= empty: the key is revoked (RFC 6376 §3.6.1)"
    if theirs.key_type != ours.key_type:
        same = "the same p=" if theirs.public_key == ours.public_key else "another key"
        return f"has k={_printable(theirs.key_type)} ({same}); ours is k={ours.key_type}"
    if theirs.public_key and ours.public_key.startswith(theirs.public_key):
        return (
            f"has p={_shown(theirs.public_key)} cut short at {len(theirs.public_key)} of "
            f"{len(ours.public_key)} characters: the record was truncated (a form that keeps "
            "255 characters?); publish it as several strings of at most 255"
        )
    return f"has p={_shown(theirs.public_key)} (another key)"


@dataclass(frozen=True, slots=True)
class _Verdict:
    server: str
    status: DnsStatus
    predicate: str  # "has …" or "failed: …", the server being the subject
    testing: bool = False


def _judge(answer: ServerAnswer, ours: KeyRecord) -> _Verdict:
    if answer.records is None:
        return _Verdict(answer.server, DnsStatus.ERROR, f"failed: {answer.error or 'no answer'}")
    parsed = [parse_key_record(data) for data in answer.records]
    keys = [record for record in parsed if record is not None]
    if not keys:
        other_txt = " (only other TXT records)" if answer.records else ""
        return _Verdict(answer.server, DnsStatus.MISSING, f"has no DKIM key record{other_txt}")
    mine = [
        record
        for record in keys
        if isinstance(record, KeyRecord)
        and (record.key_type, record.public_key) == (ours.key_type, ours.public_key)
    ]
    others = [record for record in keys if record not in mine]
    testing = any("y" in record.flags for record in mine)
    if others:
        problem = _describe_other(others[0], ours)
        if mine:
            problem = (
                f"has our key and another DKIM record at the name, which {problem}"
                ": verifiers may pick either (RFC 6376 §3.6.2.2); remove the other"
            )
        return _Verdict(answer.server, DnsStatus.MISMATCH, problem, testing)
    unusable = _unusable(mine[0])
    if unusable:
        return _Verdict(answer.server, DnsStatus.MISMATCH, unusable, testing)
    return _Verdict(answer.server, DnsStatus.MATCHING, "has our key", testing)


def _sentence(servers: Sequence[str], predicate: str) -> str:
    if len(servers) > 1 and predicate.startswith("has "):
        predicate = "have " + predicate.removeprefix("has ")
    return f"{', '.join(servers)} {predicate}"


def _grouped(verdicts: Sequence[_Verdict]) -> str:
    """One clause per distinct predicate, its servers listed together, in first-seen order."""
    groups: dict[str, list[str]] = {}
    for verdict in verdicts:
        groups.setdefault(verdict.predicate, []).append(verdict.server)
    return "; ".join(_sentence(servers, predicate) for predicate, servers in groups.items())


def interpret_key_records(answers: Sequence[ServerAnswer], expected_value: str) -> RecordCheck:
    """The verdict on `expected_value` (our record, "v=DKIM1; k=rsa; p=…") given each server's TXT.

    MATCHING only when every server answered with our k= and p= and nothing
    else that claims to be a DKIM key; otherwise the worst finding wins:
    MISMATCH (a record verifiers would use wrongly), then ERROR (a server we
    could not hear from), then MISSING (no key record on some server).
    """
    servers = tuple(answer.server for answer in answers)
    ours = parse_key_record(expected_value.encode("utf-8", "replace"))
    if not isinstance(ours, KeyRecord):
        return RecordCheck(DnsStatus.ERROR, "our record has no p= tag: nothing to compare")
    if not answers:
        return RecordCheck(DnsStatus.ERROR, "no name server to ask", servers=servers)
    verdicts = [_judge(answer, ours) for answer in answers]
    testing = any(verdict.testing for verdict in verdicts)
    problems = [verdict for verdict in verdicts if verdict.status is not DnsStatus.MATCHING]
    if not problems:
        detail = _grouped(verdicts)
        if testing:
            detail += (
                ", in testing mode (t=y): receivers may treat its signatures as absent "
                "(RFC 6376 §3.6.1); drop t=y once mail verifies"
            )
        return RecordCheck(DnsStatus.MATCHING, detail, testing, servers)
    status = min((verdict.status for verdict in problems), key=_PROBLEM_RANK.__getitem__)
    detail = _grouped([verdict for verdict in problems if verdict.status is status])
    matching = [verdict.server for verdict in verdicts if verdict.status is DnsStatus.MATCHING]
    if matching and status is DnsStatus.MISSING:
        detail += (
            f" while {', '.join(matching)} {'has' if len(matching) == 1 else 'have'} it: "
            "the change has not reached every server yet (compare their SOA serials)"
        )
    elif matching:
        detail += f" ({', '.join(matching)} {'has' if len(matching) == 1 else 'have'} our key)"
    return RecordCheck(status, detail, testing, servers)


# --- asking the servers (I/O) ---


@dataclass(frozen=True, slots=True)
class _Target:
    """One address to ask; `group` ties the addresses of one NS name together."""

    label: str
    server: Nameserver
    group: str


# A local error of these kinds means this host has no route of that address
# family (typically no IPv6): the server is not wrong, we just cannot ask it.
_UNREACHABLE_HERE = {errno.ENETUNREACH, errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT}


def _ns_addresses(
    name: str, resolver: dns.resolver.Resolver
) -> list[tuple[str, list[Nameserver], str]]:
    """(NS name, its addresses on port 53, the error finding them) for the zone of `name`."""
    try:
        zone = dns.resolver.zone_for_name(name, resolver=resolver)
    except dns.exception.DNSException as exc:
        raise DnsLookupError(
            f"cannot find the zone of {name}: {failure_reason(exc, resolver.lifetime)}"
        ) from None
    try:
        answer = resolver.resolve(zone, dns.rdatatype.NS)
    except dns.exception.DNSException as exc:
        reason = failure_reason(exc, resolver.lifetime)
        raise DnsLookupError(f"cannot look up the NS records of {zone}: {reason}") from None
    hosts = sorted(
        {
            rd.target.to_text(omit_final_dot=True)
            for rd in answer
            if isinstance(rd, dns.rdtypes.ANY.NS.NS)
        }
    )
    found: list[tuple[str, list[Nameserver], str]] = []
    for host in hosts:
        addresses: list[Nameserver] = []
        errors: list[str] = []
        for rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA):
            try:
                result = resolver.resolve(host + ".", rdtype, raise_on_no_answer=False)
            except dns.resolver.NXDOMAIN:
                break  # an NS name that does not exist: nobody can ask it
            except dns.exception.DNSException as exc:
                reason = failure_reason(exc, resolver.lifetime)
                errors.append(f"cannot look up its {dns.rdatatype.to_text(rdtype)}: {reason}")
                continue
            addresses.extend(Nameserver(rd.to_text()) for rd in result)
        found.append((host, addresses, "; ".join(errors) if not addresses else ""))
    if not any(addresses or error for _, addresses, error in found):
        raise DnsLookupError(f"no NS of {zone} ({', '.join(hosts) or 'none'}) has an address")
    return found


def authoritative_servers(name: str, resolver: dns.resolver.Resolver) -> list[Nameserver]:
    """The addresses (port 53) of the NS of the zone holding `name`, asked through `resolver`.

    Raises DnsLookupError when the zone, its NS or all their addresses cannot be found.
    """
    servers: list[Nameserver] = []
    for _, addresses, _ in _ns_addresses(name, resolver):
        servers.extend(address for address in addresses if address not in servers)
    return servers


def _txt_records(
    response: dns.message.Message, qname: dns.name.Name, resolver: dns.resolver.Resolver
) -> tuple[bytes, ...] | str:
    """The TXT records the response gives for `qname` (CNAMEs followed), or why there are none."""
    rcode = response.rcode()
    if rcode not in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
        hint = {
            dns.rcode.REFUSED: ": it does not serve this zone, or refuses this host",
            dns.rcode.SERVFAIL: ": its copy of the zone is broken or expired (see its log)",
            dns.rcode.NOTAUTH: ": it is not authoritative for this zone",
        }.get(rcode, "")
        return f"answered {dns.rcode.to_text(rcode)}{hint}"
    name = qname
    for _ in range(_MAX_CNAMES):
        txt = response.get_rrset(response.answer, name, dns.rdataclass.IN, dns.rdatatype.TXT)
        if txt is not None:
            return tuple(
                b"".join(rd.strings) for rd in txt if isinstance(rd, dns.rdtypes.ANY.TXT.TXT)
            )
        cname = response.get_rrset(response.answer, name, dns.rdataclass.IN, dns.rdatatype.CNAME)
        if cname is None:
            break
        target = next(iter(cname))
        assert isinstance(target, dns.rdtypes.ANY.CNAME.CNAME)
        name = target.target
    if name != qname and rcode == dns.rcode.NOERROR:
        # The key lives elsewhere (a CNAME, e.g. to a provider): ask for it the usual way.
        try:
            result = resolver.resolve(name, dns.rdatatype.TXT, raise_on_no_answer=False)
        except dns.resolver.NXDOMAIN:
            return ()
        except dns.exception.DNSException as exc:
            reason = failure_reason(exc, resolver.lifetime)
            return f"gave a CNAME to {name}, which could not be looked up: {reason}"
        return tuple(
            b"".join(rd.strings) for rd in result if isinstance(rd, dns.rdtypes.ANY.TXT.TXT)
        )
    if not response.flags & dns.flags.AA:
        # RFC 1035 §4.1.1: an empty answer without AA is a referral or a cache: not the zone's word.
        return "answered without authority (AA clear): it is not authoritative for this zone"
    return ()


def _ask(
    target: _Target, qname: dns.name.Name, resolver: dns.resolver.Resolver, timeout_s: float
) -> tuple[ServerAnswer, bool]:
    """What `target` says for TXT at `qname`, and whether it is unreachable from this host."""
    # RD=0: the server must answer from its own zone data (RFC 1035 §4.1.1), not recurse.
    query = dns.message.make_query(
        qname, dns.rdatatype.TXT, use_edns=0, payload=EDNS_PAYLOAD, flags=0
    )
    host, port = target.server.host, target.server.port
    deadline = time.monotonic() + timeout_s
    try:
        try:
            response = dns.query.udp(
                query, host, timeout=timeout_s, port=port, raise_on_truncation=True
            )
        except dns.message.Truncated:
            remaining = max(deadline - time.monotonic(), 0.1)
            response = dns.query.tcp(query, host, timeout=remaining, port=port)
    except dns.exception.Timeout:
        return ServerAnswer(target.label, None, f"no answer within {timeout_s:g} s"), False
    except OSError as exc:
        reason = f"cannot reach it: {exc.strerror or exc}"
        return ServerAnswer(target.label, None, reason), exc.errno in _UNREACHABLE_HERE
    except dns.exception.DNSException as exc:
        reason = f"sent a bad answer: {failure_reason(exc, timeout_s)}"
        return ServerAnswer(target.label, None, reason), False
    except ValueError:
        return ServerAnswer(target.label, None, f"{host} is not an IP address"), False
    found = _txt_records(response, qname, resolver)
    if isinstance(found, str):
        return ServerAnswer(target.label, None, found), False
    return ServerAnswer(target.label, found), False


def _targets(
    name: str, resolver: dns.resolver.Resolver, verify_nameservers: Sequence[Nameserver]
) -> tuple[list[_Target], list[ServerAnswer]]:
    """The addresses to ask, and the failures already known (an NS without an address found)."""
    if verify_nameservers:
        unique = list(dict.fromkeys(verify_nameservers))
        return [_Target(str(ns), ns, str(ns)) for ns in unique], []
    targets: list[_Target] = []
    failures: list[ServerAnswer] = []
    seen: set[Nameserver] = set()
    for host, addresses, error in _ns_addresses(name, resolver):
        if error:
            failures.append(ServerAnswer(host, None, error))
        for address in addresses:
            if address not in seen:
                seen.add(address)
                targets.append(_Target(f"{host} ({address})", address, host))
    return targets, failures


def check_key_record(
    selector: str,
    domain: str,
    expected_value: str,
    resolver: dns.resolver.Resolver,
    verify_nameservers: Sequence[Nameserver],
    timeout_s: float,
) -> RecordCheck:
    """Ask each server (`verify_nameservers`, else the zone's NS) for the record, and judge it.

    All servers are asked at once, each bounded by `timeout_s` (UDP, then TCP
    if the answer was truncated, within the same bound). DNS trouble never
    raises: it is an ERROR naming the server and the reason.
    """
    name = record_name(selector, domain)
    try:
        qname = dns.name.from_text(name)
    except dns.exception.DNSException as exc:
        return RecordCheck(DnsStatus.ERROR, f"{name}: {failure_reason(exc)}")
    try:
        targets, answers = _targets(name, resolver, verify_nameservers)
    except DnsLookupError as exc:
        return RecordCheck(DnsStatus.ERROR, str(exc), servers_found=False)
    if not targets:
        return interpret_key_records(answers, expected_value)
    with ThreadPoolExecutor(max_workers=min(len(targets), 8)) as pool:
        results = list(pool.map(lambda t: _ask(t, qname, resolver, timeout_s), targets))
    heard = {
        t.group
        for t, (answer, _) in zip(targets, results, strict=True)
        if answer.records is not None
    }
    for target, (answer, unreachable_here) in zip(targets, results, strict=True):
        # An address this host has no route to (IPv6 on an IPv4-only host) is skipped
        # when another address of the same server answered.
        if not (unreachable_here and target.group in heard):
            answers.append(answer)
    return interpret_key_records(answers, expected_value)
