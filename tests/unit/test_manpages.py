"""The man pages: complete against the parser and the config schema, clean roff, reproducible.

What each page must contain is derived here from `build_parser()` and
`_SCHEMA` by a walk of our own, then looked up in the generated roff by its
structure (.SS headings, .TP tags), so that a command, option or key that
the generator drops fails a test without anyone listing names by hand.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import subprocess
import sys
import textwrap
import tomllib
from collections.abc import Callable, Collection, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from reputable.cli import build_parser
from reputable.config import _SCHEMA
from reputable.manpages import command_page
from reputable.manpages.annotated_config import Annotated, Key, check_values, parse_annotated
from reputable.manpages.build import page_date, read_sources
from reputable.manpages.command_page import reputable_8
from reputable.manpages.config_page import reputable_toml_5
from reputable.manpages.roff import Literal, line, prose
from reputable.manpages.sources import ManpageError, Sources

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "packaging" / "manpages.py"
EPOCH = "1795651200"  # 2026-11-26 00:00:00 UTC
DATE = "2026-11-26"


@pytest.fixture(scope="module")
def sources() -> Sources:
    return read_sources(ROOT)


@pytest.fixture(scope="module")
def page8(sources: Sources) -> str:
    return reputable_8(sources, DATE)


@pytest.fixture(scope="module")
def page5(sources: Sources) -> str:
    return reputable_toml_5(sources, DATE)


# --- what the pages must contain, derived from the parser and the schema ---


def commands_of(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    """Every subcommand at any depth (an alias, the same parser again, counts once)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            hidden = {c.dest for c in action._choices_actions if c.help == argparse.SUPPRESS}
            seen: set[int] = set()
            for name, sub in action.choices.items():
                if name not in hidden and id(sub) not in seen:
                    seen.add(id(sub))
                    yield (*path, name), sub
                    yield from commands_of(sub, (*path, name))


def arguments_of(parser: argparse.ArgumentParser, with_help: bool = False) -> Iterator[str]:
    """The roff each argument's tag must hold: every option name in bold, a positional in italic."""
    for action in parser._actions:
        if action.help == argparse.SUPPRESS or isinstance(action, argparse._SubParsersAction):
            continue
        if isinstance(action, argparse._HelpAction) and not with_help:
            continue  # documented once, for the whole program
        if action.option_strings:
            yield from (rf"\fB{roff(name)}\fR" for name in action.option_strings)
        else:
            yield rf"\fI{roff(str(action.metavar or action.dest))}\fR"


def roff(name: str) -> str:
    return name.replace("\\", r"\e").replace("-", r"\-")


def tags_by_heading(page: str) -> dict[str, list[str]]:
    """The .TP tags under each .SH/.SS heading, by the heading's text."""
    lines = page.splitlines()
    tags: dict[str, list[str]] = {}
    heading = ""
    for index, text in enumerate(lines):
        if text.startswith((".SH ", ".SS ")):
            heading = text[4:].strip('"')
            tags.setdefault(heading, [])
        elif text == ".TP":
            tags[heading].append(lines[index + 1])
    return tags


def missing_from_8(parser: argparse.ArgumentParser, page: str) -> list[str]:
    tags = tags_by_heading(page)
    missing = [
        f"OPTIONS {want}"
        for want in arguments_of(parser, with_help=True)
        if not any(want in tag for tag in tags.get("OPTIONS", []))
    ]
    for path, sub in commands_of(parser):
        heading = roff(" ".join(path))
        if heading not in tags:
            missing.append(" ".join(path))
            continue
        missing += [
            f"{' '.join(path)} {want}"
            for want in arguments_of(sub)
            if not any(want in tag for tag in tags[heading])
        ]
    return missing


def keys_in_5(page: str) -> dict[str, set[str]]:
    """Each [section] of reputable.toml(5) with the keys its .TP tags name."""
    found: dict[str, set[str]] = {}
    for heading, tags in tags_by_heading(page).items():
        if heading.startswith("[") and heading.endswith("]"):
            names = (re.match(r"\\fB(.+?)\\fR", tag) for tag in tags)
            found[heading[1:-1].replace(r"\-", "-")] = {
                n[1].replace(r"\-", "-") for n in names if n
            }
    return found


def differences_from_5(schema: Mapping[str, Collection[str]], page: str) -> list[str]:
    found = keys_in_5(page)
    wanted = {(s, k) for s, keys in schema.items() for k in keys}
    shown = {(s, k) for s, keys in found.items() for k in keys}
    return [f"missing {s}.{k}" for s, k in sorted(wanted - shown)] + [
        f"unknown {s}.{k}" for s, k in sorted(shown - wanted)
    ]


