"""This host's sending identity: the IPs mail leaves from and the HELO name it uses. I/O.

Configured values win; else Postfix's own settings when `postconf` answers;
else the source addresses the kernel would pick for the default routes.
"""

from __future__ import annotations

import ipaddress
import shutil
import socket
import subprocess
from dataclasses import dataclass

from reputable.config import Config, IPAddress

# Documentation addresses (RFC 5737, RFC 3849): a UDP connect to them selects
# the default route's source address without sending a packet.
_ROUTE_PROBES = (("192.0.2.1", socket.AF_INET), ("2001:db8::1", socket.AF_INET6))


@dataclass(frozen=True, slots=True)
class SendingIdentity:
    ips: tuple[IPAddress, ...]
    helo: str
    source: str  # where the IPs came from: "config", "postfix" or "routes"


def postconf(*names: str) -> list[str]:
    """Values of Postfix parameters (expanded), or [] when Postfix is not there."""
    command = shutil.which("postconf") or "/usr/sbin/postconf"
    try:
        done = subprocess.run(
            [command, "-hx", *names], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return []
    return done.stdout.splitlines() if done.returncode == 0 else []


def usable(ip: IPAddress) -> bool:
    return not (ip.is_loopback or ip.is_link_local or ip.is_unspecified or ip.is_multicast)


def route_sources() -> list[IPAddress]:
    found: list[IPAddress] = []
    for target, family in _ROUTE_PROBES:
        try:
            with socket.socket(family, socket.SOCK_DGRAM) as probe:
                probe.connect((target, 25))
                ip = ipaddress.ip_address(probe.getsockname()[0])
        except (OSError, ValueError):
            continue
        if usable(ip):
            found.append(ip)
    return found


def postfix_bind_addresses() -> list[IPAddress]:
    found: list[IPAddress] = []
    for value in postconf("smtp_bind_address", "smtp_bind_address6"):
        try:
            ip = ipaddress.ip_address(value.strip())
        except ValueError:
            continue
        if usable(ip):
            found.append(ip)
    return found


def sending_identity(config: Config) -> SendingIdentity:
    helo = config.host.helo_name or _postfix_helo() or socket.getfqdn().lower()
    if config.host.sending_ips:
        return SendingIdentity(config.host.sending_ips, helo, "config")
    bound = postfix_bind_addresses()
    if bound:
        return SendingIdentity(tuple(bound), helo, "postfix")
    return SendingIdentity(tuple(route_sources()), helo, "routes")


def _postfix_helo() -> str:
    values = postconf("smtp_helo_name")
    return values[0].strip().lower() if values and "." in values[0] else ""
