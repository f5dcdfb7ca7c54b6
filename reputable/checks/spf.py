"""SPF (RFC 7208) for our sending IPs: pyspf's check_host through our resolver, and a lint of the record tree. Interpreting is pure; query_* do I/O.

How pyspf is routed. pyspf resolves every name in one method, `spf.query.dns`,
which calls the module-level function `spf.DNSLookup` (dnspython's *default*
resolver, i.e. /etc/resolv.conf, whatever `[dns]` says). Rather than point
that global at our resolver, `_RoutedQuery` subclasses `spf.query` and
overrides `dns`: the per-query cache and the void-lookup limit stay as pyspf
has them, only the lookup itself goes to the resolver handed to
`query_spf`, within one deadline for the whole evaluation. Nothing global
changes, so concurrent checks with different resolvers cannot interfere.
A unit test fails if `spf.DNSLookup` is ever called.
"""

from __future__ import annotations

import ipaddress
import re
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import dns.exception
import dns.name
import dns.rdata
import dns.rdtypes.ANY.MX
import dns.rdtypes.ANY.PTR
import dns.rdtypes.IN.A
import dns.rdtypes.IN.AAAA
import dns.rdtypes.txtbase
import dns.resolver

from reputable.checks.findings import Finding, Outcome, Status
from reputable.resolver import NoTimeLeft, failure_reason, resolve_by

with warnings.catch_warnings():
    # pyspf 2.0.14 has invalid escape sequences in its docstrings: a SyntaxWarning
    # (an error under -W error) whenever its .pyc is (re)compiled.
    warnings.simplefilter("ignore", SyntaxWarning)
    warnings.simplefilter("ignore", DeprecationWarning)
    import spf

DEFAULT_TTL_S = 300  # when no answer carried a TTL (e.g. every name was NXDOMAIN)
RETRY_TTL_S = 60  # how long a DNS failure is believed before asking again
MAX_LOOKUP_TERMS = 10  # RFC 7208 §4.6.4
MAX_VOID_LOOKUPS = 2  # RFC 7208 §4.6.4
_MAX_WALK_QUERIES = 40  # bound on the queries query_spf_tree makes (pyspf stops at 4x10 too)


class SpfResult(StrEnum):
    """The results of check_host() (RFC 7208 §2.6)."""

    PASS = "pass"
    FAIL = "fail"
    SOFTFAIL = "softfail"
    NEUTRAL = "neutral"
    NONE = "none"
    PERMERROR = "permerror"
    TEMPERROR = "temperror"


@dataclass(frozen=True, slots=True)
class SpfEvaluation:
    """What check_host() says of `ip` sending as `domain`.

    `explanation` is pyspf's (for a permerror or temperror: why);
    `mechanism` the term that decided the result ("-all", "ip4:…"; "" when
    none matched). `ttl_s` is the smallest TTL of the answers used.
    """

    ip: str
    domain: str
    result: SpfResult
    explanation: str = ""
    ttl_s: int = DEFAULT_TTL_S
    mechanism: str = ""


def _normal_domain(domain: str) -> str:
    return domain.strip().rstrip(".").lower()


# --- check_host() through our resolver (I/O) ---


def _rdata_value(rdata: dns.rdata.Rdata) -> Any:
    """An answer in the form pyspf's own DNSLookup gives it (see spf.DNSLookup_dnspython)."""
    if isinstance(rdata, dns.rdtypes.IN.A.A | dns.rdtypes.IN.AAAA.AAAA):
        return rdata.address
    if isinstance(rdata, dns.rdtypes.ANY.MX.MX):
        return (rdata.preference, rdata.exchange.to_text(omit_final_dot=True))
    if isinstance(rdata, dns.rdtypes.ANY.PTR.PTR):
        return rdata.target.to_text(omit_final_dot=True)
    if isinstance(rdata, dns.rdtypes.txtbase.TXTBase):
        return rdata.strings  # pyspf joins the character-strings itself (RFC 7208 §3.3)
    return rdata.to_text()


