"""The old milter's settings carried over as reputable.toml lines, a note for the rest. Pure.

`map_settings` takes every opendkim.conf or dkimpy-milter.conf line the key
mapping did not use and says what became of it. A milter that verified
(Mode v or sv; sv is both milters' default) is told what verifies in its
place: `[inbound]`, with its AuthservID carried over.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from reputable.config import DEFAULT_OVERSIGN, parse_config, parse_socket
from reputable.errors import ConfigError
from reputable.keys.opendkim_tables import ConfLine, Software
from reputable.signing.canonicalization import Canonicalization


@dataclass(frozen=True, slots=True)
class TomlSetting:
    """One reputable.toml line worth carrying over from the old milter's configuration."""

    section: str
    key: str
    value: str | tuple[str, ...]

    @property
    def line(self) -> str:
        # JSON's string escapes are all valid in a TOML basic string.
        if isinstance(self.value, str):
            return f"{self.key} = {json.dumps(self.value)}"
        return f"{self.key} = [{', '.join(json.dumps(v) for v in self.value)}]"

    def __str__(self) -> str:
        return f"[{self.section}] {self.line}"


Expand = Callable[[str], tuple[tuple[str, ...], str]]  # data set value -> (items, error)

_PROCESS = frozenset(
    [
        "userid",
        "umask",
        "pidfile",
        "background",
        "autorestart",
        "autorestartcount",
        "autorestartrate",
        "enablecoredumps",
        "temporarydirectory",
        "keeptemporaryfiles",
        "quarantine",
    ]
)
_LOGGING = frozenset(
    ["syslogsuccess", "syslogfacility", "syslogname", "logwhy", "logresults", "debuglevel"]
)
_VERIFYING = frozenset(
    [
        "trustanchorfile",
        "nameservers",
        "resolverconfiguration",
        "dnstimeout",
        "dnsconnect",
        "querycache",
        "minimumkeybits",
        "authservid",
        "authservidwithjobid",
        "alwaysaddarheader",
        "externalignorelist",
        "on-badsignature",
        "on-default",
        "on-dnserror",
        "on-internalerror",
        "on-keynotfound",
        "on-nosignature",
        "on-security",
        "on-signatureerror",
        "boguskey",
        "unprotectedkey",
        "keepauthresults",
        "removearall",
        "removearfrom",
        "maximumsignaturestoverify",
        "mustbesigned",
        "trustsignaturesfrom",
        "diagnosticdirectory",
        "dnsoverride",
        "macrolistverify",
        "allowsha1only",
        "noheaderb",
        "addallsignatureresults",
    ]
)
_HANDLED = frozenset(["include", "basedirectory", "changerootdirectory"])
DEFAULT_MODE = "sv"  # opendkim.conf(5), dkimpy-milter.conf(5): Mode
# On-BadSignature and the other On- settings: an action, or its letter (opendkim.conf(5)).
_ON_ACTIONS = {
    **dict.fromkeys(("a", "accept"), "accepted"),
    **dict.fromkeys(("d", "discard"), "discarded"),
    **dict.fromkeys(("q", "quarantine"), "quarantined"),
    **dict.fromkeys(("r", "reject"), "rejected"),
    **dict.fromkeys(("t", "tempfail"), "tempfailed"),
}


def map_settings(
    lines: Sequence[ConfLine], consumed: frozenset[str], software: Software, expand: Expand
) -> tuple[tuple[str, ...], tuple[TomlSetting, ...]]:
    """A note for every line the key mapping did not use, and the reputable.toml lines to carry."""
    last = {line.name.lower(): line for line in lines}
    mode = last["mode"].value if "mode" in last else DEFAULT_MODE
    # What verifies in the old milter's place, when it verified: "" when it only signed.
    takeover = _takeover(software, "authservid" in last) if "v" in mode.lower() else ""
    notes: list[str] = []
    settings: list[TomlSetting] = []
    for line in lines:
        name = line.name.lower()
        if last[name] is not line:
            notes.append(f"{line.where}: '{line.text}': set again at {last[name].where}")
            continue
        if name in consumed or name in _HANDLED:
            continue
        why, carried = _setting_note(line, software, expand, takeover)
        notes.append(f"{line.where}: '{line.text}': {why}")
        settings.extend(carried)
    if "mode" not in last:
        default = f"{software} verified inbound mail by default (Mode {DEFAULT_MODE})"
        notes.append(f"no Mode line: {default}; {takeover}")
    return tuple(notes), tuple(settings)


def _takeover(software: Software, named: bool) -> str:
    """What verifies inbound mail in place of a milter that did."""
    said = (
        "reputable verifies it too: [inbound] verify = true (the default) writes one "
        "Authentication-Results header, with dkim=, spf=, dmarc= and arc=, on mail that is not "
        "outbound"
    )
    if named:  # AuthservID's own note says what becomes of it
        return said
    return (
        f"{said}; its authserv-id is this host's name (Postfix's myhostname by default), as "
        f"{software}'s was without AuthservID"
    )


