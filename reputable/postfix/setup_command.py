"""`reputable setup postfix`: print, or with --apply run, the main.cf settings that pass mail to reputable. I/O.

The printed lines are a shell script (notes are comments); --apply runs the
very same postconf command, after a backup of main.cf that never replaces an
earlier one, shows the change as a diff and reloads a running Postfix.
"""

from __future__ import annotations

import difflib
import grp
import os
import pwd
import sys
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import TextIO

from reputable.config import Config
from reputable.postfix.commands import Commands, folded, line
from reputable.postfix.milters import Endpoint, UnixEndpoint, parse_endpoint, postfix_address
from reputable.postfix.plan import SetupPlan, plan_setup
from reputable.postfix.postconf import Postfix, PostfixError
from reputable.postfix.probe import Reach, probe
from reputable.postfix.settings import PostfixSettings

# As the Debian package's postinst makes it: the milter's user writes the
# socket, group postfix may only enter, and setgid gives the socket that group.
DIRECTORY_MODE = 0o2750
PACKAGE_USER = "reputable"  # the user the packaged service runs as (reputable.service)


def setup_postfix_command(
    config: Config,
    postfix_config: str | None,
    apply: bool,
    out: TextIO = sys.stdout,
    now: datetime | None = None,
) -> int:
    postfix = Postfix(Commands(postfix_config))
    plan = plan_setup(_read_settings(postfix), config.milter.socket, postfix.commands)
    directory = _missing_directory(config)
    socket = config.milter.socket
    print(f"# reputable listens on {socket.libmilter}; Postfix names it {plan.address}", file=out)
    silent = _silent_milter(config)
    if not apply:
        if directory is not None:
            plan = replace(plan, notes=(*plan.notes, _directory_note(config, directory)))
        _print_plan(plan, postfix.commands, out)
    else:
        changed = _apply(postfix, plan, out, now or datetime.now())
        if directory is not None:
            _make_directory(config, directory, out)
        for note in plan.notes:
            print(f"# {note}", file=out)
        if changed:
            _reload(postfix, out)
    if silent:
        print(f"# {silent}", file=out)
    return 0


def _silent_milter(config: Config) -> str:
    """A note when reputable does not answer yet: Postfix will defer mail until it does."""
    socket = config.milter.socket
    endpoint: Endpoint | None = UnixEndpoint(socket.path)
    if socket.kind != "unix":
        endpoint = parse_endpoint(postfix_address(socket, queue_directory=""))
    if endpoint is None:
        return ""
    found = probe(endpoint, socket.path)
    if found.reach in (Reach.LISTENING, Reach.DENIED):
        return ""
    return (
        f"reputable does not answer on {socket.libmilter} yet ({found.detail or found.reach}): "
        "until it does, Postfix defers mail (kept, and retried): systemctl start reputable"
    )


def _read_settings(postfix: Postfix) -> PostfixSettings:
    try:
        return postfix.read_settings()
    except PostfixError as exc:
        if not str(exc).endswith("main.cf: No such file or directory"):
            raise
        where = postfix.commands.config_dir
        hint = (
            f"is {where} a Postfix configuration directory?"
            if where
            else "Postfix is not set up yet (dpkg-reconfigure postfix), then run this again"
        )
        raise PostfixError(f"{exc}: {hint}") from None


def shown(argv: list[str]) -> str:
    """The postconf -e command as printed: one setting a line."""
    return folded(argv, argv.index("-e") + 1)


def _print_plan(plan: SetupPlan, commands: Commands, out: TextIO) -> None:
    if not plan.changes:
        print("# main.cf already has reputable's settings: nothing to change", file=out)
    else:
        print(shown(commands.edit_main(plan.changes)), file=out)
    for note in plan.notes:
        print(f"# {note}", file=out)
    if plan.changes:
        print("# reputable setup postfix --apply runs it (main.cf backed up first)", file=out)
        print(f"# and then: {line(commands.reload())}", file=out)


