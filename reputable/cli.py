"""The `reputable` command line: parses arguments, loads config, hands over to a subsystem."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from reputable import __version__
from reputable.config import Config, load_config
from reputable.errors import EX_CONFIG, ConfigError
from reputable.log import configure_logging

EX_USAGE = 64


def _add_config(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        metavar="FILE",
        help="configuration file (default: $REPUTABLE_CONFIG, else /etc/reputable/reputable.toml "
        "if it exists, else the embedded defaults)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="reputable", description="DKIM-sign outbound mail and keep a mail server reputable."
    )
    parser.add_argument("--version", action="version", version=f"reputable {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    milter = commands.add_parser("milter", help="run the milter (foreground)")
    _add_config(milter)

    sign = commands.add_parser(
        "sign", help="sign one message from stdin to stdout (Exim transport_filter)"
    )
    _add_config(sign)

    keys = commands.add_parser("keys", help="DKIM key store")
    key_commands = keys.add_subparsers(dest="keys_command", required=True, metavar="KEYS_COMMAND")
    new = key_commands.add_parser("new", help="create a key and print its DNS record")
    _add_config(new)
    new.add_argument("domain", nargs="?", help="signing domain (default: the first configured)")
    new.add_argument("--selector", help="selector (default: date-based, e.g. s2026-11)")
    new.add_argument("--algorithm", choices=["rsa", "ed25519"], default="rsa")
    new.add_argument("--bits", type=int, default=2048, help="RSA key size (default 2048)")
    new.add_argument(
        "--if-missing",
        action="store_true",
        help="do nothing if the domain has an active key of that algorithm",
    )
    dns = key_commands.add_parser("dns", help="print the DNS records of a domain's keys")
    _add_config(dns)
    dns.add_argument("domain", nargs="?", help="signing domain (default: every configured domain)")
    return parser


def _load(args: argparse.Namespace) -> Config:
    config = load_config(args.config)
    configure_logging(config.log)
    return config


def run(args: argparse.Namespace) -> int:
    if args.command == "milter":
        from reputable.milter.server import serve

        return serve(_load(args), lambda: load_config(args.config))
    if args.command == "sign":
        from reputable.filter import sign_stream

        return sign_stream(_load(args), sys.stdin.buffer, sys.stdout.buffer, sys.stderr)
    from reputable.keys.commands import dns_command, new_command

    if args.keys_command == "new":
        return new_command(
            _load(args), args.domain, args.selector, args.algorithm, args.bits, args.if_missing
        )
    return dns_command(_load(args), args.domain)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except ConfigError as exc:
        print("reputable: refusing to start; fix these and try again:", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return EX_CONFIG
