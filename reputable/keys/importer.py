"""`reputable keys import`: the command, and the report it prints. I/O.

The work is done elsewhere: `opendkim_tables` parses the configuration,
`table_mapping` maps its tables onto keys, `import_settings` carries settings
over, `private_keys` reads the keys, `import_plan` plans and writes the store.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

from reputable.config import Config
from reputable.errors import EX_CONFIG, EX_USAGE, ConfigError
from reputable.keys.import_plan import (
    ImportedKey,
    ImportPlan,
    keys_to_write,
    perform_import,
    plan_dkimpy_milter,
    plan_opendkim,
    plan_tables,
)
from reputable.keys.import_settings import TomlSetting, map_settings
from reputable.keys.opendkim_tables import (
    ConfLine,
    Scope,
    Software,
    parse_conf,
    parse_key_table,
    parse_signing_table,
    pattern_scope,
)
from reputable.keys.private_keys import parse_private_key
from reputable.keys.store import read_store
from reputable.signing.algorithm import Algorithm

__all__ = [
    "ConfLine",
    "ImportPlan",
    "ImportedKey",
    "Scope",
    "Software",
    "TomlSetting",
    "import_command",
    "map_settings",
    "parse_conf",
    "parse_key_table",
    "parse_private_key",
    "parse_signing_table",
    "pattern_scope",
    "perform_import",
    "plan_dkimpy_milter",
    "plan_opendkim",
    "plan_tables",
    "print_report",
]


def import_command(
    config: Config,
    opendkim_conf: str | None,
    dkimpy_conf: str | None,
    key_table: str | None,
    signing_table: str | None,
    dry_run: bool,
    out: TextIO = sys.stdout,
    err: TextIO = sys.stderr,
) -> int:
    chosen = [a for a in (opendkim_conf, dkimpy_conf, key_table) if a]
    if len(chosen) != 1 or (signing_table and not key_table):
        print(
            "reputable keys import: give one of --opendkim-conf, --dkimpy-conf or "
            "--key-table (with --signing-table)",
            file=err,
        )
        return EX_USAGE
    store = config.signing.keys
    try:
        plan = _plan_for(opendkim_conf, dkimpy_conf, key_table, signing_table)
        todo = keys_to_write(plan, store)
        if not dry_run:
            perform_import(plan, store, datetime.now(UTC))
    except ConfigError as exc:
        print("reputable keys import: fix these and run it again:", file=err)
        for problem in exc.problems:
            print(f"  {problem}", file=err)
        return EX_CONFIG
    print_report(plan, todo, config, dry_run, out)
    return 0 if plan.keys else EX_CONFIG


def _plan_for(
    opendkim_conf: str | None, dkimpy_conf: str | None, key_table: str | None, signing: str | None
) -> ImportPlan:
    if opendkim_conf:
        return plan_opendkim(Path(opendkim_conf))
    if dkimpy_conf:
        return plan_dkimpy_milter(Path(dkimpy_conf))
    assert key_table is not None
    # A bare path honours wildcards, as a refile: table (and dkimpy-milter) would.
    refile = not (signing or "").startswith("file:")
    signing_path = Path(_strip_prefix(signing)) if signing else None
    return plan_tables(Path(_strip_prefix(key_table)), signing_path, refile)


def _strip_prefix(value: str) -> str:
    for prefix in ("file:", "refile:"):
        value = value.removeprefix(prefix)
    return value


def print_report(
    plan: ImportPlan, todo: Sequence[ImportedKey], config: Config, dry_run: bool, out: TextIO
) -> None:
    store = config.signing.keys
    if dry_run:
        print("Dry run: nothing is written.", file=out)
    if not plan.keys:
        print(f"No key in {plan.origin} signs one exact domain: nothing to import.", file=out)
    else:
        verb = "Would import" if dry_run else "Imported"
        print(f"{verb} from {plan.origin} into {store}:", file=out)
    for key in plan.keys:
        done = "" if key in todo else " (already in the store)"
        print(f"  {_key_line(key)}{done}", file=out)
    notes = [*plan.notes, *_missing_key_notes(plan, config)]
    if notes:
        print("Notes:", file=out)
        for note in notes:
            print(f"  {note}", file=out)
    if plan.keys:
        _print_toml(plan, config, out)
        _print_next_steps(plan, config, dry_run, out)


def _key_line(key: ImportedKey) -> str:
    size = f", {key.bits} bits" if key.bits else ""
    return f"{key.domain} selector {key.selector} ({key.algorithm.value}{size}) ← {key.source}"


def signing_lines(plan: ImportPlan, config: Config) -> tuple[TomlSetting, TomlSetting]:
    """[signing] domains and algorithms: what is configured already, then what the import adds."""
    found = [k.domain for k in plan.keys]
    domains = tuple(dict.fromkeys([*config.signing.domains, *found]))
    wanted = [*config.signing.algorithms, *(k.algorithm for k in plan.keys)]
    algorithms = tuple(a.value for a in Algorithm if a in wanted)
    return (
        TomlSetting("signing", "domains", domains),
        TomlSetting("signing", "algorithms", algorithms),
    )


def _missing_key_notes(plan: ImportPlan, config: Config) -> list[str]:
    _, algorithms = signing_lines(plan, config)
    have = {(k.domain, k.algorithm.value) for k in plan.keys}
    have |= {(s.key.domain, s.key.algorithm.value) for s in read_store(config.signing.keys).keys}
    return [
        f"{domain} has no {algorithm} key: reputable logs key_missing for it until "
        f"`reputable keys new {domain}{' --algorithm ed25519' if 'ed25519' in algorithm else ''}`"
        for domain in dict.fromkeys(k.domain for k in plan.keys)
        for algorithm in algorithms.value
        if (domain, algorithm) not in have
    ]


def _print_toml(plan: ImportPlan, config: Config, out: TextIO) -> None:
    target = config.source if config.source.startswith("/") else "/etc/reputable/reputable.toml"
    print(f"Put these lines in {target}:", file=out)
    sections: dict[str, list[TomlSetting]] = {"signing": list(signing_lines(plan, config))}
    for setting in plan.settings:
        sections.setdefault(setting.section, []).append(setting)
    for section, settings in sections.items():
        print(f"  [{section}]", file=out)
        for setting in settings:
            print(f"  {setting.line}", file=out)


def _print_next_steps(plan: ImportPlan, config: Config, dry_run: bool, out: TextIO) -> None:
    carried = [s.value for s in plan.settings if (s.section, s.key) == ("milter", "socket")]
    old = plan.software
    stop = f"systemctl disable --now {'opendkim' if old is Software.OPENDKIM else 'dkimpy-milter'}"
    if carried:
        switch = (
            f"reputable listens where {old} did ([milter] socket above), so Postfix's "
            f"smtpd_milters stays as it is: stop {old} ({stop}), then start reputable."
        )
    else:
        switch = (
            f"Stop {old} ({stop}), start reputable, and point Postfix's smtpd_milters (and "
            f"non_smtpd_milters) at reputable instead of {old}: "
            f"{config.milter.socket.postfix}; then `postfix reload`."
        )
    steps = [
        *(["Run the import again without --dry-run."] if dry_run else []),
        "DNS stays as it is: the same keys sign under the same selectors "
        f"(`reputable keys dns {plan.keys[0].domain}` shows the records to compare).",
        switch,
        "Send a test message and check that its signature verifies; the import only read "
        f"{old}'s files: keep them until then.",
    ]
    print("Next steps:", file=out)
    for number, step in enumerate(steps, 1):
        print(f"  {number}. {step}", file=out)
