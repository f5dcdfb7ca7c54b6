"""A Postfix configuration directory that `postconf -c DIR` reads, with no Postfix running.

For the tests of `reputable setup postfix` and of the postfix.* check rows:
main.cf and master.cf as a Debian 12 server has them (smtpd, pickup and
cleanup chrooted), a queue directory of its own beside them, and whatever
main.cf lines and master.cf services a test adds. The files are backdated
after every change: Postfix waits ~2 s for a file modified within the last
second to settle (util/load_file.c), on every command.
"""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from reputable.postfix.settings import parse_parameters

POSTCONF = "/usr/sbin/postconf"

DEBIAN_MASTER = """\
smtp      inet  n       -       y       -       -       smtpd
pickup    unix  n       -       y       60      1       pickup
cleanup   unix  n       -       y       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       y       -       -       trivial-rewrite
bounce    unix  -       -       y       -       0       bounce
smtp      unix  -       -       y       -       -       smtp
"""


@dataclass(frozen=True)
class PostfixDir:
    config: Path  # config_directory: main.cf, master.cf
    queue: Path  # queue_directory

    @classmethod
    def make(cls, parent: Path, main: str = "", master: str = DEBIAN_MASTER) -> PostfixDir:
        made = cls(parent / "etc", parent / "spool")
        made.config.mkdir(parents=True)
        made.queue.mkdir()
        made.main_cf.write_text(
            f"compatibility_level = 3.6\nqueue_directory = {made.queue}\n"
            f"myhostname = mail.example.com\n{main}"
        )
        (made.config / "master.cf").write_text(master)
        made.settle()
        return made

    @property
    def main_cf(self) -> Path:
        return self.config / "main.cf"

    def settle(self) -> None:
        """Backdate main.cf and master.cf, so that Postfix reads them without waiting."""
        past = time.time() - 60
        for name in ("main.cf", "master.cf"):
            os.utime(self.config / name, (past, past))

    def postconf(self, *args: str) -> str:
        self.settle()
        done = subprocess.run(
            [POSTCONF, "-c", str(self.config), *args],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        return done.stdout

    def written(self) -> dict[str, str]:
        """main.cf as Postfix reads it (postconf -n)."""
        return parse_parameters(self.postconf("-n"))

    def run_fix(self, fix: str) -> None:
        """Run a check row's fix, all but its reload (this Postfix does not run)."""
        reload = f" && postfix -c {self.config} reload"
        assert fix.endswith(reload), fix
        subprocess.run(
            ["sh", "-c", fix.removesuffix(reload)],
            check=True,
            timeout=60,
            env={**os.environ, "PATH": f"/usr/sbin:{os.environ.get('PATH', '/usr/bin:/bin')}"},
        )
        self.settle()
