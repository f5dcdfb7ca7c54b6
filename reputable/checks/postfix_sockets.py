"""Whether the milters Postfix names answer where Postfix looks for them (`postfix.milter.*`). Pure.

Postfix daemons work in queue_directory, so a relative unix path is under it;
a chrooted daemon (master.cf) finds an absolute path under it too. The probes
(reputable.postfix.probe) are made by the caller, one per place, and come in
as data keyed by that place.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from reputable.checks.findings import Finding, Status
from reputable.postfix.milters import (
    Endpoint,
    MilterEntry,
    UnixEndpoint,
    names_socket,
    parse_endpoint,
    seen_path,
)
from reputable.postfix.paths import MailPath, PostfixView
from reputable.postfix.probe import Probe, Reach

_WHAT_POSTFIX_DOES = {
    "tempfail": "Postfix defers it (4xx) until the milter answers",
    "accept": "Postfix passes it on without this milter",
    "reject": "Postfix rejects it",
    "quarantine": "Postfix puts it on hold",
}
_WHY = {Reach.MISSING: "no such socket", Reach.REFUSED: "connection refused"}


@dataclass(frozen=True, slots=True)
class SocketTarget:
    """One place a Postfix daemon connects to for a milter."""

    endpoint: Endpoint
    where: str  # unix: the file the daemon opens; inet: "host:port"


@dataclass(frozen=True, slots=True)
class _Use:
    path: MailPath
    entry: MilterEntry
    where: str


def target_of(view: PostfixView, path: MailPath, endpoint: Endpoint) -> SocketTarget:
    if isinstance(endpoint, UnixEndpoint):
        return SocketTarget(endpoint, seen_path(endpoint.path, view.queue_directory, path.chroot))
    host = f"[{endpoint.host}]" if ":" in endpoint.host else endpoint.host
    return SocketTarget(endpoint, f"{host}:{endpoint.port}")


def socket_targets(view: PostfixView) -> list[SocketTarget]:
    """Every place to probe, once each, for the milters of the ways in that run them."""
    found: dict[str, SocketTarget] = {}
    for path in view.paths:
        for entry in () if path.milters_off else path.entries:
            endpoint = parse_endpoint(entry.address)
            if endpoint is not None:
                target = target_of(view, path, endpoint)
                found.setdefault(target.where, target)
    return list(found.values())


def socket_findings(view: PostfixView, probes: Mapping[str, Probe]) -> list[Finding]:
    uses: dict[str, list[_Use]] = {}
    for path in view.paths:
        for entry in () if path.milters_off else path.entries:
            endpoint = parse_endpoint(entry.address)
            where = target_of(view, path, endpoint).where if endpoint else ""
            uses.setdefault(entry.address, []).append(_Use(path, entry, where))
    return [_socket_finding(view, address, used, probes) for address, used in uses.items()]


def _socket_finding(
    view: PostfixView, address: str, uses: list[_Use], probes: Mapping[str, Probe]
) -> Finding:
    ident = f"postfix.milter.{address}"
    if parse_endpoint(address) is None:
        summary = f"{address}: Postfix connects only to unix:PATH or inet:HOST:PORT"
        return Finding(ident, Status.WARN, summary, _take_out(view, address, uses))
    probed = [(use, probes.get(use.where, Probe(Reach.ERROR, "not probed"))) for use in uses]
    down = [(u, p) for u, p in probed if p.reach in (Reach.MISSING, Reach.REFUSED, Reach.TIMEOUT)]
    if down:
        return _down(view, address, down)
    unsure = [(u, p) for u, p in probed if p.reach is not Reach.LISTENING]
    if unsure:
        use, probe = unsure[0]
        summary = f"could not check {address} at {use.where}"
        if probe.reach is Reach.DENIED:  # not the answer Postfix gets: unknown, not a fault
            return Finding(ident, Status.UNKNOWN, f"{summary} (permission denied): run as root")
        return Finding(ident, Status.WARN, f"{summary}: {probe.detail}")
    places = ", ".join(dict.fromkeys(u.where for u in uses))
    labels = ", ".join(dict.fromkeys(u.path.label for u in uses))
    return Finding(ident, Status.OK, f"{address} answers at {places} (for {labels})")


def _down(view: PostfixView, address: str, down: list[tuple[_Use, Probe]]) -> Finding:
    use, probe = down[0]
    why = _WHY.get(probe.reach, probe.detail or probe.reach.value)
    action = use.entry.option("default_action") or use.path.default_action.value
    labels = ", ".join(dict.fromkeys(u.path.label for u, _ in down))
    what = _WHAT_POSTFIX_DOES.get(action, f"Postfix does {action!r}")
    summary = f"nothing listens on {use.where} ({why}): for mail through {labels}, {what}"
    endpoint = parse_endpoint(address)
    chroot_trap = (
        isinstance(endpoint, UnixEndpoint)
        and endpoint.path.startswith("/")
        and any(u.path.chroot for u, _ in down)
    )
    if chroot_trap:
        summary += (
            f" (the daemon is chrooted in {view.queue_directory}, so {address} is {use.where})"
        )
    uses = [u for u, _ in down]
    if names_socket(address, view.socket, view.queue_directory):
        fix = _start_ours(view, uses, chroot_trap)
    else:
        fix = "start the milter that should listen there, or take it out: "
        fix += _take_out(view, address, uses)
    return Finding(f"postfix.milter.{address}", Status.FAIL, summary, fix)


def _start_ours(view: PostfixView, uses: list[_Use], chroot_trap: bool) -> str:
    if not chroot_trap:
        return (
            "start reputable: systemctl start reputable "
            "(journalctl -u reputable says why it stopped)"
        )
    if view.address.startswith("unix:/"):
        return (
            f"chrooted daemons see only {view.queue_directory}: move the socket into it "
            f'([milter] socket = "unix:{view.queue_directory}/reputable/milter.sock"), '
            "then run: reputable setup postfix --apply"
        )
    ours = MilterEntry(view.address)
    commands = [
        view.set_milters(u.path, tuple(ours if e == u.entry else e for e in u.path.entries))
        for u in uses
    ]
    return "name it relative to the queue directory: " + view.commands.fix(*commands)


def _take_out(view: PostfixView, address: str, uses: list[_Use]) -> str:
    commands = [
        view.set_milters(u.path, tuple(e for e in u.path.entries if e.address != address))
        for u in uses
    ]
    return view.commands.fix(*commands)