class _RoutedQuery(spf.query):
    """An spf.query whose every DNS lookup goes through `resolver`, all within `timeout_s`."""

    def __init__(
        self, ip: str, sender: str, helo: str, resolver: dns.resolver.Resolver, timeout_s: float
    ) -> None:
        # strict=True: RFC 7208 processing limits are errors, as at the big receivers.
        super().__init__(i=ip, s=sender, h=helo, strict=True, timeout=timeout_s, querytime=0)
        self._resolver = resolver
        self._timeout_s = timeout_s
        self._deadline = time.monotonic() + timeout_s
        self.min_ttl: int | None = None

    def dns(
        self,
        name: str,
        qtype: str,
        cnames: dict[str, str] | None = None,
        ignore_void: bool = False,
    ) -> list[Any]:
        # pyspf 2.0.14's query.dns, less its CNAME chasing (the resolver follows CNAMEs).
        if not name:
            raise spf.PermError("empty domain name")
        name = str(name).removesuffix(".").lower()
        if not all(0 < len(label) < 64 for label in name.split(".")):
            return []  # not a valid DNS name: nothing can be there
        cached = self.cache.get((name, qtype))
        if cached:
            return cached
        result = self._lookup(name, qtype)
        if result:
            self.cache[(name, qtype)] = result
        elif not ignore_void:
            # RFC 7208 §4.6.4: more than two lookups answered NXDOMAIN or empty is a permerror.
            self.void_lookups += 1
            if self.void_lookups > spf.MAX_VOID_LOOKUPS:
                raise spf.PermError(f"Void lookup limit of {spf.MAX_VOID_LOOKUPS} exceeded")
        return result

    def _lookup(self, name: str, qtype: str) -> list[Any]:
        remaining = self._deadline - time.monotonic()
        if remaining <= 0:
            raise spf.TempError(
                f"DNS: no time left to look up {qtype} {name} "
                f"(the whole check is bounded by {self._timeout_s:g} s)"
            )
        try:
            qname = dns.name.from_text(name)
        except dns.exception.DNSException:
            return []
        try:
            answer = self._resolver.resolve(
                qname, qtype, raise_on_no_answer=False, lifetime=remaining, search=False
            )
        except (dns.resolver.NXDOMAIN, dns.resolver.YXDOMAIN):
            return []
        except dns.exception.Timeout:
            raise spf.TempError(
                f"DNS: no answer for {qtype} {name} within {self._timeout_s:g} s"
            ) from None
        except dns.exception.DNSException as exc:
            raise spf.TempError(
                f"DNS: {qtype} {name}: {failure_reason(exc, self._timeout_s)}"
            ) from None
        if answer.rrset is None:
            return []
        ttl = answer.chaining_result.minimum_ttl
        self.min_ttl = ttl if self.min_ttl is None else min(self.min_ttl, ttl)
        return [_rdata_value(rdata) for rdata in answer.rrset]


def all_pass(evaluations: Sequence[SpfEvaluation]) -> bool:
    """SPF passed for every sending IP (and there was at least one): DMARC may align by SPF."""
    return bool(evaluations) and all(e.result is SpfResult.PASS for e in evaluations)