def _setting_note(
    line: ConfLine, software: Software, expand: Expand, takeover: str
) -> tuple[str, tuple[TomlSetting, ...]]:
    name = line.name.lower()
    if name == "mode":
        return _mode(line, software, takeover)
    if name in _VERIFYING:
        return _verifying(line, software, takeover)
    special = _SPECIAL.get(name)
    if special is not None:
        return special(line, software, expand)
    if name in _PROCESS:
        return "how the daemon runs; reputable's own service unit covers it: not carried over", ()
    if name in _LOGGING:
        return "reputable logs one line per message, signed or not and why: not carried over", ()
    return "no matching reputable setting: not carried over", ()


def _carried(*settings: TomlSetting) -> tuple[str, tuple[TomlSetting, ...]]:
    return "carried over as " + "; ".join(str(s) for s in settings), settings


def _canonicalization(
    line: ConfLine, software: Software, expand: Expand
) -> tuple[str, tuple[TomlSetting, ...]]:
    header, _, body = line.value.lower().partition("/")
    # Unlike a c= tag, both milters apply a lone value to header and body alike.
    body = body or header
    try:
        pair = (Canonicalization(header), Canonicalization(body))
    except ValueError:
        return "expected relaxed or simple (optionally header/body): not carried over", ()
    if pair == (Canonicalization.RELAXED, Canonicalization.RELAXED):
        return "the same as reputable's default (relaxed/relaxed): nothing to set", ()
    return _carried(TomlSetting("signing", "canonicalization", f"{header}/{body}"))


def _internal_hosts(
    line: ConfLine, software: Software, expand: Expand
) -> tuple[str, tuple[TomlSetting, ...]]:
    items, error = expand(line.value)
    if error:
        return f"{error}: list those hosts in [trust] internal_hosts yourself", ()
    kept: list[str] = []
    dropped: list[str] = []
    for item in items:
        kept_now = _network_of(item)
        kept.extend(kept_now)
        if not kept_now:
            dropped.append(item)
    why, carried = "", tuple[TomlSetting, ...]()
    if kept:
        why, carried = _carried(TomlSetting("trust", "internal_hosts", tuple(dict.fromkeys(kept))))
    if dropped:
        left = ", ".join(f"'{d}'" for d in dropped)
        why = (why + "; " if why else "") + (
            f"not carried over: {left} (reputable takes addresses and networks only, "
            "no host names or '!' exclusions)"
        )
    return why or "no hosts listed: not carried over", carried


def _network_of(item: str) -> list[str]:
    # opendkim(8) PeerList form: an IPv6 address may be in brackets, "[2001:db8::]/32".
    text = item.strip().replace("[", "").replace("]", "")
    if text.lower() == "localhost":
        return ["127.0.0.1", "::1"]
    try:
        network = ipaddress.ip_network(text, strict=False)
    except ValueError:
        return []
    full = network.prefixlen == network.max_prefixlen
    return [str(network.network_address) if full else str(network)]


def _oversign(
    line: ConfLine, software: Software, expand: Expand
) -> tuple[str, tuple[TomlSetting, ...]]:
    items, error = expand(line.value)
    if error:
        return f"{error}: not carried over", ()
    extra = [h for h in dict.fromkeys(i.lower() for i in items) if h not in DEFAULT_OVERSIGN]
    if not extra:
        return (
            f"reputable oversigns {', '.join(DEFAULT_OVERSIGN)} by default: nothing to set",
            (),
        )
    return _carried(TomlSetting("signing", "oversign", (*DEFAULT_OVERSIGN, *extra)))


def _sign_headers(
    line: ConfLine, software: Software, expand: Expand
) -> tuple[str, tuple[TomlSetting, ...]]:
    items, _ = expand(line.value)
    names = tuple(dict.fromkeys(["from", *(i.lower() for i in items if "*" not in i)]))
    example = TomlSetting("signing", "headers", names)
    return (
        "reputable signs its own list of header fields (rspamd's, which covers these); "
        f"to sign exactly these instead, set {example}",
        (),
    )


def _socket(
    line: ConfLine, software: Software, expand: Expand
) -> tuple[str, tuple[TomlSetting, ...]]:
    kind, _, rest = line.value.partition(":")
    port, _, host = rest.partition("@")
    host = host.strip("[]")
    loopback = {"inet": "127.0.0.1", "inet6": "::1"}
    candidate = f"unix:{rest}" if kind in ("local", "unix") else f"{kind}:{port}@{host}"
    if kind in loopback and not host:
        candidate = f"{kind}:{port}@{loopback[kind]}"
    try:
        socket = parse_socket(candidate)
    except ValueError as exc:
        return f"reputable expects {exc}: not carried over", ()
    why, carried = _carried(TomlSetting("milter", "socket", socket.libmilter))
    if kind in loopback and not host:
        why += f" ({software} listened on every interface; only Postfix needs to reach it)"
    return why, carried


def _syslog(
    line: ConfLine, software: Software, expand: Expand
) -> tuple[str, tuple[TomlSetting, ...]]:
    if line.value[:1] in ("T", "t", "Y", "y", "1"):
        return _carried(TomlSetting("log", "target", "syslog"))
    return "reputable logs to standard error by default (the journal, under systemd)", ()


