"""What `reputable setup postfix` changes in main.cf for reputable's milter, and what it tells the admin. Pure.

Only main.cf is changed, and only by adding: reputable's milter goes at the
end of smtpd_milters and non_smtpd_milters, next to the milters already there
(OpenDMARC, a spam filter), and milter_default_action and milter_protocol
are written out. Another DKIM signer in the lists is named, with the command
that removes it, but left in: taking it out before reputable is known to sign
would send mail unsigned. master.cf overrides are pointed out (`reputable
check` gives their commands), not rewritten.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from reputable.config import MilterSocket
from reputable.postfix.commands import Commands, line
from reputable.postfix.milters import (
    format_milter_list,
    known_signer,
    names_socket,
    parse_milter_list,
    postfix_address,
)
from reputable.postfix.paths import mail_paths
from reputable.postfix.settings import PostfixSettings

MILTER_LISTS = ("smtpd_milters", "non_smtpd_milters")
# While the milter is down Postfix defers mail (and retries) instead of sending it unsigned;
# 6 is the protocol version reputable speaks (header values keep their leading space).
WANTED = (("milter_default_action", "tempfail"), ("milter_protocol", "6"))
# Debian's usual `non_smtpd_milters = $smtpd_milters`: it follows smtpd_milters.
_FOLLOWS_SMTPD = re.compile(r"\$(\{smtpd_milters\}|\(smtpd_milters\)|smtpd_milters\b)")


@dataclass(frozen=True, slots=True)
class SetupPlan:
    address: str  # reputable's socket as Postfix names it
    changes: tuple[tuple[str, str], ...]  # main.cf (name, value), in the order to set them
    notes: tuple[str, ...]  # for the admin, one line each


def plan_setup(
    settings: PostfixSettings, socket: MilterSocket, commands: Commands | None = None
) -> SetupPlan:
    """The plan for a Postfix whose main.cf reads as `settings`."""
    written = settings.written
    queue = settings.queue_directory
    address = postfix_address(socket, queue)
    changes: list[tuple[str, str]] = []
    for name in MILTER_LISTS:
        entries = parse_milter_list(settings.get(name).value)
        if any(names_socket(e.address, socket, queue) for e in entries):
            continue
        raw = written.get(name, "").strip()
        if name == "non_smtpd_milters" and _FOLLOWS_SMTPD.search(raw):
            continue  # it gets reputable through smtpd_milters
        changes.append((name, _appended(raw, address)))
    changes += [(n, v) for n, v in WANTED if settings.main.get(n) != v]
    after = _applied(settings, address, changes)
    notes = _signer_notes(after, socket, commands or Commands())
    notes += _master_notes(after, socket)
    return SetupPlan(address, tuple(changes), (*notes, *_chroot_notes(after, address)))


def _applied(
    settings: PostfixSettings, address: str, changes: list[tuple[str, str]]
) -> PostfixSettings:
    """The settings as they read once the plan is carried out (lists expanded)."""
    main = dict(settings.main)
    for name, value in changes:
        main[name] = _appended(settings.get(name).value, address) if name in MILTER_LISTS else value
    raw = settings.written.get("non_smtpd_milters", "")
    if _FOLLOWS_SMTPD.search(raw) and "smtpd_milters" in dict(changes):
        main["non_smtpd_milters"] = _appended(settings.get("non_smtpd_milters").value, address)
    return replace(settings, main=main)


def _appended(value: str, address: str) -> str:
    return f"{value}, {address}" if value.strip() else address


def _signer_notes(settings: PostfixSettings, socket: MilterSocket, commands: Commands) -> list[str]:
    notes: list[str] = []
    for name in MILTER_LISTS:
        if name == "non_smtpd_milters" and _FOLLOWS_SMTPD.search(settings.written.get(name, "")):
            continue
        entries = parse_milter_list(settings.get(name).value)
        others = [e for e in entries if known_signer(e.address)]
        if not others or not any(
            names_socket(e.address, socket, settings.queue_directory) for e in entries
        ):
            continue
        kept = [e for e in entries if e not in others]
        for entry in others:
            notes.append(
                f"{entry.address} ({known_signer(entry.address)}) is also in {name}: until it "
                "goes, mail is signed twice. Once reputable signs (reputable check, then a test "
                "message), remove it with:"
            )
        notes.append("  " + line(commands.set(name, format_milter_list(kept))))
    return notes


def _master_notes(settings: PostfixSettings, socket: MilterSocket) -> list[str]:
    notes: list[str] = []
    for path in mail_paths(settings):
        if path.reinjection:
            continue
        if path.milters_off:
            reason = f"receive_override_options = {path.receive_options.value}"
        elif path.ours(socket, settings.queue_directory) is None:
            reason = f"{path.milter_parameter} = {path.milters.value or '(empty)'}"
        else:
            continue
        origin = (path.receive_options if path.milters_off else path.milters).source or "main.cf"
        notes.append(
            f"mail through {path.label} will still not reach reputable ({reason}, "
            f"from {origin}): reputable check gives the command"
        )
    return notes


def _chroot_notes(settings: PostfixSettings, address: str) -> list[str]:
    """An absolute socket path outside the queue directory is out of a chrooted daemon's reach."""
    if not address.startswith("unix:/"):
        return []
    chrooted = [p for p in mail_paths(settings) if p.chroot and not p.milters_off]
    if not chrooted:
        return []
    queue = settings.queue_directory
    labels = ", ".join(p.label for p in chrooted)
    return [
        f"{labels} run chrooted in {queue} (master.cf) and cannot reach {address[5:]}: "
        f'put the socket inside it ([milter] socket = "unix:{queue}/reputable/milter.sock")'
    ]