def query_spf(
    ip: str,
    domain: str,
    helo: str,
    resolver: dns.resolver.Resolver,
    timeout_s: float,
    sender: str = "",
) -> SpfEvaluation:
    """check_host(ip, domain, sender) (RFC 7208 §4), every DNS query through `resolver`.

    `domain` is the MAIL FROM domain, or the HELO name for the HELO identity;
    `sender` the address (postmaster@domain when not given) and `helo` feed the
    %{l}, %{s} and %{h} macros. The whole evaluation is bounded by `timeout_s`.
    Never raises: DNS trouble is TEMPERROR.
    """
    domain = _normal_domain(domain)
    try:
        address = ipaddress.ip_address(ip.strip())
    except ValueError:
        return SpfEvaluation(
            ip, domain, SpfResult.PERMERROR, f"{ip!r} is not an IP address", RETRY_TTL_S
        )
    ip_text = str(address)
    if not domain:
        # RFC 7208 §4.3: no domain to check → "none".
        return SpfEvaluation(ip_text, domain, SpfResult.NONE, "no domain to check")
    query = _RoutedQuery(
        ip_text, sender or f"postmaster@{domain}", helo or domain, resolver, timeout_s
    )
    try:
        result_text, _code, explanation = query.check()
    except Exception as exc:  # a pyspf bug must not reach the milter
        return SpfEvaluation(
            ip_text, domain, SpfResult.TEMPERROR, f"pyspf failed: {exc!r}", RETRY_TTL_S
        )
    try:
        result = SpfResult(result_text)
    except ValueError:
        result = SpfResult.PERMERROR
        explanation = f"pyspf gave the unknown result {result_text!r}: {explanation}"
    if result is SpfResult.TEMPERROR:
        ttl = RETRY_TTL_S
    else:
        ttl = query.min_ttl if query.min_ttl is not None else DEFAULT_TTL_S
    return SpfEvaluation(ip_text, domain, result, explanation, ttl, query.mechanism or "")


# --- what check_host() means for our mail (pure) ---


def _address_term(ip: str) -> str:
    return f"ip6:{ip}" if ":" in ip else f"ip4:{ip}"


_PREFIXES = ("SPF Permanent Error: ", "SPF Temporary Error: ")


def _reason(explanation: str) -> str:
    for prefix in _PREFIXES:
        explanation = explanation.removeprefix(prefix)
    return explanation or "no reason given"


def _permerror_fix(reason: str, domain: str) -> str:
    lowered = reason.lower()
    if "lookup" in lowered and "void" not in lowered:
        return (
            f"cut the SPF record of {domain} to at most 10 DNS-querying terms "
            "(include, a, mx, ptr, exists, redirect, counted through includes, RFC 7208 §4.6.4): "
            "replace includes and a/mx by the ip4:/ip6: ranges they stand for"
        )
    if "void" in lowered:
        return (
            f"remove the terms of the SPF record of {domain} that name domains without records "
            "(more than 2 empty lookups is a permerror, RFC 7208 §4.6.4)"
        )
    if "two or more" in lowered:
        return f"merge the v=spf1 TXT records of {domain} into one (RFC 7208 §4.5)"
    return f"fix the syntax of the SPF record of {domain} (RFC 7208 §4.6, §12)"


