"""The ways mail enters Postfix, and the milter settings each one runs with. Pure.

SMTP mail passes the smtpd_milters of the smtpd service that receives it (in
a postscreen set-up, the `smtpd pass` service); mail from sendmail (postdrop,
then pickup) passes the non_smtpd_milters, which the cleanup service applies.
A master.cf `-o` wins over main.cf for its service, and
`receive_override_options = no_milters` turns the milters off for the
service (smtpd, pickup) that receives the mail.

A content filter's way back in is an smtpd on a loopback address with no
content_filter of its own while other paths have one: the layout of
Postfix's FILTER_README and of amavis (127.0.0.1:10025). There the milters
must be off, or every message passes them twice.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, replace
from enum import StrEnum

from reputable.config import MilterSocket
from reputable.postfix.commands import MAIN_CF, Commands
from reputable.postfix.milters import (
    MilterEntry,
    format_milter_list,
    names_socket,
    parse_milter_list,
    postfix_address,
)
from reputable.postfix.settings import PostfixSettings, Service, Setting, words


class Entry(StrEnum):
    SMTPD = "smtpd"
    SENDMAIL = "sendmail"


@dataclass(frozen=True, slots=True)
class MailPath:
    service: Service  # the receiving service: an smtpd, or pickup for sendmail
    entry: Entry
    milters: Setting  # smtpd_milters, or non_smtpd_milters (of cleanup)
    default_action: Setting
    protocol: Setting
    receive_options: Setting  # receive_override_options
    content_filter: Setting
    chroot: bool  # whether the daemon that connects to the milters (smtpd, cleanup) is chrooted
    reinjection: bool = False

    @property
    def milter_parameter(self) -> str:
        return "smtpd_milters" if self.entry is Entry.SMTPD else "non_smtpd_milters"

    @property
    def milters_off(self) -> bool:
        return "no_milters" in words(self.receive_options.value)

    @property
    def entries(self) -> tuple[MilterEntry, ...]:
        return parse_milter_list(self.milters.value)

    @property
    def label(self) -> str:
        """How a summary names it: "submission/inet", "pickup/unix (sendmail)"."""
        suffix = " (sendmail)" if self.entry is Entry.SENDMAIL else ""
        return self.service.key + suffix

    def ours(self, socket: MilterSocket, queue_directory: str) -> MilterEntry | None:
        """reputable's entry in this path's milter list, if it has one."""
        return next(
            (e for e in self.entries if names_socket(e.address, socket, queue_directory)), None
        )


def mail_paths(settings: PostfixSettings) -> tuple[MailPath, ...]:
    """Every smtpd service of master.cf, then sendmail's way in (pickup and cleanup)."""
    paths = [_smtpd_path(settings, s) for s in settings.services if s.command == "smtpd"]
    paths.append(_sendmail_path(settings))
    filtered = any(p.content_filter.value for p in paths)
    return tuple(replace(p, reinjection=filtered and _reinjects(p)) for p in paths)


def _smtpd_path(settings: PostfixSettings, smtpd: Service) -> MailPath:
    def get(name: str) -> Setting:
        return settings.get(name, smtpd)

    return MailPath(
        smtpd,
        Entry.SMTPD,
        get("smtpd_milters"),
        get("milter_default_action"),
        get("milter_protocol"),
        get("receive_override_options"),
        get("content_filter"),
        smtpd.chroot,
    )


def _sendmail_path(settings: PostfixSettings) -> MailPath:
    pickup = settings.service("pickup/unix") or Service("pickup", "unix", False, "pickup")
    cleanup = settings.service("cleanup/unix") or Service("cleanup", "unix", False, "cleanup")
    return MailPath(
        pickup,
        Entry.SENDMAIL,
        settings.get("non_smtpd_milters", cleanup),
        settings.get("milter_default_action", cleanup),
        settings.get("milter_protocol", cleanup),
        settings.get("receive_override_options", pickup),
        settings.get("content_filter", pickup),
        cleanup.chroot,
    )


def _reinjects(path: MailPath) -> bool:
    return (
        path.entry is Entry.SMTPD and not path.content_filter.value and binds_loopback(path.service)
    )


def binds_loopback(service: Service) -> bool:
    """An inet service named `127.0.0.1:10025`, `[::1]:10025` or `localhost:10025`."""
    host, colon, _port = service.name.rpartition(":")
    if service.type != "inet" or not colon:
        return False
    host = host.removeprefix("[").removesuffix("]").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True, slots=True)
class PostfixView:
    """One Postfix instance's ways in, as seen from reputable's socket."""

    settings: PostfixSettings
    socket: MilterSocket
    commands: Commands
    paths: tuple[MailPath, ...]

    @property
    def queue_directory(self) -> str:
        return self.settings.queue_directory

    @property
    def address(self) -> str:
        """reputable's socket as Postfix should name it."""
        return postfix_address(self.socket, self.queue_directory)

    def ours(self, path: MailPath) -> MilterEntry | None:
        return path.ours(self.socket, self.queue_directory)

    def set_milters(self, path: MailPath, entries: tuple[MilterEntry, ...]) -> list[str]:
        """The command that makes `entries` the milter list where the path's list comes from.

        A main.cf `non_smtpd_milters = $smtpd_milters` (Debian's habit) is kept:
        the change then goes to smtpd_milters, which it follows.
        """
        source = path.milters.source
        compact = source not in ("", MAIN_CF)
        value = format_milter_list(entries, compact=compact)
        name = path.milter_parameter
        if not compact and follows_smtpd_milters(self.settings.written.get(name, "")):
            name = "smtpd_milters"
        if not value and not compact:
            return self.commands.unset(name)  # empty is Postfix's default for both lists
        return self.commands.set(name, value, source)


def follows_smtpd_milters(written: str) -> bool:
    """A non_smtpd_milters value that is just a reference to smtpd_milters."""
    return written.strip() in ("$smtpd_milters", "${smtpd_milters}", "$(smtpd_milters)")


def view_postfix(
    settings: PostfixSettings, socket: MilterSocket, commands: Commands | None = None
) -> PostfixView:
    return PostfixView(settings, socket, commands or Commands(), mail_paths(settings))
