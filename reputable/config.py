"""The configuration: TOML parsed once into frozen dataclasses. Pure but for reading the file.

Every key is documented in `conf/reputable.toml`; a test holds that file to
exactly the defaults below.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from datetime import date, datetime, time
from enum import StrEnum
from pathlib import Path
from typing import Any, TypeVar

from reputable.checks.blocklists import DnsblKind, DnsblZone
from reputable.errors import ConfigError, Problem
from reputable.regular_file import UnreadableFile, read_regular_file
from reputable.signing.algorithm import Algorithm
from reputable.signing.canonicalization import Canonicalization

DEFAULT_PATH = Path("/etc/reputable/reputable.toml")
ENV_VAR = "REPUTABLE_CONFIG"

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class Mode(StrEnum):
    ENFORCE = "enforce"
    MONITOR = "monitor"  # every action only logged


class Action(StrEnum):
    """What happens to outbound mail when a check fails; ordered by severity in SEVERITY."""

    ACCEPT = "accept"
    FLAG = "flag"
    HOLD = "hold"
    TEMPFAIL = "tempfail"
    REJECT = "reject"


SEVERITY = {Action.ACCEPT: 0, Action.FLAG: 1, Action.HOLD: 2, Action.TEMPFAIL: 3, Action.REJECT: 4}


class OnError(StrEnum):
    """What the MTA is told when handling one message fails inside the milter."""

    TEMPFAIL = "tempfail"
    ACCEPT = "accept"


class LogFormat(StrEnum):
    LOGFMT = "logfmt"
    JSON = "json"


class LogLevel(StrEnum):
    DEBUG = "debug"
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"


@dataclass(frozen=True, slots=True)
class MilterSocket:
    """Where the milter listens, in libmilter's spelling and in Postfix's."""

    kind: str  # "unix", "inet" or "inet6"
    path: str = ""  # for unix
    host: str = ""  # for inet/inet6
    port: int = 0

    @property
    def libmilter(self) -> str:
        if self.kind == "unix":
            return f"unix:{self.path}"
        return f"{self.kind}:{self.port}@{self.host}"

    @property
    def postfix(self) -> str:
        if self.kind == "unix":
            return f"unix:{self.path}"
        host = f"[{self.host}]" if self.kind == "inet6" else self.host
        return f"inet:{host}:{self.port}"


DEFAULT_HEADERS = (
    "from",
    "sender",
    "reply-to",
    "subject",
    "date",
    "message-id",
    "to",
    "cc",
    "mime-version",
    "content-type",
    "content-transfer-encoding",
    "content-language",
    "in-reply-to",
    "references",
    "list-id",
    "list-help",
    "list-owner",
    "list-unsubscribe",
    "list-unsubscribe-post",
    "list-subscribe",
    "list-post",
    "resent-to",
    "resent-cc",
    "resent-from",
    "resent-sender",
    "resent-message-id",
    "resent-date",
    "openpgp",
    "autocrypt",
)
DEFAULT_OVERSIGN = ("from", "reply-to", "subject", "to", "cc")


@dataclass(frozen=True, slots=True)
class MilterConfig:
    socket: MilterSocket = MilterSocket("inet", host="127.0.0.1", port=8891)
    socket_owner: str = ""  # a unix socket's user; empty: the daemon's own
    socket_group: str = ""  # a unix socket's group; empty: the daemon's (or its directory's)
    socket_mode: int = 0o660
    on_error: OnError = OnError.TEMPFAIL
    timeout_s: int = 600
    mode: Mode = Mode.ENFORCE
    max_connections: int = 0  # 0: derived from the open-file limit at start
    max_header_bytes: int = 1 << 20
    max_headers: int = 10_000


@dataclass(frozen=True, slots=True)
class SigningConfig:
    domains: tuple[str, ...] = ()  # empty: the host's own domain
    keys: Path = Path("/var/lib/reputable/keys")
    algorithms: tuple[Algorithm, ...] = (Algorithm.RSA_SHA256,)
    header_canonicalization: Canonicalization = Canonicalization.RELAXED
    body_canonicalization: Canonicalization = Canonicalization.RELAXED
    headers: tuple[str, ...] = DEFAULT_HEADERS
    oversign: tuple[str, ...] = DEFAULT_OVERSIGN


@dataclass(frozen=True, slots=True)
class TrustConfig:
    internal_hosts: tuple[IPNetwork, ...] = (
        ipaddress.ip_network("127.0.0.0/8"),
        ipaddress.ip_network("::1/128"),
    )
    authenticated: bool = True


@dataclass(frozen=True, slots=True)
class Nameserver:
    host: str
    port: int = 53

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class DnsConfig:
    nameservers: tuple[Nameserver, ...] = ()  # empty: /etc/resolv.conf
    dnsbl_nameservers: tuple[Nameserver, ...] = ()  # empty: the same as nameservers
    timeout_s: float = 2.0


@dataclass(frozen=True, slots=True)
class HostConfig:
    sending_ips: tuple[IPAddress, ...] = ()  # empty: detected
    helo_name: str = ""  # empty: Postfix's smtp_helo_name / myhostname, else the FQDN


DEFAULT_DNSBLS = tuple(
    DnsblZone.named(zone) for zone in ("zen.spamhaus.org", "bl.spamcop.net", "psbl.surriel.com")
)


@dataclass(frozen=True, slots=True)
class ChecksConfig:
    dnsbl: tuple[DnsblZone, ...] = DEFAULT_DNSBLS
    # domain lists (e.g. dbl.spamhaus.org) for the signing domains
    dnsbl_domains: tuple[DnsblZone, ...] = ()
    refresh_s: int = 300
    port25_target: str = "gmail-smtp-in.l.google.com:25"
    port25_timeout_s: float = 5.0


@dataclass(frozen=True, slots=True)
class ActionsConfig:
    ptr: Action = Action.HOLD
    dnsbl: Action = Action.HOLD
    spf_fail: Action = Action.HOLD
    spf_softfail: Action = Action.FLAG
    dmarc_unaligned: Action = Action.FLAG
    dkim_record: Action = Action.HOLD
    dns_error: Action = Action.ACCEPT


@dataclass(frozen=True, slots=True)
class PublishConfig:
    server: Nameserver | None = None  # RFC 2136 primary; None: publishing is off
    tsig_key_file: Path | None = None
    zone: str = ""  # empty: found from the SOA above the record
    ttl: int = 3600


@dataclass(frozen=True, slots=True)
class KeysConfig:
    verify_nameservers: tuple[Nameserver, ...] = ()  # empty: the domain's NS
    grace_s: int = 7 * 86400
    max_age_s: int = 365 * 86400
    selector: str = "%Y-%m"  # strftime, {host} = short host name; "s"/"e" prefix per algorithm
    check_interval_s: int = 300
    publish: PublishConfig = field(default_factory=PublishConfig)


@dataclass(frozen=True, slots=True)
class EximConfig:
    socket: Path | None = None  # the gate's unix socket for Exim's ACLs; None: off
    socket_group: str = ""  # its group (Debian-exim); empty: the daemon's
    socket_mode: int = 0o660


@dataclass(frozen=True, slots=True)
class InboundConfig:
    verify: bool = True  # verify mail that is not outbound and write Authentication-Results
    authserv_id: str = ""  # the header's authserv-id; empty: this host's name
    dmarc_enforce: bool = False  # refuse DMARC fail under p=reject, hold it under p=quarantine
    trusted_arc_signers: tuple[str, ...] = ()  # an ARC pass sealed by one of these exempts it


@dataclass(frozen=True, slots=True)
class MetricsConfig:
    listen: tuple[str, int] | None = None  # (address, port) of /metrics; None: off


@dataclass(frozen=True, slots=True)
class LogConfig:
    format: LogFormat = LogFormat.LOGFMT
    target: str = "stderr"  # "stderr", "syslog" or a file path
    level: LogLevel = LogLevel.INFO


@dataclass(frozen=True, slots=True)
class Config:
    milter: MilterConfig = field(default_factory=MilterConfig)
    signing: SigningConfig = field(default_factory=SigningConfig)
    trust: TrustConfig = field(default_factory=TrustConfig)
    host: HostConfig = field(default_factory=HostConfig)
    checks: ChecksConfig = field(default_factory=ChecksConfig)
    actions: ActionsConfig = field(default_factory=ActionsConfig)
    dns: DnsConfig = field(default_factory=DnsConfig)
    keys: KeysConfig = field(default_factory=KeysConfig)
    log: LogConfig = field(default_factory=LogConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    exim: EximConfig = field(default_factory=EximConfig)
    inbound: InboundConfig = field(default_factory=InboundConfig)
    source: str = "<defaults>"


# --- value parsers: each returns the value or raises ValueError(what is allowed) ---

T = TypeVar("T")
E = TypeVar("E", bound=StrEnum)
Parser = Callable[[Any], Any]

_DOMAIN = re.compile(
    r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$"
)
_HEADER_NAME = re.compile(r"^[!-9;-~]+$")


def _enum(kind: type[E]) -> Callable[[Any], E]:
    def parse(value: Any) -> E:
        try:
            return kind(value)
        except ValueError:
            raise ValueError("one of " + ", ".join(f'"{m.value}"' for m in kind)) from None

    return parse


def _list_of(
    item: Callable[[Any], T], *, non_empty: bool = False
) -> Callable[[Any], tuple[T, ...]]:
    def parse(value: Any) -> tuple[T, ...]:
        if not isinstance(value, list):
            raise ValueError('a list, e.g. ["..."]')
        if non_empty and not value:
            raise ValueError("a list with at least one entry")
        return tuple(item(v) for v in value)

    return parse


def _string(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError("a string in double quotes")
    return value


def _boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError("true or false")
    return value


def parse_domain(value: Any) -> str:
    """A DNS domain name, IDNs converted to their A-label form."""
    text = _string(value).strip().rstrip(".").lower()
    try:
        ascii_name = text.encode("idna").decode("ascii")
    except UnicodeError:
        raise ValueError('a domain name such as "example.com"') from None
    if not _DOMAIN.match(ascii_name):
        raise ValueError('a domain name such as "example.com"')
    return ascii_name


# Names that never reach a domain on the internet: RFC 6761 (localhost, invalid), RFC 6762
# (local), and the placeholder "localdomain" of hosts installed without a domain.
LOCAL_ONLY_TLDS = frozenset({"localhost", "localdomain", "local", "invalid"})


def is_mail_domain(name: str) -> bool:
    """Whether a parsed domain can be a mail domain: two labels or more, none of them local-only."""
    labels = name.split(".")
    return len(labels) >= 2 and labels[-1] not in LOCAL_ONLY_TLDS


def parse_mail_domain(value: Any) -> str:
    """A domain to sign mail of: not "localhost", nor a single label such as a host's short name."""
    domain = parse_domain(value)
    if not is_mail_domain(domain):
        raise ValueError('a mail domain such as "example.com" (not localhost, nor a host\'s name)')
    return domain