def interpret_spf(ev: SpfEvaluation, identity: str = "mailfrom") -> Finding:
    """The checklist line for one check_host() result; id "spf.<domain>.<ip>".

    FAIL and PERMERROR gate as spf_fail (receivers treat a broken record as
    failing), SOFTFAIL as spf_softfail; TEMPERROR is a DNS error; NEUTRAL and
    NONE are advisory warnings.
    """
    fid = f"spf.{ev.domain}.{ev.ip}"
    who = f"SPF for HELO name {ev.domain}" if identity == "helo" else f"SPF for {ev.domain}"
    term = _address_term(ev.ip)
    add_fix = (
        f"add {term} (or an a/mx mechanism naming this host) to the SPF record of "
        f"{ev.domain}, before its -all"
    )
    ttl = ev.ttl_s
    match ev.result:
        case SpfResult.PASS:
            how = f" ({ev.mechanism})" if ev.mechanism else ""
            return Finding(fid, Status.OK, f"{who} allows {ev.ip}{how}", ttl_s=ttl)
        case SpfResult.FAIL:
            return Finding(
                fid,
                Status.FAIL,
                f"{who} does not allow {ev.ip} ({ev.mechanism or '-all'}): receivers may refuse "
                "or junk the mail",
                add_fix,
                Outcome.SPF_FAIL,
                ttl,
            )
        case SpfResult.SOFTFAIL:
            return Finding(
                fid,
                Status.FAIL,
                f"{who} does not allow {ev.ip} ({ev.mechanism or '~all'}, softfail): receivers "
                "count it against the mail",
                add_fix,
                Outcome.SPF_SOFTFAIL,
                ttl,
            )
        case SpfResult.NEUTRAL:
            how = ev.mechanism or "no mechanism matched"
            return Finding(
                fid,
                Status.WARN,
                f"{who} says nothing about {ev.ip} ({how}, neutral): receivers treat it like "
                "no SPF at all",
                add_fix,
                ttl_s=ttl,
            )
        case SpfResult.NONE:
            return Finding(
                fid,
                Status.WARN,
                f"no SPF record at {ev.domain}: receivers cannot tell that {ev.ip} may send for it",
                f'publish one TXT record at {ev.domain}: "v=spf1 {term} -all"',
                ttl_s=ttl,
            )
        case SpfResult.PERMERROR:
            reason = _reason(ev.explanation)
            return Finding(
                fid,
                Status.FAIL,
                f"{who} is broken ({reason}): receivers treat a permerror as failing "
                "(RFC 7208 §2.6.7)",
                _permerror_fix(reason, ev.domain),
                Outcome.SPF_FAIL,
                ttl,
            )
        case _:  # TEMPERROR
            return Finding(
                fid,
                Status.WARN,
                f"could not evaluate {who} for {ev.ip}: {_reason(ev.explanation)}",
                f"check that the name servers of {ev.domain} answer, and [dns] nameservers",
                Outcome.DNS_ERROR,
                ttl,
            )


# --- the record tree: what query_spf_tree found (I/O), and its lint (pure) ---


@dataclass(frozen=True, slots=True)
class SpfRecordTree:
    """The TXT records at `domain` and, for its one SPF record, the trees of its include:/redirect= targets.

    `txt` holds every TXT record at the name (strings joined); () for
    NXDOMAIN or no TXT; None when the lookup failed (`error` says why).
    `children` are the walked include:/redirect= targets of the SPF record,
    once each; a target missing from `children` was not walked (a macro, a
    loop back to an ancestor, or the walk's bound). `void_terms` are the
    a/mx/exists terms whose lookup found nothing (RFC 7208 §4.6.4).
    """

    domain: str
    txt: tuple[str, ...] | None = ()
    error: str = ""
    children: tuple[SpfRecordTree, ...] = ()
    void_terms: tuple[str, ...] = ()
    ttl_s: int = DEFAULT_TTL_S


_SPF_VERSION = re.compile(r"^v=spf1(?: |$)", re.IGNORECASE)  # RFC 7208 §4.5
_MODIFIER = re.compile(r"^([a-z][a-z0-9_.-]*)=(.*)$", re.IGNORECASE | re.DOTALL)  # §12 ABNF
_MECHANISM = re.compile(
    r"^([-+?~]?)(all|include|a|mx|ptr|ip4|ip6|exists)(?=$|[:/])(.*)$", re.IGNORECASE | re.DOTALL
)
_DUAL_CIDR = re.compile(r"(?:/\d{1,3})?(?://\d{1,3})?$")
_TOPLABEL = re.compile(r"^(?=.*[a-z])[a-z0-9](?:[a-z0-9-]*[a-z0-9])?$", re.IGNORECASE)
DNS_TERMS = frozenset({"include", "a", "mx", "ptr", "exists", "redirect"})  # RFC 7208 §4.6.4


def spf_records(txt: tuple[str, ...]) -> list[str]:
    """The TXT records that are SPF records (RFC 7208 §4.5: "v=spf1" then a space or the end)."""
    return [record for record in txt if _SPF_VERSION.match(record)]


@dataclass(frozen=True, slots=True)
class _Term:
    text: str
    name: str  # mechanism or modifier name, lower case
    qualifier: str = "+"  # mechanisms only
    target: str = ""  # the domain-spec it queries; "" when none
    modifier: bool = False
    error: str = ""  # why the term is a syntax error (a permerror at receivers)


