"""DMARC (RFC 9989, DMARCbis): policy discovery and the organizational domain by the DNS tree walk, and alignment. Interpreting is pure; query_dmarc and org_domain_of do I/O.

No public suffix list: RFC 9989 §4.10 finds both the record that applies to
an Author Domain and its organizational domain by asking _dmarc.<name> for
the domain and its parents, at most eight queries, stopping at a record
with a psd= tag.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

import dns.exception
import dns.name
import dns.rdtypes.txtbase
import dns.resolver

from reputable.checks.findings import Finding, Outcome, Status
from reputable.resolver import NoTimeLeft, failure_reason, resolve_by

DEFAULT_TTL_S = 300  # when no answer carried a TTL (nothing found anywhere)
RETRY_TTL_S = 60  # how long a DNS failure is believed before asking again
MAX_WALK_QUERIES = 8  # RFC 9989 §4.10
_SHORTCUT_LABELS = 7  # RFC 9989 §4.10 step 4: names of 8 labels or more jump to their last 7
POLICIES = ("none", "quarantine", "reject")  # RFC 9989 §4.7 (p, sp, np)

# RFC 9989 §4.7/§4.8: "v" first, its value exactly "DMARC1"; tags split by *WSP ";" *WSP.
_VERSION = re.compile(r"^[ \t]*[vV][ \t]*=[ \t]*DMARC1[ \t]*(?:;|$)")
_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:\S+$")  # RFC 3986 scheme ":" and something


@dataclass(frozen=True, slots=True)
class DmarcPolicy:
    """The DMARC policy that applies to mail From `from_domain`, and where it came from."""

    from_domain: str
    record_domain: str  # where the record was found: the From domain or an ancestor
    policy: str  # none | quarantine | reject: p=, or sp=/np= for a subdomain / non-existent one
    adkim: str = "r"
    aspf: str = "r"
    org_domain: str = ""  # the organizational domain of from_domain (RFC 9989 §4.10)
    testing: bool = False  # t=y: receivers apply one policy level lower (RFC 9989 §4.7)


class KeyRecord(StrEnum):
    """Whether a selector's published key record is the key that signs with it."""

    MATCHING = "matching"  # receivers verify the signature
    WRONG = "wrong"  # missing, or another key: the signature fails (RFC 6376 §6.1.2)
    UNKNOWN = "unknown"  # not checked yet, or the check failed


@dataclass(frozen=True, slots=True)
class DkimSignature:
    """One DKIM signature a message carries: d=, s= and the state of the record at s=._domainkey.d=."""

    domain: str
    selector: str
    record: KeyRecord


@dataclass(frozen=True, slots=True)
class DmarcLookup:
    """What the tree walk found for a From domain.

    `policy` is None when no record applies: none anywhere up the tree, or
    (then `ignored` says why) a record receivers must ignore. `error` is a
    DNS failure (then policy is None).
    """

    policy: DmarcPolicy | None
    error: str = ""
    ttl_s: int = DEFAULT_TTL_S
    from_domain: str = ""
    ignored: str = ""


def _normal(domain: str) -> str:
    return domain.strip().rstrip(".").lower()


# --- the tree walk over records already found (pure) ---


def parse_dmarc_record(text: str) -> dict[str, str] | None:
    """The tags of a DMARC record (names lower case), or None when it is not one (RFC 9989 §4.7).

    Syntax errors after v=DMARC1 are ignored part by part, as §4.7 says;
    the first of repeated tags wins.
    """
    if not _VERSION.match(text):
        return None
    tags: dict[str, str] = {}
    for part in text.split(";"):
        name, equals, value = part.partition("=")
        name = name.strip(" \t").lower()
        if equals and name.isalpha() and name not in tags:
            tags[name] = value.strip(" \t")
    return tags


def dmarc_record(txt: Sequence[str]) -> dict[str, str] | None:
    """The one DMARC record among the TXT records at a _dmarc name, or None.

    RFC 9989 §4.10 steps 2 and 6: records without v=DMARC1 are discarded, and
    several DMARC records are all discarded.
    """
    records = [tags for tags in map(parse_dmarc_record, txt) if tags is not None]
    return records[0] if len(records) == 1 else None


