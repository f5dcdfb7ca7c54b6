"""reputable.toml(5): the configuration reference, from the annotated conf/reputable.toml. Pure."""

from __future__ import annotations

from collections.abc import Sequence

from reputable.manpages.annotated_config import Key, has_comment, read_annotated
from reputable.manpages.roff import arg, code, entries, example, line, paragraphs, see_also, title
from reputable.manpages.sources import Sources


def reputable_toml_5(sources: Sources, date: str) -> str:
    annotated = read_annotated(sources.example, sources.schema)
    lines = title("reputable.toml", 5, date, sources.version, "File Formats Manual")
    lines += [".SH NAME", r"reputable.toml \- configuration of the reputable mail filter"]
    lines += [".SH SYNOPSIS", f".I {arg(code(sources.config_path))}", ".SH DESCRIPTION"]
    lines += paragraphs([*annotated.preamble, *_TOML_NOTES], ".PP")
    lines += [".SH OPTIONS"]
    for section in annotated.sections:
        lines += [f".SS {arg(code(f'[{section.name}]'))}", *paragraphs(section.description)]
        lines += _key_entries(section.keys)
    lines += [".SH FILES", *entries([(sources.config_path, "The configuration file.")], ".I")]
    lines += [".SH SEE ALSO", *see_also(["reputable(8)", "postconf(5)"])]
    return "\n".join(lines) + "\n"


_TOML_NOTES = [
    "The file is TOML (https://toml.io). Every key is optional and every key is shown below"
    ' with its default. A duration is a string such as "500ms", "30s", "10m", "1h" or'
    ' "7d". reputable(8) reads the file named by --config, else by $REPUTABLE_CONFIG, else'
    " this one if it exists.",
]


def _key_entries(keys: Sequence[Key]) -> list[str]:
    """Each key as `name = value`, then its comment; a long default follows as written."""
    lines: list[str] = []
    for group in _groups(keys):
        for index, key in enumerate(group):
            tag = rf"\fB{code(key.name)}\fR"
            shown = line(tag if "\n" in key.value else f"{tag} = {code(key.value)}")
            # .PD 0 before a .TP sets a second tag right below the first (man(7) has no .TQ)
            lines += [".PD 0", ".TP", shown, ".PD"] if index else [".TP", shown]
        lines += paragraphs(group[0].description, ".IP")
        for key in (k for k in group if "\n" in k.value):
            lines += [".IP", f"Default of {code(key.name)}:" if len(group) > 1 else "Default:"]
            lines += _long_default(key.value)
    return lines


def _groups(keys: Sequence[Key]) -> list[list[Key]]:
    """The keys, each with those grouped below it (described by its comment)."""
    groups: list[list[Key]] = []
    for key in keys:
        if key.grouped and groups:
            groups[-1].append(key)
        else:
            groups.append([key])
    return groups


def _long_default(value: str) -> list[str]:
    """A value over several lines: filled, to fit the terminal, unless comments need its lines."""
    if any(has_comment(text) for text in value.splitlines()):
        return example(value.splitlines(), in_body=True)
    return [line(code(" ".join(text.strip() for text in value.splitlines())))]