def _valid_domain_spec(spec: str) -> str:
    """Why a macro-free domain-spec is invalid (RFC 7208 §7.1 domain-end), or ""."""
    name = spec.removesuffix(".")
    labels = name.split(".")
    if len(labels) < 2 or not all(0 < len(label) < 64 for label in labels):
        return f"{spec!r} is not a fully qualified domain name"
    if not _TOPLABEL.match(labels[-1]):
        return f"{spec!r} does not end in a valid top label"
    return ""


def _parse_term(text: str, domain: str) -> _Term:
    """One term of an SPF record (RFC 7208 §4.6.1, §5, §6)."""
    modifier = _MODIFIER.match(text)
    if modifier:
        name, value = modifier.group(1).lower(), modifier.group(2)
        if name in ("redirect", "exp"):
            error = "" if value else f"{name}= has no domain"
            if value and "%" not in value:
                error = _valid_domain_spec(value)
            target = value.removesuffix(".").lower() if name == "redirect" else ""
            return _Term(text, name, target=target, modifier=True, error=error)
        return _Term(text, name, modifier=True)  # §6: unknown modifiers are ignored
    mechanism = _MECHANISM.match(text)
    if not mechanism:
        return _Term(text, "?", error=f"unknown mechanism {text!r}")
    qualifier = mechanism.group(1) or "+"
    name, rest = mechanism.group(2).lower(), mechanism.group(3)
    term = _Term(text, name, qualifier)
    if name == "all":
        return (
            term
            if not rest
            else _Term(text, name, qualifier, error=f"{text!r}: all takes no value")
        )
    if name in ("ip4", "ip6"):
        return _check_network(term, rest)
    if name in ("include", "exists"):
        spec = rest[1:] if rest.startswith(":") else ""
        if not spec:
            return _Term(text, name, qualifier, error=f"{text!r}: {name} needs a domain")
    elif name in ("a", "mx"):
        spec = _DUAL_CIDR.sub("", rest)
        if spec and not spec.startswith(":"):
            return _Term(text, name, qualifier, error=f"{text!r}: bad CIDR length")
        spec = spec[1:] or domain
    else:  # ptr
        if rest and not rest.startswith(":"):
            return _Term(text, name, qualifier, error=f"{text!r}: ptr takes no CIDR length")
        spec = rest[1:] or domain
    error = "" if "%" in spec else _valid_domain_spec(spec)
    return _Term(text, name, qualifier, spec.removesuffix(".").lower(), error=error)


def _check_network(term: _Term, rest: str) -> _Term:
    value = rest[1:] if rest.startswith(":") else ""
    try:
        if term.name == "ip4":
            address, _, length = value.partition("/")
            ipaddress.IPv4Address(address)
            if length and not (length.isdigit() and int(length) <= 32):
                raise ValueError(length)
        else:
            address, _, length = value.partition("/")
            ipaddress.IPv6Address(address)
            if length and not (length.isdigit() and int(length) <= 128):
                raise ValueError(length)
    except ValueError:
        return _Term(
            term.text, term.name, term.qualifier, error=f"{term.text!r} is not a valid network"
        )
    return term


def parse_spf_terms(record: str, domain: str) -> list[_Term]:
    """The terms of an SPF record after "v=spf1" (RFC 7208 §4.6.1: separated by spaces)."""
    return [_parse_term(text, domain) for text in record.split(" ")[1:] if text]


# (I/O) ---