def _psd(tags: Mapping[str, str]) -> str:
    value = tags.get("psd", "u").lower()
    return value if value in ("y", "n") else "u"


def tree_walk_names(domain: str) -> tuple[str, ...]:
    """The names whose _dmarc record the walk asks for, in order (RFC 9989 §4.10 steps 3-7).

    The domain itself; then, for a name of 8 labels or more, its last 7
    labels, else its parent; then one label less each time, down to the
    top-level domain: never more than 8 names.
    """
    labels = [label for label in _normal(domain).split(".") if label]
    if not labels:
        return ()
    names = [".".join(labels)]
    rest = labels[-_SHORTCUT_LABELS:] if len(labels) >= _SHORTCUT_LABELS + 1 else labels[1:]
    while rest:
        names.append(".".join(rest))
        rest = rest[1:]
    return tuple(names)


def walk_records(
    domain: str, records: Mapping[str, Sequence[str]]
) -> list[tuple[str, dict[str, str]]]:
    """The names with one valid DMARC record, in walk order, as the walk would find them.

    `records` maps a name to the TXT records at _dmarc.<name> (a name
    missing from it has none). The walk stops at a record with psd=y or
    psd=n (RFC 9989 §4.10 steps 2 and 6).
    """
    found: list[tuple[str, dict[str, str]]] = []
    for name in tree_walk_names(domain):
        tags = dmarc_record(records.get(name, ()))
        if tags is None:
            continue
        found.append((name, tags))
        if _psd(tags) in ("y", "n"):
            break
    return found


def organizational_domain(domain: str, records: Mapping[str, Sequence[str]]) -> str:
    """The organizational domain of `domain` given the _dmarc records per name (RFC 9989 §4.10.2).

    Of the names with a valid record, longest first: one with psd=n is it;
    one with psd=y (other than `domain` itself) makes the name one label
    below it on the way to `domain` the organizational domain; otherwise
    the name with the fewest labels. No record at all: `domain` itself.
    """
    domain = _normal(domain)
    found = walk_records(domain, records)
    labels = domain.split(".")
    for name, tags in found:
        psd = _psd(tags)
        if psd == "n":
            return name
        if psd == "y" and name != domain:
            return ".".join(labels[-(name.count(".") + 2) :])
    return found[-1][0] if found else domain


def _valid_rua(tags: Mapping[str, str]) -> bool:
    return any(_URI.match(uri.strip(" \t")) for uri in tags.get("rua", "").split(","))


def _mode(tags: Mapping[str, str], name: str) -> str:
    value = tags.get(name, "r").lower()
    return value if value in ("r", "s") else "r"  # §4.7: syntax errors give way to defaults


def policy_tags(from_domain: str, records: Mapping[str, Sequence[str]]) -> tuple[str, str] | None:
    """(record domain, org domain) of the record that applies to `from_domain`, or None.

    RFC 9989 §4.10.1 (DMARC Policy Discovery): the record of the Author Domain,
    else of its organizational domain, else of its public suffix domain (the
    record with psd=y the walk stopped at).
    """
    from_domain = _normal(from_domain)
    found = dict(walk_records(from_domain, records))
    org = organizational_domain(from_domain, records)
    if from_domain in found:
        return from_domain, org
    if org in found:
        return org, org
    psds = [name for name, tags in found.items() if _psd(tags) == "y"]
    return (psds[-1], org) if psds else None


