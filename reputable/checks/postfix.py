"""Postfix's milter settings as checklist rows (`postfix.*`): is reputable on every way mail enters? Pure.

Each row says what breaks and gives the postconf command that mends it,
followed by a reload; the rows about the milters' sockets are in
`reputable.checks.postfix_sockets`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from reputable.checks.findings import Finding, Status
from reputable.checks.postfix_sockets import socket_findings
from reputable.postfix.commands import MAIN_CF
from reputable.postfix.milters import MilterEntry
from reputable.postfix.paths import Entry, MailPath, PostfixView
from reputable.postfix.probe import Probe
from reputable.postfix.settings import Setting, words
from reputable.signing.canonicalization import Canonicalization

PROTOCOL = 6  # the milter protocol version reputable speaks (reputable.milter.protocol)
_WANTED = {"default_action": "tempfail", "protocol": str(PROTOCOL)}

# What Postfix does with mail while a milter does not answer (milter_default_action).
_WHILE_DOWN = {
    "accept": (Status.FAIL, "while reputable is down or too slow, mail leaves unsigned"),
    "tempfail": (Status.OK, "while reputable is down, Postfix defers mail and retries it"),
    "reject": (
        Status.WARN,
        "while reputable is down, mail is refused for good (5xx; sendmail's bounces) "
        "instead of retried",
    ),
    "quarantine": (
        Status.WARN,
        "while reputable is down, mail goes to the hold queue until released (postsuper -H)",
    ),
}


def interpret_postfix(
    view: PostfixView, header_canonicalization: Canonicalization, probes: Mapping[str, Probe]
) -> list[Finding]:
    return [
        interpret_smtpd_milters(view),
        interpret_non_smtpd_milters(view),
        *socket_findings(view, probes),
        interpret_default_action(view),
        interpret_protocol(view, header_canonicalization),
        interpret_no_milters(view),
        interpret_content_filter(view),
    ]


def _labels(paths: Sequence[MailPath]) -> str:
    return ", ".join(p.label for p in paths)


def _add_ours(view: PostfixView, path: MailPath) -> list[str]:
    return view.set_milters(path, (*path.entries, MilterEntry(view.address)))


def interpret_smtpd_milters(view: PostfixView) -> Finding:
    smtpd = [p for p in view.paths if p.entry is Entry.SMTPD and not p.reinjection]
    missing = [p for p in smtpd if view.ours(p) is None]
    if not smtpd:
        return Finding("postfix.smtpd_milters", Status.OK, "master.cf runs no smtpd service")
    if not missing:
        summary = (
            f"every smtpd service ({_labels(smtpd)}) passes mail to reputable ({view.address})"
        )
        return Finding("postfix.smtpd_milters", Status.OK, summary)
    fix = view.commands.fix(*(_add_ours(view, p) for p in missing))
    if len(missing) == len(smtpd):
        now = missing[0].milters.value or "empty"
        summary = (
            f"mail submitted over SMTP is not signed: smtpd_milters ({now}) "
            f"does not list reputable ({view.address})"
        )
        return Finding("postfix.smtpd_milters", Status.FAIL, summary, fix)
    summary = (
        f"mail submitted to {_labels(missing)} is not signed (fine only if it receives nothing "
        f"but inbound mail): its smtpd_milters does not list reputable ({view.address})"
    )
    return Finding("postfix.smtpd_milters", Status.WARN, summary, fix)


def interpret_non_smtpd_milters(view: PostfixView) -> Finding:
    path = next(p for p in view.paths if p.entry is Entry.SENDMAIL)
    if view.ours(path) is not None:
        summary = (
            "mail from sendmail (cron, scripts, web applications) passes reputable: "
            f"non_smtpd_milters lists {view.address}"
        )
        return Finding("postfix.non_smtpd_milters", Status.OK, summary)
    summary = (
        "mail from sendmail and cron is not signed: non_smtpd_milters "
        f"({path.milters.value or 'empty'}) does not list reputable ({view.address})"
    )
    fix = view.commands.fix(_add_ours(view, path))
    return Finding("postfix.non_smtpd_milters", Status.FAIL, summary, fix)


@dataclass(frozen=True, slots=True)
class _Effective:
    """A milter setting in effect for reputable on one way in, and how to change it there."""

    path: MailPath
    value: str
    origin: str  # for the summary: "", " (Postfix's default)", " (-o on smtp/inet)", ...
    change: list[str]  # the command that sets the parameter to what reputable wants


def _effective(
    view: PostfixView, name: str, option: str, of: Callable[[MailPath], Setting]
) -> list[_Effective]:
    """`name` (or reputable's `{ ..., option=... }`) wherever reputable's milter runs.

    When it runs nowhere yet, the main.cf value: what it will get once added.
    """
    found: list[_Effective] = []
    for path in view.paths:
        entry = view.ours(path)
        if entry is None or path.milters_off:
            continue
        if entry.option(option):
            entries = tuple(mend_entry(e) if e == entry else e for e in path.entries)
            origin = f" (in reputable's {path.milter_parameter} entry)"
            found.append(
                _Effective(path, entry.option(option), origin, view.set_milters(path, entries))
            )
        else:
            found.append(_from_setting(view, path, name, _WANTED[option], of(path)))
    if not found:
        setting = view.settings.get(name)
        sendmail = next(p for p in view.paths if p.entry is Entry.SENDMAIL)
        found.append(_from_setting(view, sendmail, name, _WANTED[option], setting))
    return found


def mend_entry(entry: MilterEntry) -> MilterEntry:
    """reputable's `{ ... }` entry with what it needs of its own settings.

    Both rows that look into the entry (default_action, protocol) give this one
    rewrite, so that running one fix does not undo the other.
    """
    for option, wanted in _WANTED.items():
        if entry.option(option) and entry.option(option) != wanted:
            entry = entry.with_option(option, wanted)
    return entry


def _from_setting(
    view: PostfixView, path: MailPath, name: str, wanted: str, setting: Setting
) -> _Effective:
    origins = {"": " (Postfix's default)", MAIN_CF: ""}
    origin = origins.get(setting.source, f" (-o on {setting.source})")
    return _Effective(path, setting.value, origin, view.commands.set(name, wanted, setting.source))


def _judge(
    ident: str,
    name: str,
    found: Sequence[_Effective],
    judge: Mapping[str, tuple[Status, str]],
    unknown: tuple[Status, str],
    view: PostfixView,
) -> Finding:
    """One row for a setting: the worst judgement, naming every way in that gets it."""
    rank = {Status.OK: 0, Status.WARN: 1, Status.FAIL: 2}
    judged = [(judge.get(e.value, unknown), e) for e in found]
    (status, reason), _ = max(judged, key=lambda j: rank[j[0][0]])
    worst = [e for j, e in judged if j == (status, reason)]
    groups: dict[str, list[MailPath]] = {}
    for e in worst:
        groups.setdefault(f"{e.value}{e.origin}", []).append(e.path)
    named = [f"{v} for {_labels(ps)}" if len(found) > 1 else v for v, ps in groups.items()]
    summary = f"{name} = {'; '.join(named)}: {reason}"
    fix = view.commands.fix(*(e.change for e in worst)) if status is not Status.OK else ""
    return Finding(ident, status, summary, fix)


def interpret_default_action(view: PostfixView) -> Finding:
    found = _effective(view, "milter_default_action", "default_action", lambda p: p.default_action)
    unknown = (Status.WARN, "an action Postfix does not know")
    return _judge(
        "postfix.milter_default_action", "milter_default_action", found, _WHILE_DOWN, unknown, view
    )


def interpret_protocol(view: PostfixView, header_canonicalization: Canonicalization) -> Finding:
    found = _effective(view, "milter_protocol", "protocol", lambda p: p.protocol)
    simple = header_canonicalization is Canonicalization.SIMPLE
    # Below 6 Postfix cannot pass a header's leading space (SMFIP_HDR_LEADSPC) nor skip replies.
    old = (
        Status.FAIL if simple else Status.WARN,
        f"reputable speaks {PROTOCOL}; below it Postfix drops the space after each header's "
        + (
            "colon, so simple header canonicalization signs what verifiers do not see: "
            "every signature fails"
            if simple
            else "colon (relaxed canonicalization does not mind) and waits for a reply to "
            "every header"
        ),
    )
    judge = {str(v): old for v in range(2, PROTOCOL)}
    judge[str(PROTOCOL)] = (Status.OK, "the version reputable speaks")
    unknown = (Status.WARN, "a version Postfix does not know")
    return _judge("postfix.milter_protocol", "milter_protocol", found, judge, unknown, view)


def _drop_no_milters(view: PostfixView, setting: Setting) -> list[str]:
    rest = [w for w in words(setting.value) if w != "no_milters"]
    if not rest:
        return view.commands.unset("receive_override_options", setting.source)
    separator = ", " if setting.source in ("", MAIN_CF) else ","
    return view.commands.set("receive_override_options", separator.join(rest), setting.source)


def interpret_no_milters(view: PostfixView) -> Finding:
    off = [p for p in view.paths if p.milters_off and not p.reinjection]
    if not off:
        returns = [p for p in view.paths if p.milters_off]
        note = f" but the content filter's way back ({_labels(returns)})" if returns else ""
        summary = f"no way in{note} turns the milters off (receive_override_options = no_milters)"
        return Finding("postfix.no_milters", Status.OK, summary)
    sources = sorted({p.receive_options.source or MAIN_CF for p in off})
    summary = (
        f"mail entering through {_labels(off)} is not signed: receive_override_options "
        f"includes no_milters ({', '.join(sources)})"
    )
    fixes = [_drop_no_milters(view, p.receive_options) for p in off]
    return Finding("postfix.no_milters", Status.FAIL, summary, view.commands.fix(*fixes))


def interpret_content_filter(view: PostfixView) -> Finding:
    filters = sorted({p.content_filter.value for p in view.paths if p.content_filter.value})
    if not filters:
        summary = "no content_filter: each message passes the milters once"
        return Finding("postfix.content_filter", Status.OK, summary)
    named = f"content_filter {', '.join(filters)}"
    returns = [p for p in view.paths if p.reinjection]
    if not returns:
        summary = (
            f"{named} is set but no way back was found (a loopback smtpd service without a "
            "content_filter, e.g. 127.0.0.1:10025): if the filter re-injects through another "
            "smtpd or sendmail, the milters run twice"
        )
        return Finding("postfix.content_filter", Status.WARN, summary, _reinjection_fix(view))
    twice = [p for p in returns if not p.milters_off and p.entries]
    if not twice:
        summary = (
            f"{named} re-injects through {_labels(returns)}, which runs no milters: "
            "each message passes them once"
        )
        return Finding("postfix.content_filter", Status.OK, summary)
    summary = (
        f"{named} re-injects through {_labels(twice)}, which runs the milters again: "
        "each message is signed (and counted) twice"
    )
    fixes = [
        view.commands.set(
            "receive_override_options",
            ",".join([*words(p.receive_options.value), "no_milters"]),
            p.service.key,
        )
        for p in twice
    ]
    return Finding("postfix.content_filter", Status.WARN, summary, view.commands.fix(*fixes))


def _reinjection_fix(view: PostfixView) -> str:
    """The way back of Postfix's FILTER_README (and amavis's default): 127.0.0.1:10025."""
    key = "127.0.0.1:10025/inet"
    options = "no_unknown_recipient_checks,no_header_body_checks,no_milters"
    commands = view.commands.fix(
        view.commands.postconf("-M", f"{key}=127.0.0.1:10025 inet n - n - - smtpd"),
        view.commands.postconf(
            "-P", f"{key}/content_filter=", f"{key}/receive_override_options={options}"
        ),
    )
    return (
        "have the filter re-inject through an smtpd that runs no milters, as amavis does: "
        + commands
    )