class _Walker:
    """One bounded walk of include:/redirect= targets (at most _MAX_WALK_QUERIES queries)."""

    def __init__(self, resolver: dns.resolver.Resolver, timeout_s: float) -> None:
        self.resolver = resolver
        self.timeout_s = timeout_s
        self.deadline = time.monotonic() + timeout_s
        self.queries_left = _MAX_WALK_QUERIES

    def _resolve(self, name: str, rdtype: str) -> tuple[list[dns.rdata.Rdata], int | None]:
        """The records (empty for NXDOMAIN/NODATA) and their TTL.

        Raises DNSException when the lookup fails, NoTimeLeft past the deadline.
        """
        if self.deadline <= time.monotonic():
            raise NoTimeLeft  # before the query counts against the walk's budget
        self.queries_left -= 1
        answer = resolve_by(self.resolver, name, rdtype, self.deadline)
        if answer is None:
            return [], None
        if answer.rrset is None:
            return [], None
        return list(answer.rrset), answer.chaining_result.minimum_ttl

    def txt(self, name: str) -> tuple[tuple[str, ...] | None, str, int | None]:
        try:
            rdatas, ttl = self._resolve(name, "TXT")
        except (dns.exception.DNSException, NoTimeLeft) as exc:
            return None, failure_reason(exc, self.timeout_s), None
        records = tuple(
            b"".join(rd.strings).decode("utf-8", "replace")
            for rd in rdatas
            if isinstance(rd, dns.rdtypes.txtbase.TXTBase)
        )
        return records, "", ttl

    def void(self, term: _Term) -> bool:
        """Whether the lookup of an a/mx/exists term finds nothing; False when it cannot tell."""
        types = {"a": ("A", "AAAA"), "mx": ("MX",), "exists": ("A",)}[term.name]
        try:
            for rdtype in types:
                if self.queries_left <= 0:
                    return False
                if self._resolve(term.target, rdtype)[0]:
                    return False
        except (dns.exception.DNSException, NoTimeLeft):
            return False
        return True

    def walk(self, domain: str, path: tuple[str, ...]) -> SpfRecordTree:
        txt, error, ttl = self.txt(domain)
        ttl_s = ttl if ttl is not None else DEFAULT_TTL_S
        if txt is None:
            return SpfRecordTree(domain, None, error, ttl_s=RETRY_TTL_S)
        records = spf_records(txt)
        if len(records) != 1:
            return SpfRecordTree(domain, txt, ttl_s=ttl_s)
        terms = parse_spf_terms(records[0], domain)
        has_all = any(t.name == "all" and not t.modifier for t in terms)
        children: dict[str, SpfRecordTree] = {}
        voids: list[str] = []
        for term in terms:
            if term.error or not term.target or "%" in term.target:
                continue
            follows = term.name == "include" or (term.name == "redirect" and not has_all)
            if follows:
                if term.target in children or term.target in (*path, domain):
                    continue
                if self.queries_left > 0:
                    children[term.target] = self.walk(term.target, (*path, domain))
            elif term.name in ("a", "mx", "exists") and self.queries_left > 0 and self.void(term):
                voids.append(term.text)
        ttl_s = min([ttl_s, *(child.ttl_s for child in children.values())])
        return SpfRecordTree(domain, txt, "", tuple(children.values()), tuple(voids), ttl_s)


def query_spf_tree(domain: str, resolver: dns.resolver.Resolver, timeout_s: float) -> SpfRecordTree:
    """The SPF record of `domain` and, recursively, of its include:/redirect= targets.

    Also probes the a/mx/exists targets (macro-free ones) to count void
    lookups. At most 40 queries, all within `timeout_s`; DNS trouble is
    recorded in the tree (txt None, error), never raised.
    """
    return _Walker(resolver, timeout_s).walk(_normal_domain(domain), ())


# (pure) ---


@dataclass(slots=True)
class _Lint:
    """What linting one tree found so far: an accumulator local to one lint_spf_record call."""

    lookups: int = 0
    voids: int = 0
    problems: list[tuple[Status, str, str, Outcome | None]] = field(default_factory=list)

    def add(self, status: Status, summary: str, fix: str, outcome: Outcome | None = None) -> None:
        if (status, summary, fix, outcome) not in self.problems:
            self.problems.append((status, summary, fix, outcome))