class _EntryError(ValueError):
    """A bad entry inside a list: where in the value (e.g. "[1].kind"), its value, what is allowed."""

    def __init__(self, where: str, value: Any, allowed: str) -> None:
        super().__init__(allowed)
        self.where, self.value = where, value


_DNSBL_ENTRY = 'a zone name such as "zen.spamhaus.org", or { zone = "...", kind = "..." }'


def _dnsbl_zones(value: Any) -> tuple[DnsblZone, ...]:
    """[checks] dnsbl: zone names (their kind read from the name) or { zone, kind } tables."""
    if not isinstance(value, list):
        raise ValueError('a list, e.g. ["zen.spamhaus.org"]')
    return tuple(_dnsbl_zone(entry, f"[{index}]") for index, entry in enumerate(value))


def _dnsbl_zone(entry: Any, where: str) -> DnsblZone:
    if isinstance(entry, str):
        try:
            return DnsblZone.named(parse_domain(entry))
        except ValueError as exc:
            raise _EntryError(where, entry, str(exc)) from None
    if not isinstance(entry, dict) or "zone" not in entry or not set(entry) <= {"zone", "kind"}:
        raise _EntryError(where, entry, _DNSBL_ENTRY)
    try:
        zone = parse_domain(entry["zone"])
    except ValueError as exc:
        raise _EntryError(f"{where}.zone", entry["zone"], str(exc)) from None
    if "kind" not in entry:
        return DnsblZone.named(zone)
    try:
        return DnsblZone(zone, DnsblKind(entry["kind"]))
    except ValueError:
        kinds = "one of " + ", ".join(f'"{kind.value}"' for kind in DnsblKind)
        raise _EntryError(f"{where}.kind", entry["kind"], kinds) from None


