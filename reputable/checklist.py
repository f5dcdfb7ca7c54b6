"""`reputable check`: the seed's deliverability checklist for this host and its domains, run once. I/O edge.

Every check runs through the same code the milter's gate uses; this module
only gathers, orders and prints. Exit 0 when all is ok, 1 with warnings, 2
with failures.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import TextIO

import dns.exception
import dns.resolver

from reputable.checks.dmarc import interpret_dmarc, org_domain_of, query_dmarc
from reputable.checks.findings import Finding, Status, worst
from reputable.checks.mx import interpret_mx, query_mx
from reputable.checks.port25 import interpret_port25, query_port25
from reputable.checks.spf import (
    all_pass,
    interpret_spf,
    lint_spf_record,
    query_spf,
    query_spf_tree,
)
from reputable.config import Config
from reputable.host import SendingIdentity, sending_identity
from reputable.postfix.checkup import postfix_findings
from reputable.resolver import build_dnsbl_resolver, build_resolver
from reputable.runtime import Runtime, load_runtime
from reputable.snapshot import collect_host_findings

EXIT = {Status.OK: 0, Status.WARN: 1, Status.FAIL: 2}
ORDER = (
    "dns",
    "host",
    "static_ip",
    "ptr",
    "ptr_generic",
    "helo",
    "port25",
    "dnsbl",
    "spf",
    "dkim",
    "dmarc",
    "mx",
    "postfix",
)


def dns_reachable(resolver: dns.resolver.Resolver) -> Finding:
    """One query for the root's NS: when even that fails, say so once instead of a wall of errors."""
    try:
        resolver.resolve(".", "NS")
    except dns.exception.Timeout:
        summary = "DNS does not answer (offline, or [dns] nameservers unreachable): the checks below that need DNS could not run"
        return Finding(
            "dns",
            Status.FAIL,
            summary,
            "check the network and /etc/resolv.conf or [dns] nameservers",
        )
    except dns.resolver.NXDOMAIN:
        summary = (
            "the resolver says the DNS root does not exist: it cannot see the internet's DNS, "
            "so every lookup below is unreliable (a listing or a PTR may just not be visible)"
        )
        return Finding(
            "dns",
            Status.FAIL,
            summary,
            "use a working recursive resolver in /etc/resolv.conf or [dns] nameservers",
        )
    except dns.exception.DNSException as exc:
        return Finding("dns", Status.WARN, f"DNS answered oddly for the root zone: {exc}", "")
    return Finding("dns", Status.OK, "DNS answers")


def identity_finding(identity: SendingIdentity) -> Finding:
    if not identity.ips:
        return Finding(
            "host", Status.FAIL, "no sending IP found (no default route)", "set [host] sending_ips"
        )
    ips = ", ".join(str(ip) for ip in identity.ips)
    return Finding(
        "host", Status.OK, f"sending IPs {ips} (from {identity.source}), HELO {identity.helo}"
    )


def domain_findings(
    config: Config, runtime: Runtime, identity: SendingIdentity, resolver: dns.resolver.Resolver
) -> list[Finding]:
    timeout = config.dns.timeout_s

    def org_of(name: str) -> str:
        return org_domain_of(name, resolver, timeout)

    found: list[Finding] = []
    for domain in runtime.domains:
        evaluations = [
            query_spf(str(ip), domain, identity.helo, resolver, timeout) for ip in identity.ips
        ]
        found.extend(interpret_spf(e) for e in evaluations)
        found.extend(lint_spf_record(query_spf_tree(domain, resolver, timeout)))
        spf_passed = all_pass(evaluations)
        signed_by = [domain] if runtime.keyring.keys_for(domain) else []

        found.append(
            interpret_dmarc(
                query_dmarc(domain, resolver, timeout), domain, spf_passed, signed_by, org_of
            )
        )
        found.append(
            interpret_mx(query_mx(domain, resolver, timeout), [str(ip) for ip in identity.ips])
        )
    return found


def run_checks(config: Config) -> list[Finding]:
    runtime = load_runtime(config)
    identity = sending_identity(config)
    resolver = build_resolver(config.dns)
    findings = [identity_finding(identity), dns_reachable(resolver)]
    keys = [k for ks in runtime.keyring.by_domain.values() for k in ks]
    findings += collect_host_findings(
        config, identity, keys, runtime.domains, resolver, build_dnsbl_resolver(config.dns)
    )
    findings.append(
        interpret_port25(query_port25(config.checks.port25_target, config.checks.port25_timeout_s))
    )
    findings += domain_findings(config, runtime, identity, resolver)
    findings += postfix_findings(config)
    return sorted(findings, key=family_rank)


def family_rank(finding: Finding) -> int:
    family = finding.id.split(".", 1)[0]
    return ORDER.index(family) if family in ORDER else len(ORDER)


def render_text(findings: Sequence[Finding], out: TextIO) -> None:
    width = max((len(f.id) for f in findings), default=10)
    for finding in findings:
        label = (
            finding.status.value if finding.status is Status.OK else finding.status.value.upper()
        )
        print(f"{label:<5} {finding.id:<{width}}  {finding.summary}", file=out)
        if finding.fix and finding.status is not Status.OK:
            print(f"{'':<5} {'':<{width}}  fix: {finding.fix}", file=out)
    counts = {s: sum(1 for f in findings if f.status is s) for s in Status}
    print(
        f"\n{counts[Status.OK]} ok, {counts[Status.WARN]} warning(s), {counts[Status.FAIL]} failure(s)",
        file=out,
    )


def render_json(findings: Sequence[Finding], out: TextIO) -> None:
    document = {
        "status": worst(findings).value,
        "checks": [
            {"id": f.id, "status": f.status.value, "summary": f.summary, "fix": f.fix}
            for f in findings
        ],
    }
    print(json.dumps(document, indent=2), file=out)


def check_command(config: Config, as_json: bool, out: TextIO = sys.stdout) -> int:
    findings = run_checks(config)
    if as_json:
        render_json(findings, out)
    else:
        render_text(findings, out)
    return EXIT[worst(findings)]
