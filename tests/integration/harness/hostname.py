"""Run a command as on a host without a mail domain: named "vm", its own /etc/hosts, no /etc/mailname.

Linux namespaces through unshare(1) (the tests run as root): a UTS namespace
for the host name, and a private mount namespace in which bind mounts replace
/etc/hosts and hide /etc/mailname. The mounts and the name vanish with the
command; nothing of the machine changes.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

# What socket.getfqdn() says on host "vm" with each /etc/hosts: the three ways a machine
# installed without a domain names itself.
HOSTS = {
    "localhost": "127.0.0.1 localhost\n127.0.0.1 vm\n",  # Debian cloud images, whose host is named vm
    "vm": "127.0.0.1 localhost\n127.0.1.1 vm\n",  # Debian's installer, no domain given
    "vm.localdomain": "127.0.0.1 localhost\n127.0.1.1 vm.localdomain vm\n",
}

_SCRIPT = (
    'hostname vm && mount --bind "$1" /etc/hosts && '
    '{ [ ! -e /etc/mailname ] || mount --bind "$2" /etc/mailname; } && shift 2 && exec "$@"'
)


def without_domain(command: Sequence[str], fqdn: str, scratch: Path) -> list[str]:
    """`command` wrapped to run on host "vm" whose fully qualified name reads `fqdn`."""
    scratch.mkdir(parents=True, exist_ok=True)
    hosts = scratch / "hosts"
    hosts.write_text(HOSTS[fqdn])
    empty = scratch / "mailname"
    empty.write_text("")
    wrapper = ["unshare", "--uts", "--mount", "sh", "-c", _SCRIPT, "sh", str(hosts), str(empty)]
    return [*wrapper, *command]