def with_attach_exim(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The parser with a sub-subcommand yet to come (added here as its author might)."""
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    attach = commands.add_parser("attach")  # no help=: such a command must appear all the same
    steps = attach.add_subparsers()  # nor dest= nor metavar=
    exim = steps.add_parser("exim", help="print (or apply) the exim.conf lines")
    exim.add_argument("--apply", action="store_true", help="change exim.conf")
    exim.add_argument("exim_conf", nargs="?", help="the exim.conf to change")
    return parser


# --- completeness ---


def test_every_command_and_option_of_the_parser_is_in_reputable_8(page8: str) -> None:
    parser = build_parser()
    paths = [path for path, _ in commands_of(parser)]
    assert any(len(path) > 1 for path in paths)  # the walk reaches sub-subcommands
    assert missing_from_8(parser, page8) == []


def test_every_option_survives_rendering(page8: str, tmp_path: Path) -> None:
    parser = build_parser()
    text = render_with_man(write(tmp_path / "reputable.8", page8)).stdout
    for path, sub in commands_of(parser):
        assert " ".join(("reputable", *path)) in text
        for action in sub._actions:
            for name in action.option_strings:
                assert re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", text), (path, name)


def test_a_new_sub_subcommand_appears_by_itself(sources: Sources) -> None:
    parser = with_attach_exim(build_parser())
    page = reputable_8(dataclasses.replace(sources, parser=parser), DATE)
    assert missing_from_8(parser, page) == []
    assert argparse.SUPPRESS not in page


def test_the_check_catches_a_command_and_an_option_left_out(page8: str) -> None:
    parser = with_attach_exim(build_parser())
    assert missing_from_8(parser, page8) == [
        "attach",
        "attach exim",  # (the options of a command left out are not listed again)
    ]
    deepest_path, deepest = next(
        (p, s) for p, s in reversed(list(commands_of(build_parser()))) if len(p) > 1
    )
    option = list(arguments_of(deepest))[-1]
    without = "\n".join(t for t in page8.splitlines() if not t.startswith(option))
    assert missing_from_8(build_parser(), without) == [f"{' '.join(deepest_path)} {option}"]


def test_every_schema_key_is_in_reputable_toml_5(page5: str) -> None:
    assert sum(len(keys) for keys in keys_in_5(page5).values()) >= 10
    assert differences_from_5(_SCHEMA, page5) == []


def test_the_check_catches_a_key_left_out(page5: str) -> None:
    schema = {**_SCHEMA, "log": [*_SCHEMA["log"], "colour"]}
    assert differences_from_5(schema, page5) == ["missing log.colour"]
    section, keys = list(_SCHEMA.items())[-1]
    key = list(keys)[-1]
    without = "\n".join(t for t in page5.splitlines() if not t.startswith(rf"\fB{key}\fR"))
    assert differences_from_5(_SCHEMA, without) == [f"missing {section}.{key}"]


def sections_in_order(table: dict[str, Any], path: str = "") -> Iterator[tuple[str, list[str]]]:
    """The [sections] of a TOML document as the file has them, each with its keys in order."""
    keys = [k for k, v in table.items() if not isinstance(v, dict)]
    if keys:
        yield path, keys
    for name, value in table.items():
        if isinstance(value, dict):
            yield from sections_in_order(value, f"{path}.{name}" if path else name)


def test_keys_follow_the_example_file_in_order(page5: str) -> None:
    document = tomllib.loads((ROOT / "conf" / "reputable.toml").read_text())
    tags = tags_by_heading(page5)
    shown = [
        (heading[1:-1], [re.sub(r"^\\fB(.+?)\\fR.*", r"\1", t) for t in tags[heading]])
        for heading in tags
        if heading.startswith("[")
    ]
    assert shown == list(sections_in_order(document))


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (lambda s: {**s, "milter": [*s["milter"], "backlog"]}, "milter.backlog"),
        (lambda s: {**s, "log": [k for k in s["log"] if k != "level"]}, "log.level"),
        (lambda s: {k: v for k, v in s.items() if k != "trust"}, "trust.internal_hosts"),
    ],
)
def test_schema_and_example_disagreeing_stops_the_build(
    sources: Sources,
    change: Callable[[dict[str, Collection[str]]], dict[str, Collection[str]]],
    named: str,
) -> None:
    changed = dataclasses.replace(sources, schema=change(dict(sources.schema)))
    with pytest.raises(ManpageError, match=re.escape(named)):
        reputable_toml_5(changed, DATE)


def test_exit_statuses_are_the_codes_the_commands_return(page8: str) -> None:
    from reputable.checklist import EXIT
    from reputable.errors import EX_CONFIG, EX_USAGE
    from reputable.filter import EX_DATAERR
    from reputable.keys.commands import EX_CANTCREAT
    from reputable.keys.lifecycle_commands import EX_FAILED

    listed = {re.sub(r"^\.B ", "", t).strip('"') for t in tags_by_heading(page8)["EXIT STATUS"]}
    codes = {EX_CONFIG, EX_USAGE, EX_DATAERR, EX_CANTCREAT, EX_FAILED, *EXIT.values()}
    assert {str(c) for c in codes} <= listed


def test_the_stop_grace_period_is_the_servers() -> None:
    from reputable.milter.server import STOP_GRACE_S

    assert command_page.STOP_GRACE_S == STOP_GRACE_S


# --- roff: rendered without a warning ---


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="ascii")
    return path


def groff_complaints(path: Path) -> str:
    """What groff says about a page with every warning on (-ww), or its exit status."""
    groff = subprocess.run(
        ["groff", "-man", "-ww", "-z", "-Tutf8", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    return groff.stderr + (f"exit status {groff.returncode}" if groff.returncode else "")


def render_with_man(path: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MANWIDTH": "80", "LC_ALL": "C.UTF-8"}
    return subprocess.run(
        ["man", "--warnings", "-l", "-P", "cat", str(path)],
        capture_output=True,
        text=True,
        check=False,
        env=env,
    )


@pytest.mark.parametrize(
    ("name", "title"), [("reputable.8", "reputable"), ("reputable.toml.5", "reputable.toml")]
)
def test_pages_render_without_warnings(
    page8: str, page5: str, tmp_path: Path, name: str, title: str
) -> None:
    path = write(tmp_path / name, page8 if name.endswith(".8") else page5)
    assert groff_complaints(path) == ""
    man = render_with_man(path)
    assert (man.returncode, man.stderr) == (0, "")
    assert re.search(rf"^NAME\n +{re.escape(title)} - \w", man.stdout, re.MULTILINE)


def test_awkward_help_text_is_escaped(sources: Sources, tmp_path: Path) -> None:
    parser = argparse.ArgumentParser(prog="reputable", description="a \\ backslash")
    commands = parser.add_subparsers(dest="command")
    odd = commands.add_parser("odd", help=".starts with a dot")
    odd.add_argument("--path", help="'quoted at the start, C:\\temp, café, --with-dashes")
    page = reputable_8(dataclasses.replace(sources, parser=parser), DATE)
    assert r"\&.starts with a dot." in page.splitlines()
    path = write(tmp_path / "reputable.8", page)
    assert groff_complaints(path) == ""
    text = render_with_man(path).stdout
    assert "'quoted at the start, C:\\temp, café, --with-dashes" in " ".join(text.split())
    assert ".starts with a dot." in text


# --- the script as the package build runs it ---


def test_the_build_runs_on_the_standard_library_alone_and_reproducibly(
    tmp_path: Path, page8: str, page5: str
) -> None:
    env = {**os.environ, "SOURCE_DATE_EPOCH": EPOCH}
    for run in ("one", "two"):
        # -I -S: no site-packages, no PYTHONPATH: only the standard library and the checkout.
        command = [sys.executable, "-I", "-S", str(SCRIPT), str(tmp_path / run)]
        done = subprocess.run(
            command, capture_output=True, text=True, check=False, env=env, cwd=ROOT
        )
        assert (done.returncode, done.stderr) == (0, "")
    for name, expected in (("reputable.8", page8), ("reputable.toml.5", page5)):
        assert (tmp_path / "one" / name).read_text() == (tmp_path / "two" / name).read_text()
        assert (tmp_path / "one" / name).read_text() == expected
        assert f'"{DATE}"' in expected.splitlines()[1]


def test_the_date_comes_from_source_date_epoch_or_fails() -> None:
    assert page_date({"SOURCE_DATE_EPOCH": EPOCH}, ROOT) == DATE
    with pytest.raises(ManpageError, match="SOURCE_DATE_EPOCH"):
        page_date({"SOURCE_DATE_EPOCH": "yesterday"}, ROOT)


def test_without_source_date_epoch_or_git_there_is_no_date(tmp_path: Path) -> None:
    with pytest.raises(ManpageError, match="SOURCE_DATE_EPOCH"):
        page_date({}, tmp_path)


# --- the comment parser, on small cases ---


def annotated(text: str) -> Annotated:
    return parse_annotated(textwrap.dedent(text))


def test_comments_describe_the_key_below_and_the_section_above_a_blank_line() -> None:
    parsed = annotated(
        """\
        # The file.

        [a]
        # About [a] as a whole.

        # First line of x,
        # second line.
        #
        # Another paragraph:
        #   example = 1
        #     indented = 2
        x = "one"
        y = 2 # inline
        """
    )
    assert parsed.preamble == ("The file.",)
    (section,) = parsed.sections
    assert (section.name, section.description) == ("a", ("About [a] as a whole.",))
    assert section.keys == (
        Key(
            "x",
            '"one"',
            (
                "First line of x, second line.",
                "Another paragraph:",
                Literal(("example = 1", "  indented = 2")),
            ),
            False,
            12,
        ),
        Key("y", "2", ("inline",), False, 13),
    )


def test_a_list_over_several_lines_is_kept_as_written() -> None:
    text = textwrap.dedent(
        """\
        [b.c]
        # Brackets and hashes inside strings are not syntax.
        names = [
            "a]", 'b[',  # a comment inside
            "c#d", "e\\"]",
        ]
        after = {x = 1}
        """
    )
    parsed = parse_annotated(text)
    key = parsed.sections[0].keys[0]
    assert parsed.sections[0].name == "b.c"
    assert key.value.splitlines()[0] == "["
    assert key.value.splitlines()[-1] == "]"
    assert parsed.sections[0].keys[1].grouped
    check_values(parsed, tomllib.loads(text))


def test_a_key_right_below_another_shares_its_comment() -> None:
    parsed = annotated(
        """\
        [s]
        # Where and how long.
        target = "host:25"
        timeout = "5s"
        """
    )
    first, second = parsed.sections[0].keys
    assert (first.grouped, second.grouped, second.description) == (False, True, ())


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[s]\n# x\nx = 1\n\ny = 2\n", "line 5: s.y has no comment"),
        ("[s]\nx = 1\n", "line 2: s.x has no comment"),
        ("# x\nx = 1\n", "line 2: x is outside any"),
        ("[[s]]\n", "line 1: not a [table] header"),
        ('[s]\n# x\n"quoted" = 1\n', "line 3: not a bare `key = value`"),
        ("[s]\n# x\na.b = 1\n", "line 3: not a bare `key = value`"),
        ('[s]\n# x\nx = """\nmany\n"""\n', "line 3: a multi-line string"),
        ("[s]\n# x\nx = [\n  1,\n", "line 3: the value of x never closes"),
        ("[s]\n# x\nx = 1\n[s]\n", "line 4: [s] a second time"),
    ],
)
def test_what_the_parser_does_not_read_is_refused_with_its_line(text: str, message: str) -> None:
    with pytest.raises(ManpageError, match=re.escape(message)):
        parse_annotated(text)


def test_a_value_misread_is_caught_by_tomllib() -> None:
    text = '[s]\n# x\nx = "a"\n'
    parsed = parse_annotated(text)
    key = dataclasses.replace(parsed.sections[0].keys[0], value='"b"')
    wrong = dataclasses.replace(
        parsed, sections=(dataclasses.replace(parsed.sections[0], keys=(key,)),)
    )
    with pytest.raises(ManpageError, match=r"s\.x"):
        check_values(wrong, tomllib.loads(text))


# --- roff escaping ---


@pytest.mark.parametrize(
    ("text", "roff_text"),
    [
        ("a \\ b", r"a \e b"),
        ("use --if-missing or -h", r"use \-\-if\-missing or \-h"),
        ("date-based, e.g. s2026-11", "date-based, e.g. s2026-11"),
        ("`reputable keys rotate`", r"\fBreputable keys rotate\fR"),
        ('"ed25519-sha256" in /etc/x-y', r'"ed25519\-sha256" in /etc/x\-y'),
        ("café", r"caf\[u00E9]"),
    ],
)
def test_prose_is_escaped(text: str, roff_text: str) -> None:
    assert prose(text) == roff_text


def test_a_line_starting_like_a_request_is_guarded() -> None:
    assert line(".x") == r"\&.x"
    assert line("'x") == r"\&'x"
    assert line("x.") == "x."
