"""The milter's unix socket: its directory, owner, group and mode, and its removal. I/O.

Postfix's smtpd runs as the `postfix` user, often chrooted into its queue
directory, so the socket must live where it can reach (a directory it may
search) and belong to a group it is in, with no access for anyone else: then
no other local user can have mail signed. A directory the milter creates is
made setgid in `socket_group`, so that the socket made in it gets that group
even when the milter runs as an unprivileged user that is not in the group.
"""

from __future__ import annotations

import asyncio
import errno
import grp
import logging
import os
import pwd
import socket
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from reputable.config import Config
from reputable.errors import ConfigError, Problem
from reputable.log import Field, emit, logger

_log = logger("milter")
DIRECTORY_MODE = 0o750
UNCHANGED = -1  # os.chown's "leave this id as it is"


@dataclass(frozen=True, slots=True)
class Ownership:
    """Who the socket belongs to: ids (UNCHANGED where not configured) and mode."""

    uid: int
    gid: int
    mode: int
    owner: str  # the configured names, for messages
    group: str


def resolve_ownership(config: Config) -> Ownership:
    """The configured owner and group as ids; an unknown name stops the start (ConfigError)."""
    milter = config.milter
    problems: list[Problem] = []
    uid = gid = UNCHANGED
    if milter.socket_owner:
        try:
            uid = pwd.getpwnam(milter.socket_owner).pw_uid
        except KeyError:
            allowed = "an existing user (none has this name: `getent passwd` lists them)"
            problems.append(_problem(config, "socket_owner", milter.socket_owner, allowed))
    if milter.socket_group:
        try:
            gid = grp.getgrnam(milter.socket_group).gr_gid
        except KeyError:
            allowed = (
                "an existing group (none has this name): the group Postfix runs as, "
                '"postfix" once Postfix is installed; or "" to keep the milter\'s own'
            )
            problems.append(_problem(config, "socket_group", milter.socket_group, allowed))
    if problems:
        raise ConfigError(problems)
    return Ownership(uid, gid, milter.socket_mode, milter.socket_owner, milter.socket_group)


def _problem(config: Config, key: str, value: str, allowed: str) -> Problem:
    return Problem(config.source, f"milter.{key}", f'"{value}"', allowed)


def prepare_directory(config: Config, directory: Path, ownership: Ownership) -> None:
    """Create a missing socket directory: mode 0750, setgid in the socket's group.

    Missing parents are made 0755 (whatever the umask: systemd's UMask=0027
    would otherwise hide them from Postfix). An existing directory is the
    admin's and is left as it is.
    """
    if directory.is_dir():
        return
    for parent in reversed(directory.parents):
        if not parent.exists():
            parent.mkdir()
            parent.chmod(0o755)
    directory.mkdir()
    mode = DIRECTORY_MODE
    if ownership.uid != UNCHANGED or ownership.gid != UNCHANGED:
        try:
            os.chown(directory, ownership.uid, ownership.gid)
        except PermissionError:
            directory.rmdir()
            raise ConfigError([_not_permitted(config, directory, ownership, directory)]) from None
        if ownership.gid != UNCHANGED:
            mode |= stat.S_ISGID
    directory.chmod(mode)


def _not_permitted(config: Config, path: Path, ownership: Ownership, directory: Path) -> Problem:
    me = pwd.getpwuid(os.geteuid()).pw_name
    owner = ownership.owner or me
    group = ownership.group or grp.getgrgid(os.getegid()).gr_name
    key, value = ("socket_group", group) if ownership.group else ("socket_owner", owner)
    allowed = (
        f"user {me} may not give {path} to {owner}:{group}; as root, make its directory "
        f"once (the socket then takes the directory's group): "
        f"install -d -o {owner} -g {group} -m 2750 {directory}"
    )
    return _problem(config, key, value, allowed)


async def open_unix(
    config: Config, factory: Callable[[], asyncio.BaseProtocol]
) -> tuple[asyncio.Server, os.stat_result]:
    """Listen on the configured unix socket, owned and moded as configured.

    A stale socket is replaced; one that still answers belongs to a running
    milter and is an error (EADDRINUSE), not something to take over. Returns
    the server and the socket file's stat, by which `remove_socket` knows it.
    """
    ownership = resolve_ownership(config)
    where = Path(config.milter.socket.path)
    prepare_directory(config, where.parent, ownership)
    try:
        if stat.S_ISSOCK(where.lstat().st_mode):
            if _answers(str(where)):
                raise OSError(errno.EADDRINUSE, "another process listens on it")
            where.unlink()
    except FileNotFoundError:
        pass
    # The socket is born with no more access than configured: no window in which others connect.
    old_umask = os.umask(0o777 & ~ownership.mode)
    try:
        server = await asyncio.get_running_loop().create_unix_server(
            factory, str(where), backlog=256
        )
    finally:
        os.umask(old_umask)
    try:
        _own(config, where, ownership)
    except BaseException:
        server.close()
        where.unlink(missing_ok=True)
        raise
    _warn_if_unreachable(where, ownership)
    return server, where.lstat()


def _own(config: Config, where: Path, ownership: Ownership) -> None:
    now = where.lstat()
    wanted_uid = now.st_uid if ownership.uid == UNCHANGED else ownership.uid
    wanted_gid = now.st_gid if ownership.gid == UNCHANGED else ownership.gid
    if (wanted_uid, wanted_gid) != (now.st_uid, now.st_gid):
        try:
            os.chown(where, ownership.uid, ownership.gid)
        except PermissionError:
            raise ConfigError([_not_permitted(config, where, ownership, where.parent)]) from None
    os.chmod(where, ownership.mode)


def _answers(path: str) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(1.0)
        try:
            probe.connect(path)
        except OSError:
            return False
        return True


def _warn_if_unreachable(where: Path, ownership: Ownership) -> None:
    """Log when the socket's group cannot search a directory on the way to it.

    Postfix then fails with "Permission denied" on every message: say so at start.
    """
    if ownership.gid == UNCHANGED:
        return
    for directory in where.parents:
        info = directory.stat()
        if info.st_mode & stat.S_IXOTH:
            continue
        if info.st_gid == ownership.gid and info.st_mode & stat.S_IXGRP:
            continue
        fix = f"chgrp {ownership.group} {directory} && chmod g+x {directory}"
        detail = f"group {ownership.group} cannot search {directory}: connections will be refused"
        emit(
            _log,
            logging.WARNING,
            {Field.EVENT: "socket_unreachable", Field.DETAIL: detail, Field.FIX: fix},
        )
        return


def remove_socket(path: str, made: os.stat_result) -> None:
    """Remove the socket file on a clean stop, unless another process has replaced it since."""
    try:
        now = os.lstat(path)
    except FileNotFoundError:
        return
    if (now.st_dev, now.st_ino) == (made.st_dev, made.st_ino):
        os.unlink(path)