def _mode(line: ConfLine, software: Software, takeover: str) -> tuple[str, tuple[TomlSetting, ...]]:
    signed = "s" in line.value.lower()
    if takeover and signed:
        return f"{software} verified inbound mail in this mode; {takeover}", ()
    if takeover:
        return (
            f"{software} did not sign in this mode (its keys are imported all the same) but "
            f"verified inbound mail; {takeover}",
            (),
        )
    if not signed:
        return f"{software} did not sign in this mode; its keys are imported all the same", ()
    return "signing only: nothing to set", ()


def _verifying(
    line: ConfLine, software: Software, takeover: str
) -> tuple[str, tuple[TomlSetting, ...]]:
    name = line.name.lower()
    if not takeover:
        return f"a verifying setting; {software} did not verify in this mode: not carried over", ()
    if name == "authservid":
        return _authserv_id(line)
    if name.startswith("on-"):
        return _on_result(line, software)
    return "a verifying setting with no counterpart in reputable's [inbound]: not carried over", ()


def _authserv_id(line: ConfLine) -> tuple[str, tuple[TomlSetting, ...]]:
    if line.value == "HOSTNAME":  # opendkim.conf(5): the name gethostname(3) gives
        return (
            "the name gethostname(3) gives: reputable names this host (Postfix's myhostname by "
            "default) when [inbound] authserv_id is empty; set it if the two differ",
            (),
        )
    try:
        parse_config({"inbound": {"authserv_id": line.value}}, line.where)
    except ConfigError as exc:
        allowed = "; ".join(p.allowed for p in exc.problems)
        return f"not carried over, as reputable's [inbound] authserv_id: {allowed}", ()
    return _carried(TomlSetting("inbound", "authserv_id", line.value))


def _on_result(line: ConfLine, software: Software) -> tuple[str, tuple[TomlSetting, ...]]:
    action = _ON_ACTIONS.get(line.value.lower())
    if action is None:
        return "expected accept, discard, quarantine, reject or tempfail: not carried over", ()
    if action == "accepted":
        return f"{software} accepted such mail, as reputable does: nothing to set", ()
    return (
        f"{software} {action} such mail; reputable has no equivalent: of what it verifies, only "
        "a DMARC failure stops inbound mail, with [inbound] dmarc_enforce = true (rejected "
        "under p=reject, held under p=quarantine): not carried over",
        (),
    )


def _subdomains_setting(
    line: ConfLine, software: Software, expand: Expand
) -> tuple[str, tuple[TomlSetting, ...]]:
    if line.value[:1] in ("T", "t", "Y", "y", "1"):
        return "reputable signs exact domains: add each subdomain to [signing] domains", ()
    return "exact domains only, like reputable: nothing to set", ()


def _algorithm(
    line: ConfLine, software: Software, expand: Expand
) -> tuple[str, tuple[TomlSetting, ...]]:
    if line.value.lower() == "rsa-sha1":
        return "reputable never signs with rsa-sha1 (RFC 8301); the same keys sign rsa-sha256", ()
    return "reputable takes the algorithm from each key: see the algorithms line below", ()


def _note(text: str) -> Callable[[ConfLine, Software, Expand], tuple[str, tuple[TomlSetting, ...]]]:
    def note(line: ConfLine, software: Software, expand: Expand) -> tuple[str, tuple[()]]:
        return text.format(software=software), ()

    return note


_SPECIAL: Mapping[
    str, Callable[[ConfLine, Software, Expand], tuple[str, tuple[TomlSetting, ...]]]
] = {
    "canonicalization": _canonicalization,
    "internalhosts": _internal_hosts,
    "oversignheaders": _oversign,
    "signheaders": _sign_headers,
    "socket": _socket,
    "syslog": _syslog,
    "subdomains": _subdomains_setting,
    "signaturealgorithm": _algorithm,
    "omitheaders": _note("reputable signs only the fields in [signing] headers: not carried over"),
    "multiplesignatures": _note(
        "reputable adds one signature per configured algorithm with the From domain's key"
    ),
    "requiresafekeys": _note("reputable always refuses keys others can read: nothing to set"),
    "peerlist": _note("reputable has no list of clients to pass over: not carried over"),
    "macrolist": _note(
        "reputable decides by client address ([trust] internal_hosts) and SMTP AUTH "
        "([trust] authenticated): not carried over"
    ),
    "dontsignmailto": _note("reputable signs whoever the recipients are: not carried over"),
    "senderheaders": _note("reputable takes the signing domain from From only (RFC 6376 §5.4)"),
    "domain": _note("not used: the keys come from the KeyTable"),
    "selector": _note("not used: the keys come from the KeyTable"),
    "keyfile": _note("not used: the keys come from the KeyTable"),
    "selectored25519": _note("not used: the keys come from the KeyTable"),
    "signingtable": _note("not used: there is no KeyTable for it to name keys from"),
    "signingtableed25519": _note("not used: there is no KeyTableEd25519 to name keys from"),
    "keyfileed25519": _note("not used: the keys come from the KeyTable"),
}