def _lint_term(
    lint: _Lint, term: _Term, where: str, sender: str, role: str, seen_modifiers: set[str]
) -> None:
    """Count one term and note what is wrong with it; `sender` is the domain being checked."""
    if term.error:
        lint.add(
            Status.FAIL,
            f"{where} has a syntax error ({term.error}): receivers return permerror "
            "(RFC 7208 §4.6)",
            f"fix {term.text!r} in {where} (RFC 7208 §5, §6, §12)",
            Outcome.SPF_FAIL,
        )
        return
    if term.modifier and term.name in ("redirect", "exp"):
        if term.name in seen_modifiers:
            lint.add(
                Status.FAIL,
                f"{where} has {term.name}= twice: receivers return permerror (RFC 7208 §6)",
                f"keep one {term.name}= in {where}",
                Outcome.SPF_FAIL,
            )
        seen_modifiers.add(term.name)
    if term.name in DNS_TERMS:
        lint.lookups += 1
    if term.name == "all" and not term.modifier and term.qualifier == "+":
        lint.add(
            Status.WARN,
            f"{where} ends in +all: it lets any host on the Internet send as {sender}",
            f"end {where} with -all (or ~all)",
        )
    elif term.name == "all" and not term.modifier and term.qualifier == "?" and role != "include":
        lint.add(
            Status.WARN,
            f"{where} ends in ?all: it says nothing about other hosts, which receivers "
            "treat like no SPF at all",
            f"end {where} with -all (or ~all)",
        )
    if term.name == "ptr":
        lint.add(
            Status.WARN,
            f"{where} uses the ptr mechanism, which RFC 7208 §5.5 says not to use: slow, "
            "and many receivers skip it",
            f"replace {term.text!r} in {where} by ip4:/ip6: or a: terms",
        )


def _lint_record(
    lint: _Lint, node: SpfRecordTree, record: str, path: tuple[str, ...], role: str
) -> None:
    """Count and check one SPF record; `role` is "root", "redirect" or "include"."""
    terms = parse_spf_terms(record, node.domain)
    where = f"the SPF record of {node.domain}"
    children = {child.domain: child for child in node.children}
    lint.voids += len(node.void_terms)
    seen_modifiers: set[str] = set()
    sender = path[0] if path else node.domain
    for term in terms:
        _lint_term(lint, term, where, sender, role, seen_modifiers)
    has_all = any(term.name == "all" and not term.modifier for term in terms)
    for term in terms:
        if term.error or "%" in term.target:
            continue
        if term.name == "include" or (term.name == "redirect" and not has_all):
            _lint_target(lint, term, children.get(term.target), (*path, node.domain))
    if role != "include" and not has_all and "redirect" not in seen_modifiers:
        lint.add(
            Status.WARN,
            f"{where} ends without an all mechanism: other hosts get neutral, which receivers "
            "treat like no SPF at all",
            f"end {where} with -all (or ~all)",
        )


def _lint_target(
    lint: _Lint, term: _Term, child: SpfRecordTree | None, path: tuple[str, ...]
) -> None:
    how = "include:" if term.name == "include" else "redirect="
    section = "§5.2" if term.name == "include" else "§6.1"
    if term.target in path:
        chain = " → ".join((*path, term.target))
        lint.add(
            Status.FAIL,
            f"SPF include loop {chain}: receivers return permerror (RFC 7208 §4.6.4)",
            f"remove {how}{term.target} from the SPF record of {path[-1]}",
            Outcome.SPF_FAIL,
        )
        return
    if child is None:
        return  # not walked (the walk's bound): counted as one lookup only
    if child.txt is None:
        lint.add(
            Status.WARN,
            f"cannot read the SPF record of {child.domain} ({how} in {path[-1]}): {child.error}",
            f"check that the name servers of {child.domain} answer, and [dns] nameservers",
            Outcome.DNS_ERROR,
        )
        return
    records = spf_records(child.txt)
    if not child.txt:
        lint.voids += 1  # the TXT lookup itself was void (RFC 7208 §4.6.4)
    if not records:
        lint.add(
            Status.FAIL,
            f"{how}{child.domain} in {path[-1]} has no SPF record: receivers return permerror "
            f"(RFC 7208 {section})",
            f"remove {how}{child.domain} from the SPF record of {path[-1]}, or fix the name",
            Outcome.SPF_FAIL,
        )
        return
    if len(records) > 1:
        lint.add(
            Status.FAIL,
            f"{child.domain} ({how} in {path[-1]}) has {len(records)} v=spf1 records: receivers "
            "return permerror (RFC 7208 §4.5)",
            f"ask the owner of {child.domain} to merge them, or drop {how}{child.domain}",
            Outcome.SPF_FAIL,
        )
        return
    _lint_record(lint, child, records[0], path, "include" if term.name == "include" else "redirect")


