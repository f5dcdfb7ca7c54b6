"""Postfix's settings as data, parsed from postconf's output (-n, -d, -M, -P). Pure.

main.cf values come from `postconf -nx` (and as written, `$name` unexpanded,
from `postconf -n`), Postfix's defaults from `postconf -dx`, master.cf
services from `postconf -M` and their `-o` overrides from `postconf -Px`:
always Postfix's own reading of its files, never ours.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

# The parameters the setup and the checks look at: their defaults are asked of postconf -d.
PARAMETERS = (
    "queue_directory",
    "mail_owner",
    "smtpd_milters",
    "non_smtpd_milters",
    "milter_default_action",
    "milter_protocol",
    "receive_override_options",
    "content_filter",
)


@dataclass(frozen=True, slots=True)
class Service:
    """One master.cf line, as `postconf -M` prints it."""

    name: str  # "smtp", "submission", "127.0.0.1:10025"
    type: str  # "inet", "unix", "pass", ...
    chroot: bool  # "-" is "n" since Postfix 3.0
    command: str  # the daemon: "smtpd", "pickup", "cleanup", ...

    @property
    def key(self) -> str:
        """The service as postconf -P names it: "submission/inet"."""
        return f"{self.name}/{self.type}"


@dataclass(frozen=True, slots=True)
class Setting:
    """A parameter's value in effect, and where it comes from (for the fix)."""

    value: str
    source: str  # "" (Postfix's default), "main.cf" or a master.cf service key "smtp/inet"


@dataclass(frozen=True, slots=True)
class PostfixSettings:
    main: Mapping[str, str]  # main.cf, expanded (postconf -nx)
    defaults: Mapping[str, str]  # Postfix's defaults of PARAMETERS (postconf -dx)
    services: tuple[Service, ...] = ()
    # service key ("smtp/inet") -> its -o parameters (postconf -Px)
    overrides: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    written: Mapping[str, str] = field(default_factory=dict)  # main.cf unexpanded (postconf -n)

    def get(self, name: str, service: Service | None = None) -> Setting:
        """A parameter as `service` (or, without one, main.cf) sees it."""
        if service is not None and name in self.overrides.get(service.key, {}):
            return Setting(self.overrides[service.key][name], service.key)
        if name in self.main:
            return Setting(self.main[name], "main.cf")
        return Setting(self.defaults.get(name, ""), "")

    def service(self, key: str) -> Service | None:
        return next((s for s in self.services if s.key == key), None)

    @property
    def queue_directory(self) -> str:
        return self.get("queue_directory").value or "/var/spool/postfix"


def parse_parameters(text: str) -> dict[str, str]:
    """`name = value` lines (postconf -n, -d, or with names) as a dict; "name =" is empty."""
    found: dict[str, str] = {}
    for line in text.splitlines():
        name, equals, value = line.partition("=")
        if equals and name.strip() and not line[:1].isspace():
            found[name.strip()] = value.strip()
    return found


def parse_services(text: str) -> tuple[Service, ...]:
    """`postconf -M` lines: eight columns, the last one the command and its arguments."""
    found: list[Service] = []
    for line in text.splitlines():
        fields = line.split(None, 7)
        if len(fields) < 8 or line[:1].isspace() or line.startswith("#"):
            continue  # a blank line, or a continuation (postconf -Mf folds -o onto its own lines)
        name, kind, _private, _unprivileged, chroot, _wakeup, _max, command = fields
        found.append(Service(name, kind, chroot == "y", command.split()[0]))
    return tuple(found)


def parse_overrides(text: str) -> dict[str, dict[str, str]]:
    """`postconf -P` lines, "service/type/name = value", per service key."""
    found: dict[str, dict[str, str]] = {}
    for path, value in parse_parameters(text).items():
        service, slash, name = path.rpartition("/")
        if slash and service:
            found.setdefault(service, {})[name] = value
    return found


def parse_settings(
    main: str, defaults: str, services: str, overrides: str, written: str = ""
) -> PostfixSettings:
    """The postconf answers (-nx, -dx PARAMETERS, -M, -Px, -n) as one PostfixSettings."""
    return PostfixSettings(
        parse_parameters(main),
        parse_parameters(defaults),
        parse_services(services),
        parse_overrides(overrides),
        parse_parameters(written),
    )


def words(value: str) -> tuple[str, ...]:
    """A Postfix list value (commas and/or white space between items) as its items."""
    return tuple(value.replace(",", " ").split())
