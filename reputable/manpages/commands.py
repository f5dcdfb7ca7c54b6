"""The commands and options of an argparse parser, walked out of it and set in roff. Pure.

argparse keeps what a page needs in private attributes (`_actions`,
`_SubParsersAction`, `_mutually_exclusive_groups`); this is the one module
that reads them, so that a parser change shows in reputable(8) by itself.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from reputable.manpages.roff import code, line, prose


@dataclass(frozen=True, slots=True)
class Command:
    path: tuple[str, ...]  # ("keys", "new")
    help: str
    parser: argparse.ArgumentParser


def walk_commands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> Iterator[Command]:
    """Every subcommand at every depth, each before its own, in the order they were added."""
    for action in parser._actions:
        if not isinstance(action, argparse._SubParsersAction):
            continue
        # A subcommand added without help= has no pseudo-action: walk the parsers, not those.
        helps = {choice.dest: choice.help or "" for choice in action._choices_actions}
        seen: set[int] = set()
        for name, sub in action.choices.items():
            if id(sub) in seen or helps.get(name) == argparse.SUPPRESS:
                continue  # an alias (listed after its name), or hidden on purpose
            seen.add(id(sub))
            yield Command((*path, name), helps.get(name, ""), sub)
            yield from walk_commands(sub, (*path, name))


def sentence(text: str) -> str:
    """An argparse help fragment ("create a key") as a sentence ("Create a key.")."""
    text = text.strip()
    first = text.split(" ", 1)[0]
    if re.fullmatch(r"[a-z][a-z-]*", first):
        text = text[0].upper() + text[1:]
    return text if text.endswith((".", "!", "?", ":")) else text + "."


def synopsis(parser: argparse.ArgumentParser, words: Sequence[str]) -> str:
    """One command line: `reputable keys new [--config FILE] ...`, mutual exclusions as (a | b)."""
    group_of = {id(a): g for g in parser._mutually_exclusive_groups for a in g._group_actions}
    parts, done = [r"\fB" + r"\ ".join(code(w) for w in words) + r"\fR"], set()
    for action in _shown(parser, with_help=False):
        group = group_of.get(id(action))
        if group is None:
            optional = not action.required and (action.option_strings or action.nargs == "?")
            parts.append(f"[{_form(action)}]" if optional else _form(action))
        elif id(group) not in done:
            done.add(id(group))
            members = " | ".join(_form(a) for a in group._group_actions)
            parts.append(f"({members})" if group.required else f"[{members}]")
    return " ".join(parts)


def arguments(parser: argparse.ArgumentParser, with_help: bool = False) -> list[str]:
    """A .TP entry for every argument and option of one parser (its subcommands have their own)."""
    lines: list[str] = []
    for action in _shown(parser, with_help):
        if isinstance(action, argparse._SubParsersAction):
            continue
        lines += [".TP", line(_form(action, every_name=True))]
        explanation = _explanation(parser, action)
        lines += [line(prose(explanation))] if explanation else []
    return lines


def _shown(parser: argparse.ArgumentParser, with_help: bool) -> list[argparse.Action]:
    return [
        a
        for a in parser._actions
        if a.help != argparse.SUPPRESS and (with_help or not isinstance(a, argparse._HelpAction))
    ]


def _metavar(action: argparse.Action) -> str:
    if isinstance(action.metavar, tuple):
        return " ".join(action.metavar)
    return action.metavar or (action.dest.upper() if action.option_strings else action.dest)


def _value(action: argparse.Action) -> str:
    """How the value of an argument is written: italic, or its choices in bold."""
    subcommands = isinstance(action, argparse._SubParsersAction)
    if action.choices is not None and not (subcommands and action.metavar):
        one = "{" + "|".join(rf"\fB{code(str(c))}\fR" for c in action.choices) + "}"
    else:
        one = rf"\fI{code(_metavar(action))}\fR"
    if action.nargs in ("*", argparse.REMAINDER) or subcommands:
        return f"[{one} ...]" if action.nargs == "*" else f"{one} ..."
    if action.nargs == "+":
        return f"{one} [{one} ...]"
    if action.nargs == "?" and action.option_strings:
        return f"[{one}]"
    return " ".join([one] * action.nargs) if isinstance(action.nargs, int) else one


def _form(action: argparse.Action, every_name: bool = False) -> str:
    """An argument as typed: the option's name(s) in bold, then its value."""
    if not action.option_strings:
        return _value(action)
    names = action.option_strings if every_name else action.option_strings[-1:]
    shown = ", ".join(rf"\fB{code(n)}\fR" for n in names)
    return shown if action.nargs == 0 else rf"{shown}\ {_value(action)}"


def _explanation(parser: argparse.ArgumentParser, action: argparse.Action) -> str:
    text = action.help or ""
    if "%(" in text:
        text = text % {**vars(action), "prog": parser.prog}
    notes = [sentence(text)] if text else []
    if action.choices is not None and not text:
        notes.append("One of " + ", ".join(f"`{c}`" for c in action.choices) + ".")
    if action.default not in (None, False, argparse.SUPPRESS) and "default" not in text.lower():
        notes.append(f"Default: `{action.default}`.")
    for group in parser._mutually_exclusive_groups:
        if action in group._group_actions:
            names = [a.option_strings[-1] for a in group._group_actions if a is not action]
            needed = "one of them is required" if group.required else "or none"
            notes.append(f"Not together with {', '.join(names)}; {needed}.")
    return " ".join(notes)