def _apply(postfix: Postfix, plan: SetupPlan, out: TextIO, now: datetime) -> bool:
    if not plan.changes:
        print("# main.cf already has reputable's settings: nothing changed", file=out)
        return False
    main_cf = postfix.main_cf()
    try:
        before = main_cf.read_bytes()
        backup = write_backup(main_cf, before, now)
    except OSError as exc:
        raise PostfixError(
            f"cannot back up {main_cf}: {exc.strerror or exc} (--apply changes Postfix's "
            "configuration: run it as root)"
        ) from None
    print(f"# main.cf backed up to {backup}", file=out)
    argv = postfix.commands.edit_main(plan.changes)
    print(shown(argv), file=out)
    try:
        postfix.check(argv)
    except PostfixError as exc:
        raise PostfixError(f"{exc} (main.cf as it was: {backup})") from None
    after = main_cf.read_bytes()
    diff = difflib.unified_diff(
        before.decode("utf-8", "replace").splitlines(keepends=True),
        after.decode("utf-8", "replace").splitlines(keepends=True),
        str(backup),
        str(main_cf),
    )
    out.writelines(diff)
    return True


def write_backup(main_cf: Path, content: bytes, now: datetime) -> Path:
    """main.cf.reputable-YYYYMMDDHHMMSS beside main.cf; -2, -3, ... rather than replace one."""
    stem = f"{main_cf.name}.reputable-{now:%Y%m%d%H%M%S}"
    mode = main_cf.stat().st_mode & 0o777
    for number in range(1, 1000):
        backup = main_cf.with_name(stem if number == 1 else f"{stem}-{number}")
        try:
            descriptor = os.open(backup, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        except FileExistsError:
            continue
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(content)
        return backup
    raise PostfixError(f"too many backups of {main_cf} made this second")


def _reload(postfix: Postfix, out: TextIO) -> None:
    if not postfix.is_running():
        print("# Postfix is not running: the settings take effect when it starts", file=out)
        return
    postfix.reload()
    print("# Postfix reloaded: the settings are in effect", file=out)


def _missing_directory(config: Config) -> Path | None:
    socket = config.milter.socket
    if socket.kind != "unix":
        return None
    directory = Path(socket.path).parent
    return None if directory.is_dir() else directory


def _ownership(config: Config) -> tuple[str, str]:
    """Who the socket's directory belongs to: the milter's user, and group postfix."""
    milter = config.milter
    return milter.socket_owner or PACKAGE_USER, milter.socket_group or "postfix"


def _install_command(config: Config, directory: Path) -> str:
    owner, group = _ownership(config)
    return line(["install", "-d", "-o", owner, "-g", group, "-m", "2750", str(directory)])


def _directory_note(config: Config, directory: Path) -> str:
    return (
        f"the socket's directory {directory} is missing: --apply as root makes it "
        f"({_install_command(config, directory)})"
    )


def _make_directory(config: Config, directory: Path, out: TextIO) -> None:
    owner, group = _ownership(config)
    try:
        uid, gid = pwd.getpwnam(owner).pw_uid, grp.getgrnam(group).gr_gid
    except KeyError:
        print(
            f"# {directory} is missing, and user {owner} or group {group} does not exist: "
            "set [milter] socket_owner and socket_group, or make it by hand",
            file=out,
        )
        return
    if os.geteuid() != 0:
        print(f"# {directory} is missing; as root: {_install_command(config, directory)}", file=out)
        return
    try:
        for parent in reversed(directory.parents):
            if not parent.exists():
                parent.mkdir()
                parent.chmod(0o755)  # whatever the umask: Postfix must get through
        directory.mkdir()
        os.chown(directory, uid, gid)
        directory.chmod(DIRECTORY_MODE)  # after chown, which clears setgid
    except OSError as exc:
        raise PostfixError(f"cannot make {directory}: {exc.strerror or exc}") from None
    print(f"# made {directory} ({owner}:{group}, mode 2750) for the socket", file=out)