def parse_socket(value: Any) -> MilterSocket:
    """libmilter socket syntax: unix:/path (or local:/path), inet:PORT@HOST, inet6:PORT@HOST."""
    allowed = '"unix:/run/reputable/milter.sock", "inet:8891@127.0.0.1" or "inet6:8891@::1"'
    text = _string(value)
    kind, _, rest = text.partition(":")
    if kind in ("unix", "local") and rest.startswith("/"):
        return MilterSocket("unix", path=rest)
    port_text, _, host = rest.partition("@")
    if kind not in ("inet", "inet6") or not port_text.isdigit() or not host:
        raise ValueError(allowed)
    port = int(port_text)
    if not 0 < port < 65536:
        raise ValueError("a port from 1 to 65535 in " + allowed)
    if kind == "inet6":
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError("an IPv6 address after @ in " + allowed) from None
    return MilterSocket(kind, host=host, port=port)


# What useradd accepts; Debian's own system accounts have capitals ("Debian-exim").
_ACCOUNT_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,31}")


def _account_name(value: Any) -> str:
    """A user or group name (whether it exists is checked where the socket is made)."""
    text = _string(value)
    if text and not _ACCOUNT_NAME.fullmatch(text):
        raise ValueError('a user or group name such as "postfix", or "" for the daemon\'s own')
    return text


