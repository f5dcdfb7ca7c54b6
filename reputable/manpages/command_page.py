"""reputable(8): the command reference from the parser, and its hand-written sections. Pure.

NAME, SYNOPSIS, OPTIONS and COMMANDS follow `Sources.parser` by themselves;
DESCRIPTION, FILES, SIGNALS, EXIT STATUS and ENVIRONMENT are written here, with
the paths, codes and names they mention taken from the sources where those live.
"""

from __future__ import annotations

from reputable.manpages.commands import Command, arguments, sentence, synopsis, walk_commands
from reputable.manpages.roff import (
    arg,
    code,
    entries,
    escape,
    line,
    paragraphs,
    prose,
    see_also,
    title,
)
from reputable.manpages.sources import Sources

# The Debian package's socket (conf/reputable.toml shows it; the built-in default is TCP).
DEBIAN_SOCKET = "/var/spool/postfix/reputable/milter.sock"
# reputable.milter.server.STOP_GRACE_S; that module needs pymilter, so a test holds the two equal.
STOP_GRACE_S = 30


def reputable_8(sources: Sources, date: str) -> str:
    parser, prog = sources.parser, sources.parser.prog
    commands = list(walk_commands(parser))
    parents = {c.path[:-1] for c in commands}
    lines = title(prog, 8, date, sources.version, "System Manager's Manual")
    lines += [".SH NAME", line(f"{code(prog)} \\- {escape(_WHAT)}"), ".SH SYNOPSIS"]
    for command in [Command((), "", parser), *(c for c in commands if c.path not in parents)]:
        lines += [
            *([".br"] if command.path else []),
            line(synopsis(command.parser, [prog, *command.path])),
        ]
    lines += [".SH DESCRIPTION", *paragraphs(_description(sources))]
    lines += [".SH OPTIONS", *arguments(parser, with_help=True), ".SH COMMANDS"]
    lines += paragraphs(["Every command also takes -h, --help: its own usage."])
    for command in commands:
        lines += [f".SS {arg(code(' '.join(command.path)))}"]
        lines += [line(synopsis(command.parser, [prog, *command.path]))]
        lines += [".PP", line(prose(sentence(command.help)))] if command.help else []
        lines += arguments(command.parser)
    lines += [".SH FILES", *entries(_files(sources), ".I"), ".SH SIGNALS", *entries(_SIGNALS)]
    lines += [".SH EXIT STATUS", *entries(_exit_statuses(sources))]
    lines += [".SH ENVIRONMENT", *entries(_environment(sources)), ".SH SEE ALSO"]
    lines += see_also(["reputable.toml(5)", "postconf(5)", "opendkim(8)"])
    return "\n".join(lines) + "\n"


_WHAT = "DKIM-signing mail filter that keeps a self-hosted mail server reputable"


def _description(sources: Sources) -> list[str]:
    return [
        *([sentence(sources.parser.description)] if sources.parser.description else []),
        "reputable is a mail filter (milter) for Postfix. It signs outbound mail with DKIM"
        " (RSA and, if configured, Ed25519 keys); before a message leaves, it checks what"
        " receivers will think of this host (reverse DNS, DNS blocklists, SPF, DMARC"
        " alignment, the published DKIM records) and holds, refuses or flags mail that would"
        " land in spam. Each message gets one log line saying what was done and why.",
        "`reputable milter` runs the daemon. At start it prints the lines to add to"
        " Postfix's main.cf (`smtpd_milters`, `non_smtpd_milters` and"
        " `milter_default_action = tempfail`, so that Postfix keeps mail while the milter is"
        " down) and the DNS records to publish. `reputable check` runs every check once."
        " The `keys` commands create, rotate, retire and import DKIM keys.",
        f"Everything works without a configuration file; {sources.config_path} is read when"
        f" it exists. Its keys are described in reputable.toml(5).",
    ]


def _files(sources: Sources) -> list[tuple[str, str]]:
    return [
        (
            sources.config_path,
            "The configuration, read at start and on SIGHUP; see reputable.toml(5).",
        ),
        (
            sources.keys_path,
            "The key store (`[signing] keys`): `<domain>/<selector>.pem` (mode 0600), the private"
            " key, and `<selector>.toml`, its state. Written by the `keys` commands; the milter picks up"
            " changes by itself (`[keys] check_interval`).",
        ),
        (
            DEBIAN_SOCKET,
            "The milter's socket as the Debian package configures it (`[milter] socket`), inside"
            " Postfix's chroot, where Postfix reaches it as `unix:reputable/milter.sock`. It is"
            " removed on a clean stop.",
        ),
    ]


_SIGNALS = [
    (
        "SIGHUP",
        "Reload the configuration and the key store without dropping connections: messages in"
        " progress finish with what they started with. A configuration with problems is logged"
        " (`event=reload_failed`) and the running one stays. `[milter] socket` changes only on a"
        " restart.",
    ),
    (
        "SIGTERM, SIGINT",
        "Stop: accept no new connections, close idle ones, let messages in progress finish (for"
        f" up to {STOP_GRACE_S} seconds), remove the unix socket and exit with status 0.",
    ),
]


def _exit_statuses(sources: Sources) -> list[tuple[str, str]]:
    return [
        (
            "0",
            "Success; for check: no check warns or fails (unknown ones aside, see 3); for"
            " report: nothing wrong in the window.",
        ),
        (
            "1",
            "An error, said on standard error; for check: warnings; for a keys command: a"
            " step refused or failed (the output says why); for report: warnings (flagged"
            " mail, deferrals with a reputation signal).",
        ),
        (
            "2",
            "check: at least one check failed. report: mail held or refused by the gate,"
            " bounced for a reputation signal, or a host check failed. Also a command line"
            " that cannot be parsed.",
        ),
        (
            "3",
            "check: could not check: a resolver fails the root test (the dns row says why), so"
            " the checks that need it are unknown. A check unknown for another reason does not"
            " change the exit status.",
        ),
        (
            str(sources.ex_usage),
            "A keys command used wrongly: a key size or selector not"
            " allowed, a key that does not exist, import options that do not go together, a"
            " domain that is no mail domain (localhost, a single label).",
        ),
        ("65", "sign: standard input is not a mail message; nothing is written."),
        (
            "73",
            "keys new: the domain already has an active key of that algorithm (use keys"
            " rotate), or the selector is taken.",
        ),
        (
            str(sources.ex_config),
            "The configuration (or the key store it names) has problems;"
            " each is listed on standard error with the file, key, value and what is allowed."
            " keys import: nothing to import, or its input cannot be read. keys new and keys"
            " rotate without a domain, on a host without a mail domain: what to set is said"
            " (keys new --if-missing then exits 0). --publish without [keys.publish]: nothing"
            " is changed.",
        ),
        ("141", "The reader of standard output went away (for example `| head`)."),
    ]


def _environment(sources: Sources) -> list[tuple[str, str]]:
    return [
        (
            sources.env_var,
            f"The configuration file, when --config is not given (instead of"
            f" {sources.config_path}).",
        ),
        (
            "NOTIFY_SOCKET",
            "Set by systemd for a Type=notify service: reputable reports ready,"
            " reloading and stopping there (sd_notify(3)).",
        ),
        (
            "JOURNAL_STREAM",
            "Set by systemd: when standard error is the journal, log lines carry"
            " priorities and no timestamps.",
        ),
    ]