def _min_ttl(tree: SpfRecordTree) -> int:
    return min([tree.ttl_s, *(_min_ttl(child) for child in tree.children)])


def lint_spf_record(tree: SpfRecordTree) -> list[Finding]:
    """What a mail admin should fix in the SPF record tree of `tree.domain`; id "spf.record.<domain>".

    One finding per problem, failures first; a single OK line (with the
    DNS lookup count) when there is none. Lookups are counted as RFC 7208
    §4.6.4 says, through includes and redirects; the count is static (every
    term, whatever the sending IP), which is what a record must stay under.
    """
    fid = f"spf.record.{tree.domain}"
    ttl = _min_ttl(tree)
    if tree.txt is None:
        return [
            Finding(
                fid,
                Status.WARN,
                f"cannot read the SPF record of {tree.domain}: {tree.error}",
                f"check that the name servers of {tree.domain} answer, and [dns] nameservers",
                Outcome.DNS_ERROR,
                ttl,
            )
        ]
    records = spf_records(tree.txt)
    if not records:
        return [
            Finding(
                fid,
                Status.WARN,
                f"no SPF record at {tree.domain}: receivers' SPF result for it is none",
                f'publish one TXT record at {tree.domain}: "v=spf1 ip4:<each sending IP> -all"',
                ttl_s=ttl,
            )
        ]
    if len(records) > 1:
        return [
            Finding(
                fid,
                Status.FAIL,
                f"{tree.domain} has {len(records)} v=spf1 TXT records: receivers return "
                "permerror (RFC 7208 §4.5)",
                f"merge them into one TXT record at {tree.domain}",
                Outcome.SPF_FAIL,
                ttl,
            )
        ]
    lint = _Lint()
    _lint_record(lint, tree, records[0], (), "root")
    if lint.lookups > MAX_LOOKUP_TERMS:
        lint.add(
            Status.FAIL,
            f"the SPF record of {tree.domain} needs {lint.lookups} DNS lookups (include, a, mx, "
            "ptr, exists, redirect, through includes): more than 10 makes receivers return "
            "permerror (RFC 7208 §4.6.4)",
            "replace includes and a/mx terms by the ip4:/ip6: ranges they stand for, or drop "
            "unused ones",
            Outcome.SPF_FAIL,
        )
    if lint.voids > MAX_VOID_LOOKUPS:
        lint.add(
            Status.WARN,
            f"{lint.voids} lookups of the SPF record of {tree.domain} find nothing: more than 2 "
            "in one evaluation make receivers return permerror (RFC 7208 §4.6.4)",
            "remove the terms that name domains without records",
        )
    problems = lint.problems
    if not problems:
        return [
            Finding(
                fid,
                Status.OK,
                f"the SPF record of {tree.domain} is sound: {lint.lookups} of 10 DNS lookups",
                ttl_s=ttl,
            )
        ]
    order = {Status.FAIL: 0, Status.WARN: 1, Status.OK: 2}
    problems.sort(key=lambda problem: order[problem[0]])
    return [
        Finding(fid, status, summary, fix, outcome, ttl)
        for status, summary, fix, outcome in problems
    ]