def _socket_mode(value: Any) -> int:
    text = _string(value)
    if not re.fullmatch(r"0?[0-7]{3}", text):
        raise ValueError('an octal file mode such as "0660"')
    return int(text, 8)


_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


def _duration(value: Any) -> float:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)", _string(value).strip())
    if not match:
        raise ValueError('a duration such as "500ms", "30s", "10m", "1h" or "7d"')
    return float(match[1]) * _UNITS[match[2]]


def _seconds(value: Any) -> int:
    seconds = int(_duration(value))
    if seconds < 1:
        raise ValueError('a duration of at least one second, such as "30s"')
    return seconds


_SIZE_UNITS = {"": 1, "B": 1, "KiB": 1 << 10, "MiB": 1 << 20}


def _header_bytes(value: Any) -> int:
    """A size in bytes: a number, or a string such as "512KiB" or "1MiB"."""
    allowed = 'a size from "8KiB" to "64MiB", such as "1MiB", "512KiB" or 1048576'
    match = re.fullmatch(r"(\d+)\s*(B|KiB|MiB)?", value.strip()) if isinstance(value, str) else None
    if isinstance(value, int) and not isinstance(value, bool):
        size = value
    elif match:
        size = int(match[1]) * _SIZE_UNITS[match[2] or ""]
    else:
        raise ValueError(allowed)
    if not 8 << 10 <= size <= 64 << 20:
        raise ValueError(allowed)
    return size


def _whole(low: int, high: int, zero: str = "") -> Callable[[Any], int]:
    """A whole number from *low* to *high* (or 0, when *zero* says what 0 means)."""

    def parse(value: Any) -> int:
        whole = isinstance(value, int) and not isinstance(value, bool)
        if whole and (low <= value <= high or (zero and value == 0)):
            return int(value)
        zero_means = f", or 0 ({zero})" if zero else ""
        raise ValueError(f"a whole number from {low} to {high}{zero_means}")

    return parse


def _timeout(value: Any) -> float:
    seconds = _duration(value)
    if not 0 < seconds <= 60:
        raise ValueError('a duration from "1ms" to "60s"')
    return seconds


def parse_nameserver(value: Any) -> Nameserver:
    """An IP address with an optional port: "192.0.2.53", "127.0.0.1:5353", "[::1]:53"."""
    text = _string(value).strip()
    allowed = 'an IP address with an optional port, e.g. "192.0.2.53", "127.0.0.1:5353", "[::1]:53"'
    host, port = text, "53"
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest.removeprefix(":") or "53"
    elif text.count(":") == 1:
        host, _, port = text.partition(":")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(allowed) from None
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(allowed)
    return Nameserver(host, int(port))


def _ip_address(value: Any) -> IPAddress:
    try:
        return ipaddress.ip_address(_string(value))
    except ValueError:
        raise ValueError('an IP address such as "203.0.113.5" or "2001:db8::25"') from None


def _hostname(value: Any) -> str:
    text = _string(value)
    return parse_domain(text) if text else ""