def discover_policy(
    from_domain: str,
    records: Mapping[str, Sequence[str]],
    author_exists: bool = True,
    ttl_s: int = DEFAULT_TTL_S,
) -> DmarcLookup:
    """The policy for mail From `from_domain`, given the _dmarc records per name (RFC 9989 §4.10.1).

    The Author Domain's own record gives p=; an ancestor's gives np= when
    the Author Domain does not exist (NXDOMAIN), else sp=, else p=. An
    absent p= is p=none; an invalid p=, sp= or np= is p=none when rua= has
    a valid URI, else the record is ignored (RFC 9989 §4.7, §4.10.1).
    """
    from_domain = _normal(from_domain)
    where = policy_tags(from_domain, records)
    if where is None:
        return DmarcLookup(None, ttl_s=ttl_s, from_domain=from_domain)
    record_domain, org = where
    tags = dict(walk_records(from_domain, records))[record_domain]
    invalid = [
        f"{name}={tags[name]}"
        for name in ("p", "sp", "np")
        if name in tags and tags[name].lower() not in POLICIES
    ]
    if invalid and not _valid_rua(tags):
        reason = (
            f"the DMARC record at _dmarc.{record_domain} has an invalid {', '.join(invalid)} "
            "and no valid rua=: receivers ignore it (RFC 9989 §4.10.1)"
        )
        return DmarcLookup(None, ttl_s=ttl_s, from_domain=from_domain, ignored=reason)
    if invalid:
        policy = "none"  # §4.10.1: act as if the record said p=none
    elif record_domain == from_domain:
        policy = tags.get("p", "none").lower()
    elif not author_exists and "np" in tags:
        policy = tags["np"].lower()
    else:
        policy = tags.get("sp", tags.get("p", "none")).lower()
    return DmarcLookup(
        DmarcPolicy(
            from_domain,
            record_domain,
            policy,
            _mode(tags, "adkim"),
            _mode(tags, "aspf"),
            org,
            tags.get("t", "n").lower() == "y",
        ),
        ttl_s=ttl_s,
        from_domain=from_domain,
    )


# --- asking DNS (I/O) ---


@dataclass(frozen=True, slots=True)
class _Walk:
    records: dict[str, tuple[str, ...]]
    error: str
    ttl_s: int


def _txt(
    name: str, resolver: dns.resolver.Resolver, deadline: float
) -> tuple[tuple[str, ...], int | None]:
    """The TXT records at `name` (() for NXDOMAIN/NODATA) and their TTL.

    Raises DNSException on DNS trouble, NoTimeLeft past the deadline.
    """
    answer = resolve_by(resolver, name, "TXT", deadline)
    if answer is None or answer.rrset is None:
        return (), None
    texts = tuple(
        b"".join(rd.strings).decode("utf-8", "replace")
        for rd in answer.rrset
        if isinstance(rd, dns.rdtypes.txtbase.TXTBase)
    )
    return texts, answer.chaining_result.minimum_ttl


def _walk(domain: str, resolver: dns.resolver.Resolver, deadline: float, timeout_s: float) -> _Walk:
    """Ask _dmarc.<name> for each name of the walk until a psd=y/n record (RFC 9989 §4.10)."""
    records: dict[str, tuple[str, ...]] = {}
    ttls: list[int] = []
    for name in tree_walk_names(domain):
        try:
            txt, ttl = _txt(f"_dmarc.{name}", resolver, deadline)
        except (dns.exception.DNSException, NoTimeLeft) as exc:
            return _Walk(records, f"_dmarc.{name}: {failure_reason(exc, timeout_s)}", RETRY_TTL_S)
        records[name] = txt
        tags = dmarc_record(txt)
        if tags is not None and ttl is not None:
            ttls.append(ttl)
        if tags is not None and _psd(tags) in ("y", "n"):
            break
    return _Walk(records, "", min(ttls, default=DEFAULT_TTL_S))


def _exists(domain: str, resolver: dns.resolver.Resolver, deadline: float) -> bool:
    """False only on NXDOMAIN (RFC 9989 §3.2, "Non-existent Domains", after RFC 8020).

    A failed lookup counts as existing: sp= rather than np=.
    """
    try:
        return resolve_by(resolver, domain, "A", deadline) is not None
    except (dns.exception.DNSException, NoTimeLeft):
        return True


