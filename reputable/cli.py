"""The `reputable` command line: parses arguments, loads config, hands over to a subsystem."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from reputable import __version__
from reputable.config import Config, load_config, parse_domain
from reputable.errors import EX_CONFIG, ConfigError, ReputableError
from reputable.log import configure_logging


def domain_argument(text: str) -> str:
    """A domain on the command line, checked and normalised (IDNA) before any command runs."""
    try:
        return parse_domain(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r}: expected {exc}") from None


def _add_key_type(parser: argparse.ArgumentParser) -> None:
    """The options of a key to create: its algorithm and, for RSA, its size."""
    parser.add_argument(
        "--algorithm",
        choices=["rsa", "ed25519"],
        default="rsa",
        help="key type: rsa (rsa-sha256, every receiver) or ed25519 (ed25519-sha256, RFC 8463)",
    )
    parser.add_argument("--bits", type=int, default=2048, help="RSA key size (default 2048)")


def _add_config(parser: argparse.ArgumentParser) -> None:
    """The global options, taken before or after any (sub)command: `reputable --config F keys list`.

    Their default is SUPPRESS, so that a subcommand's parser, which does not see
    an option given before its name, does not overwrite it with a default.
    """
    parser.add_argument(
        "--config",
        metavar="FILE",
        default=argparse.SUPPRESS,
        help="configuration file, before or after the command's name (default: $REPUTABLE_CONFIG, "
        "else /etc/reputable/reputable.toml if it exists, else the embedded defaults)",
    )


def config_argument(args: argparse.Namespace) -> str | None:
    """The --config given anywhere on the command line, or None."""
    value: str | None = getattr(args, "config", None)
    return value


def command_name(args: argparse.Namespace) -> str:
    """The command as typed, e.g. "reputable keys list" (for the messages that name it)."""
    words = [getattr(args, a, None) for a in ("command", "keys_command", "setup_command")]
    return " ".join(["reputable", *(w for w in words if w)])


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="reputable", description="DKIM-sign outbound mail and keep a mail server reputable."
    )
    parser.add_argument("--version", action="version", version=f"reputable {__version__}")
    _add_config(parser)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    milter = commands.add_parser("milter", help="run the milter (foreground)")
    _add_config(milter)

    sign = commands.add_parser(
        "sign", help="sign one message from stdin to stdout (Exim transport_filter)"
    )
    _add_config(sign)

    check = commands.add_parser(
        "check", help="the deliverability checklist for this host and its domains"
    )
    _add_config(check)
    check.add_argument("--json", action="store_true", help="machine-readable output")

    report = commands.add_parser(
        "report", help="what was signed, held and refused, and what receivers answered"
    )
    _add_config(report)
    report.add_argument(
        "logs",
        nargs="*",
        metavar="LOG",
        help="mail logs (plain or .gz, rotated sets in any order); none or -: standard input",
    )
    report.add_argument("--since", help="only the last DURATION: 30m, 24h, 7d, 2w")
    report.add_argument("--from", dest="start", help="only from this date or time (ISO 8601)")
    report.add_argument("--until", help="only until this date or time (ISO 8601)")
    report.add_argument("--json", action="store_true", help="machine-readable output")

    _add_keys_commands(commands)
    _add_setup_commands(commands)
    return parser


def _add_setup_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    setup = commands.add_parser("setup", help="attach reputable to the mail server")
    _add_config(setup)
    setup_commands = setup.add_subparsers(
        dest="setup_command", required=True, metavar="SETUP_COMMAND"
    )
    postfix = setup_commands.add_parser(
        "postfix", help="print the postconf command that passes Postfix's mail to reputable"
    )
    _add_config(postfix)
    postfix.add_argument(
        "--apply",
        action="store_true",
        help="run it (main.cf backed up first), show the change and reload Postfix",
    )
    postfix.add_argument(
        "--postfix-config",
        metavar="DIR",
        help="Postfix's configuration directory (postconf -c DIR; default: Postfix's own)",
    )


def _add_keys_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    keys = commands.add_parser("keys", help="DKIM key store")
    _add_config(keys)
    key_commands = keys.add_subparsers(dest="keys_command", required=True, metavar="KEYS_COMMAND")
    new = key_commands.add_parser("new", help="create a key and print its DNS record")
    _add_config(new)
    new.add_argument(
        "domain",
        type=domain_argument,
        nargs="?",
        help="signing domain (default: the first configured)",
    )
    new.add_argument("--selector", help="selector (default: date-based, e.g. s2026-11)")
    _add_key_type(new)
    new.add_argument(
        "--if-missing",
        action="store_true",
        help="do nothing if the domain has an active key of that algorithm",
    )
    share = key_commands.add_parser(
        "share", help="let one group read the keys (mode 0640), for Exim's own signer"
    )
    _add_config(share)
    share.add_argument("group", help="the group that may read them, e.g. Debian-exim")
    dns = key_commands.add_parser("dns", help="print the DNS records of a domain's keys")
    _add_config(dns)
    dns.add_argument(
        "domain",
        type=domain_argument,
        nargs="?",
        help="signing domain (default: every configured domain)",
    )

    rotate = key_commands.add_parser("rotate", help="create a pending key under a new selector")
    _add_config(rotate)
    rotate.add_argument(
        "domain",
        type=domain_argument,
        nargs="?",
        help="signing domain (default: the first configured)",
    )
    _add_key_type(rotate)
    rotate.add_argument(
        "--publish", action="store_true", help="publish the record by RFC 2136 ([keys.publish])"
    )

    listing = key_commands.add_parser(
        "list", help="every key with its state, DNS status and next step"
    )
    _add_config(listing)
    listing.add_argument(
        "domain", type=domain_argument, nargs="?", help="only this domain (default: every one)"
    )
    listing.add_argument("--json", action="store_true", help="machine-readable output")
    listing.add_argument(
        "--no-dns", action="store_true", help="do not ask DNS (status: not checked)"
    )

    activate = key_commands.add_parser(
        "activate", help="activate pending keys whose record is published"
    )
    _add_config(activate)
    activate.add_argument(
        "domain", type=domain_argument, nargs="?", help="only this domain (default: every one)"
    )

    retire = key_commands.add_parser("retire", help="end a retiring (or abandoned pending) key")
    _add_config(retire)
    retire.add_argument("domain", type=domain_argument, help="the key's signing domain")
    retire.add_argument("selector", help="the key's selector, as keys list shows it")
    retire.add_argument(
        "--force", action="store_true", help="even within the grace period, or the signing key"
    )
    retire.add_argument(
        "--revoke", action="store_true", help="publish an empty p= (revoked) instead of removing"
    )
    retire.add_argument(
        "--publish", action="store_true", help="update DNS by RFC 2136 ([keys.publish])"
    )

    importing = key_commands.add_parser(
        "import", help="copy keys from an OpenDKIM or dkimpy-milter set-up"
    )
    _add_config(importing)
    source = importing.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--opendkim-conf", metavar="FILE", help="opendkim.conf (its KeyTable/SigningTable)"
    )
    source.add_argument("--dkimpy-conf", metavar="FILE", help="dkimpy-milter.conf")
    source.add_argument("--key-table", metavar="FILE", help="an OpenDKIM KeyTable")
    importing.add_argument(
        "--signing-table", metavar="FILE", help="the SigningTable beside --key-table"
    )
    importing.add_argument(
        "--dry-run", action="store_true", help="show what would be imported; write nothing"
    )


def _load(args: argparse.Namespace) -> Config:
    config = load_config(config_argument(args))
    configure_logging(config.log)
    return config


def run(args: argparse.Namespace) -> int:
    if args.command == "milter":
        from reputable.milter.server import serve

        return serve(_load(args), lambda: load_config(config_argument(args)))
    if args.command == "check":
        from reputable.checklist import check_command

        return check_command(_load(args), args.json)
    if args.command == "setup":
        from reputable.postfix.setup_command import setup_postfix_command

        return setup_postfix_command(_load(args), args.postfix_config, args.apply)
    if args.command == "report":
        from reputable.report.command import report_command

        return report_command(args.logs, args.since, args.start, args.until, args.json, sys.stdout)
    if args.command == "sign":
        from reputable.filter import filter_log, sign_stream

        config = load_config(config_argument(args))
        configure_logging(filter_log(config.log))
        return sign_stream(config, sys.stdin.buffer, sys.stdout.buffer, sys.stderr)
    return run_keys(args, _load(args))


def run_keys(args: argparse.Namespace, config: Config) -> int:
    from reputable.keys import commands, lifecycle_commands

    match args.keys_command:
        case "new":
            return commands.new_command(
                config, args.domain, args.selector, args.algorithm, args.bits, args.if_missing
            )
        case "dns":
            return commands.dns_command(config, args.domain)
        case "share":
            from reputable.keys.share import share_command

            return share_command(config, args.group)
        case "rotate":
            return lifecycle_commands.rotate_command(
                config, args.domain, args.algorithm, args.bits, args.publish
            )
        case "list":
            return lifecycle_commands.list_command(config, args.domain, args.json, not args.no_dns)
        case "activate":
            return lifecycle_commands.activate_command(config, args.domain)
        case "retire":
            return lifecycle_commands.retire_command(
                config, args.domain, args.selector, args.force, args.revoke, args.publish
            )
    from reputable.keys.importer import import_command

    return import_command(
        config,
        args.opendkim_conf,
        args.dkimpy_conf,
        args.key_table,
        args.signing_table,
        args.dry_run,
        sys.stdout,
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except ConfigError as exc:
        # Only the daemon starts; any other command just did not run.
        if args.command == "milter":
            print("reputable: refusing to start; fix these and try again:", file=sys.stderr)
        else:
            print(f"{command_name(args)}: fix these and run it again:", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return EX_CONFIG
    except ReputableError as exc:
        print(f"reputable: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        return 141  # the reader went away (e.g. `| head`): not an error worth a traceback