def _host_port(value: Any) -> str:
    text = _string(value)
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError('a host and port such as "gmail-smtp-in.l.google.com:25"')
    return text


def _metrics_listen(value: Any) -> tuple[str, int] | None:
    """ "" (off), or an IP address and port: "127.0.0.1:9787", "[::1]:9787"."""
    allowed = '"" (off), or an IP address and port such as "127.0.0.1:9787" or "[::1]:9787"'
    text = _string(value).strip()
    if not text:
        return None
    host, _, port = text.rpartition(":")
    host = host.removeprefix("[").removesuffix("]") if host.startswith("[") else host
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(allowed) from None
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(allowed)
    return host, int(port)


def _optional_nameserver(value: Any) -> Nameserver | None:
    return parse_nameserver(value) if _string(value) else None


def _optional_path(value: Any) -> Path | None:
    return _path(value) if _string(value) else None


def _optional_domain(value: Any) -> str:
    return parse_domain(value) if _string(value) else ""


def _ttl(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 60 <= value <= 86400:
        raise ValueError("a number of seconds from 60 to 86400")
    return value


def _selector_scheme(value: Any) -> str:
    text = _string(value)
    sample = datetime(2026, 11, 27, 5, 4, 3).strftime(text.replace("{host}", "mail1")).lower()
    if not re.fullmatch(r"[a-z0-9][a-z0-9.-]{0,40}", sample) or sample == text.lower():
        raise ValueError(
            'a strftime pattern that makes a selector, e.g. "%Y-%m" or "{host}-%Y%m%d"'
        )
    return text


def _network(value: Any) -> IPNetwork:
    try:
        return ipaddress.ip_network(_string(value), strict=False)
    except ValueError:
        raise ValueError('an IP address or network such as "192.0.2.0/24" or "::1"') from None


def _signed_headers(value: Any) -> tuple[str, ...]:
    names = _list_of(_header_name, non_empty=True)(value)
    if "from" not in names:
        raise ValueError('a list that includes "from" (RFC 6376 §5.4: From must be signed)')
    return names


def _header_name(value: Any) -> str:
    text = _string(value).lower()
    if not _HEADER_NAME.match(text):
        raise ValueError('a header field name such as "subject"')
    return text


def _path(value: Any) -> Path:
    text = _string(value)
    if not text.startswith("/"):
        raise ValueError("an absolute path")
    return Path(text)


def _canonicalization(value: Any) -> tuple[Canonicalization, Canonicalization]:
    allowed = '"relaxed/relaxed", "relaxed/simple", "simple/relaxed" or "simple/simple"'
    text = _string(value)
    header, _, body = text.partition("/")
    body = body or "simple"  # RFC 6376 §3.5: a lone value names the header method
    try:
        return Canonicalization(header), Canonicalization(body)
    except ValueError:
        raise ValueError(allowed) from None


def _log_target(value: Any) -> str:
    text = _string(value)
    if text in ("stderr", "syslog") or text.startswith("/"):
        return text
    raise ValueError('"stderr", "syslog" or an absolute file path')


_AUTHSERV_ID = re.compile(r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+$")  # RFC 8601 value: a token


def _authserv_id(value: Any) -> str:
    text = _string(value)
    if text and not _AUTHSERV_ID.match(text):
        raise ValueError('a host name such as "mx.example.org" (no spaces, ";" or "()"), or ""')
    return text


# --- the schema: section -> key -> (dataclass field, parser) ---

_SCHEMA: dict[str, dict[str, tuple[str, Parser]]] = {
    "milter": {
        "socket": ("socket", parse_socket),
        "socket_owner": ("socket_owner", _account_name),
        "socket_group": ("socket_group", _account_name),
        "socket_mode": ("socket_mode", _socket_mode),
        "on_error": ("on_error", _enum(OnError)),
        "timeout": ("timeout_s", _seconds),
        "mode": ("mode", _enum(Mode)),
        "max_connections": ("max_connections", _whole(1, 1_000_000, "derived from the fd limit")),
        "max_header_bytes": ("max_header_bytes", _header_bytes),
        "max_headers": ("max_headers", _whole(100, 1_000_000)),
    },
    "signing": {
        "domains": ("domains", _list_of(parse_mail_domain)),
        "keys": ("keys", _path),
        "algorithms": ("algorithms", _list_of(_enum(Algorithm), non_empty=True)),
        "canonicalization": ("", _canonicalization),
        "headers": ("headers", _signed_headers),
        "oversign": ("oversign", _list_of(_header_name)),
    },
    "trust": {
        "internal_hosts": ("internal_hosts", _list_of(_network)),
        "authenticated": ("authenticated", _boolean),
    },
    "host": {
        "sending_ips": ("sending_ips", _list_of(_ip_address)),
        "helo_name": ("helo_name", _hostname),
    },
    "checks": {
        "dnsbl": ("dnsbl", _dnsbl_zones),
        "dnsbl_domains": ("dnsbl_domains", _dnsbl_zones),
        "refresh": ("refresh_s", _seconds),
        "port25_target": ("port25_target", _host_port),
        "port25_timeout": ("port25_timeout_s", _timeout),
    },
    "actions": {
        name: (name, _enum(Action))
        for name in (
            "ptr",
            "dnsbl",
            "spf_fail",
            "spf_softfail",
            "dmarc_unaligned",
            "dkim_record",
            "dns_error",
        )
    },
    "dns": {
        "nameservers": ("nameservers", _list_of(parse_nameserver)),
        "dnsbl_nameservers": ("dnsbl_nameservers", _list_of(parse_nameserver)),
        "timeout": ("timeout_s", _timeout),
    },
    "keys": {
        "verify_nameservers": ("verify_nameservers", _list_of(parse_nameserver)),
        "grace": ("grace_s", _seconds),
        "max_age": ("max_age_s", _seconds),
        "selector": ("selector", _selector_scheme),
        "check_interval": ("check_interval_s", _seconds),
    },
    "keys.publish": {
        "server": ("server", _optional_nameserver),
        "tsig_key_file": ("tsig_key_file", _optional_path),
        "zone": ("zone", _optional_domain),
        "ttl": ("ttl", _ttl),
    },
    "metrics": {
        "listen": ("listen", _metrics_listen),
    },
    "exim": {
        "socket": ("socket", _optional_path),
        "socket_group": ("socket_group", _account_name),
        "socket_mode": ("socket_mode", _socket_mode),
    },
    "inbound": {
        "verify": ("verify", _boolean),
        "authserv_id": ("authserv_id", _authserv_id),
        "dmarc_enforce": ("dmarc_enforce", _boolean),
        "trusted_arc_signers": ("trusted_arc_signers", _list_of(parse_domain)),
    },
    "log": {
        "format": ("format", _enum(LogFormat)),
        "target": ("target", _log_target),
        "level": ("level", _enum(LogLevel)),
    },
}
_SECTION_TYPES: dict[str, type[Any]] = {
    "milter": MilterConfig,
    "signing": SigningConfig,
    "trust": TrustConfig,
    "host": HostConfig,
    "checks": ChecksConfig,
    "actions": ActionsConfig,
    "dns": DnsConfig,
    "keys": KeysConfig,
    "keys.publish": PublishConfig,
    "log": LogConfig,
    "metrics": MetricsConfig,
    "exim": EximConfig,
    "inbound": InboundConfig,
}


def _shown(value: Any) -> str:
    """A value as TOML writes it (`["rsa-sha1"]`, not Python's `['rsa-sha1']`)."""
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(_shown(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_shown(v)}" for k, v in value.items()) + " }"
    if isinstance(value, (date, time)):
        return value.isoformat()
    return repr(value)


def _build_section(name: str, table: Any, source: str, problems: list[Problem]) -> Any:
    kind = _SECTION_TYPES[name]
    if not isinstance(table, dict):
        problems.append(Problem(source, f"[{name}]", _shown(table), "a table of keys"))
        return kind()
    values: dict[str, Any] = {}
    schema = _SCHEMA[name]
    for key, raw in table.items():
        if key not in schema:
            allowed = "known keys are " + ", ".join(schema)
            problems.append(Problem(source, f"{name}.{key}", _shown(raw), allowed))
            continue
        attr, parse = schema[key]
        try:
            parsed = parse(raw)
        except _EntryError as exc:
            where, shown = f"{name}.{key}{exc.where}", _shown(exc.value)
            problems.append(Problem(source, where, shown, f"expected {exc}"))
            continue
        except ValueError as exc:
            problems.append(Problem(source, f"{name}.{key}", _shown(raw), f"expected {exc}"))
            continue
        if name == "signing" and key == "canonicalization":
            values["header_canonicalization"], values["body_canonicalization"] = parsed
        else:
            values[attr] = parsed
    return kind(**values)


def parse_config(document: Mapping[str, Any], source: str) -> Config:
    """Build a Config from a parsed TOML document, or raise ConfigError listing every problem."""
    problems: list[Problem] = []
    sections: dict[str, Any] = {}
    document = dict(document)
    keys_table = document.get("keys")
    if isinstance(keys_table, dict) and isinstance(keys_table.get("publish"), dict):
        keys_table = dict(keys_table)
        document["keys.publish"] = keys_table.pop("publish")
        document["keys"] = keys_table
    for name, table in document.items():
        if name not in _SCHEMA:
            allowed = "known sections are " + ", ".join(f"[{s}]" for s in _SCHEMA)
            problems.append(Problem(source, f"[{name}]", "(section)", allowed))
            continue
        sections[name] = _build_section(name, table, source, problems)
    if problems:
        raise ConfigError(problems)
    publish = sections.pop("keys.publish", PublishConfig())
    keys = sections.get("keys", KeysConfig())
    sections["keys"] = KeysConfig(
        **{f.name: getattr(keys, f.name) for f in fields(keys)} | {"publish": publish}
    )
    return Config(**sections, source=source)


def config_path(explicit: str | None, environ: Mapping[str, str]) -> Path | None:
    """The file to read: --config, else $REPUTABLE_CONFIG, else the default path if it exists."""
    if explicit:
        return Path(explicit)
    if environ.get(ENV_VAR):
        return Path(environ[ENV_VAR])
    # lexists: a dangling symlink in /etc is a broken config to report, not "no config".
    return DEFAULT_PATH if os.path.lexists(DEFAULT_PATH) else None


def load_config(explicit: str | None = None, environ: Mapping[str, str] | None = None) -> Config:
    """Read and check the configuration; no file at all gives the embedded defaults.

    Only a regular file is read (symlinks followed), without blocking: a FIFO, a
    directory or a file that is not UTF-8 is a ConfigError like any bad value.
    """
    path = config_path(explicit, os.environ if environ is None else environ)
    if path is None:
        return Config()
    try:
        data = read_regular_file(path).data
    except UnreadableFile as exc:
        allowed = "an existing file" if exc.missing else "a regular file holding the TOML config"
        raise ConfigError([Problem(str(path), "(file)", exc.reason, allowed)]) from None
    try:
        document = tomllib.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError(_not_utf8(str(path), data, exc)) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([Problem(str(path), "(syntax)", "invalid TOML", str(exc))]) from None
    return parse_config(document, str(path))


_UTF8_FIX = "UTF-8 text, as TOML requires; convert the file, e.g. iconv -f latin1 -t utf-8"


def _not_utf8(source: str, data: bytes, exc: UnicodeDecodeError) -> list[Problem]:
    """Each value holding bytes that are not UTF-8 (key, value escaped), else where the first is."""
    try:
        document = tomllib.loads(data.decode("utf-8", "surrogateescape"))
    except tomllib.TOMLDecodeError:
        document = {}  # the bytes are in a key or a comment: say where
    problems = [
        Problem(source, key, f'"{_escaped(value)}"', _UTF8_FIX)
        for key, value in _undecoded(document)
    ]
    if problems:
        return problems
    line = data.count(b"\n", 0, exc.start) + 1
    column = exc.start - data.rfind(b"\n", 0, exc.start)
    where = f"(line {line}, column {column})"
    return [Problem(source, where, f"byte 0x{data[exc.start]:02x}", _UTF8_FIX)]


def _undecoded(table: Mapping[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    for key, value in table.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            found.extend(_undecoded(value, f"{name}."))
        elif isinstance(value, list):
            found.extend((name, v) for v in value if isinstance(v, str) and _has_surrogate(v))
        elif isinstance(value, str) and _has_surrogate(value):
            found.append((name, value))
    return found


def _has_surrogate(text: str) -> bool:
    return any("\udc80" <= c <= "\udcff" for c in text)


def _escaped(text: str) -> str:
    """The value as written, its undecodable bytes shown as \\xNN."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