def query_dmarc(from_domain: str, resolver: dns.resolver.Resolver, timeout_s: float) -> DmarcLookup:
    """The DMARC policy for mail From `from_domain`, by the RFC 9989 §4.10 tree walk.

    At most 8 TXT queries at _dmarc.<name>, plus one query of the From
    domain itself when the policy comes from an ancestor with np= (does it
    exist?). The whole lookup is bounded by `timeout_s`; DNS trouble is
    `error`, never raised.
    """
    from_domain = _normal(from_domain)
    deadline = time.monotonic() + timeout_s
    walk = _walk(from_domain, resolver, deadline, timeout_s)
    if walk.error:
        return DmarcLookup(
            None, f"cannot look up {walk.error}", RETRY_TTL_S, from_domain=from_domain
        )
    lookup = discover_policy(from_domain, walk.records, ttl_s=walk.ttl_s)
    where = policy_tags(from_domain, walk.records)
    if lookup.policy is not None and where is not None and where[0] != from_domain:
        tags = dict(walk_records(from_domain, walk.records))[where[0]]
        if "np" in tags and not _exists(from_domain, resolver, deadline):
            lookup = discover_policy(from_domain, walk.records, False, walk.ttl_s)
    return lookup


def org_domain_of(domain: str, resolver: dns.resolver.Resolver, timeout_s: float) -> str:
    """The organizational domain of `domain` by the tree walk (I/O); `domain` itself when DNS fails.

    At most 8 queries within `timeout_s`. Falling back to the name itself
    errs on the side of "not aligned". Give interpret_dmarc an `org_of`
    built on this (with a cache: the answer lasts as long as the records).
    """
    domain = _normal(domain)
    walk = _walk(domain, resolver, time.monotonic() + timeout_s, timeout_s)
    return domain if walk.error else organizational_domain(domain, walk.records)


# --- alignment and the verdict (pure) ---


def aligned(identifier: str, from_domain: str, mode: str, org_of: Callable[[str], str]) -> bool:
    """Identifier alignment (RFC 9989 §4.4, §4.10.2): strict = identical, relaxed = same organizational domain."""
    identifier, from_domain = _normal(identifier), _normal(from_domain)
    if not identifier or not from_domain:
        return False
    if identifier == from_domain:
        return True
    if mode == "s":
        return False
    return _normal(org_of(identifier)) == _normal(org_of(from_domain))


def _mode_text(mode: str) -> str:
    return "strict" if mode == "s" else "relaxed"


def interpret_dmarc(
    lookup: DmarcLookup,
    mail_from_domain: str,
    spf_passed: bool,
    signatures: Sequence[DkimSignature],
    org_of: Callable[[str], str],
) -> Finding:
    """The checklist line for DMARC of one From domain; id "dmarc.<from domain>".

    Aligned when SPF passed for an aligned MAIL FROM domain, or a DKIM
    signature whose d= is aligned verifies (RFC 9989 §4.4, §4.10.2): its
    selector's published record is the key that signs. A signature whose
    record is missing or another key fails at the receiver and counts for
    nothing; one whose record could not be checked leaves DMARC a dns_error
    unless SPF aligns. Unaligned mail gates as dmarc_unaligned; no record is
    an advisory warning; a DNS error is dns_error.
    """
    from_domain = _normal(lookup.policy.from_domain if lookup.policy else lookup.from_domain)
    fid = f"dmarc.{from_domain}"
    if lookup.error:
        return Finding(
            fid,
            Status.WARN,
            f"cannot tell the DMARC policy of {from_domain}: {lookup.error}",
            f"check that the name servers of {from_domain} answer, and [dns] nameservers",
            Outcome.DNS_ERROR,
            lookup.ttl_s,
        )
    policy = lookup.policy
    if policy is None:
        record = f'"v=DMARC1; p=none; rua=mailto:dmarc-reports@{from_domain}"'
        summary = lookup.ignored or (
            f"no DMARC record for {from_domain} (none at _dmarc.{from_domain} or up the tree): "
            "Gmail and Yahoo require one of bulk senders"
        )
        return Finding(
            fid,
            Status.WARN,
            summary,
            f"publish TXT at _dmarc.{from_domain}: {record}, then tighten p= once reports "
            "show your mail aligned",
            ttl_s=lookup.ttl_s,
        )

    def org(name: str) -> str:
        if _normal(name) == from_domain and policy.org_domain:
            return policy.org_domain
        return org_of(name)

    mail_from = _normal(mail_from_domain)
    spf_ok = spf_passed and aligned(mail_from, from_domain, policy.aspf, org)
    dkim_aligned = [s for s in signatures if aligned(s.domain, from_domain, policy.adkim, org)]
    dkim_ok = [s for s in dkim_aligned if s.record is KeyRecord.MATCHING]
    testing = " (t=y: testing)" if policy.testing else ""
    stated = f"p={policy.policy}{testing} at _dmarc.{policy.record_domain}"
    if dkim_ok or spf_ok:
        by = (
            f"DKIM d={_normal(dkim_ok[0].domain)} ({_mode_text(policy.adkim)})"
            if dkim_ok
            else f"SPF for MAIL FROM {mail_from} ({_mode_text(policy.aspf)})"
        )
        return Finding(
            fid,
            Status.OK,
            f"mail From {from_domain} passes DMARC ({stated}), aligned by {by}",
            ttl_s=lookup.ttl_s,
        )
    spf_why = _spf_why(mail_from, from_domain, spf_passed, policy)
    unknown = [s for s in dkim_aligned if s.record is KeyRecord.UNKNOWN]
    if unknown:
        return Finding(
            fid,
            Status.WARN,
            f"cannot tell whether mail From {from_domain} passes DMARC ({stated}): {spf_why}, "
            f"and the key record of {_signature_text(unknown[0])} could not be checked",
            f"see the {_record_id(unknown[0])} finding",
            Outcome.DNS_ERROR,
            lookup.ttl_s,
        )
    return Finding(
        fid,
        Status.FAIL,
        f"mail From {from_domain} fails DMARC ({stated}): {spf_why} and "
        f"{_dkim_why(signatures, dkim_aligned, from_domain, policy)}",
        _unaligned_fix(dkim_aligned, from_domain, policy),
        Outcome.DMARC_UNALIGNED,
        lookup.ttl_s,
    )


def _signature_text(signature: DkimSignature) -> str:
    return f"s={signature.selector} d={_normal(signature.domain)}"


def _record_id(signature: DkimSignature) -> str:
    return f"dkim.{signature.selector}.{_normal(signature.domain)}"


def _unaligned_fix(
    dkim_aligned: Sequence[DkimSignature], from_domain: str, policy: DmarcPolicy
) -> str:
    mail_from = (
        f"of {from_domain}" if policy.aspf == "s" else f"under {policy.org_domain or from_domain}"
    )
    spf = f"or send it with a MAIL FROM {mail_from} whose SPF allows this host"
    if dkim_aligned:
        wrong = dkim_aligned[0]
        return (
            f"publish the record `reputable keys dns {_normal(wrong.domain)}` prints for "
            f"s={wrong.selector} (the {_record_id(wrong)} finding says what is wrong), {spf}"
        )
    return (
        f"sign mail From {from_domain} with a key of {from_domain} (reputable keys new "
        f"{from_domain}, then publish its record), {spf}"
    )


def _spf_why(mail_from: str, from_domain: str, spf_passed: bool, policy: DmarcPolicy) -> str:
    if not mail_from:
        return "the null MAIL FROM <> cannot align"
    if not spf_passed:
        return f"SPF does not pass for MAIL FROM {mail_from}"
    return f"MAIL FROM {mail_from} is not aligned with {from_domain} ({_mode_text(policy.aspf)})"


def _dkim_why(
    signatures: Sequence[DkimSignature],
    dkim_aligned: Sequence[DkimSignature],
    from_domain: str,
    policy: DmarcPolicy,
) -> str:
    mode = _mode_text(policy.adkim)
    if dkim_aligned:
        # Every aligned signature has a wrong record: it fails, so it aligns nothing.
        wrong = ", ".join(_signature_text(s) for s in dkim_aligned)
        fails = "signature {} fails" if len(dkim_aligned) == 1 else "signatures {} fail"
        return (
            f"the DKIM {fails.format(wrong)} at the receiver: the published key record is "
            f"missing or another key (see {_record_id(dkim_aligned[0])})"
        )
    if not signatures:
        return f"no DKIM signature of {from_domain} ({mode})"
    signed = ", ".join(_normal(s.domain) for s in signatures)
    return f"no DKIM signature of {from_domain} ({mode}; signed by {signed})"
