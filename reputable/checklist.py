"""`reputable check`: the seed's deliverability checklist for this host and its domains, run once. I/O edge.

Every check runs through the same code the milter's gate uses; this module
only gathers, orders and prints. Exit 0 when all is ok, 1 with warnings, 2
with failures, 3 when it could not check: a resolver fails the root test
(the `dns` row), so the rows resting on it are unknown. A row unknown for
any other reason (nothing to tell it by) does not change the exit code.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import TextIO

import dns.resolver

from reputable.checks.dmarc import interpret_dmarc, org_domain_of, query_dmarc
from reputable.checks.dnsroot import mark_untrusted
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
from reputable.runtime import Runtime, load_runtime, no_domain
from reputable.snapshot import KeyRecords, collect_host_facts, signatures_of

EXIT = {Status.OK: 0, Status.WARN: 1, Status.FAIL: 2, Status.UNKNOWN: 3}
ORDER = (
    "dns",
    "host",
    "domain",
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
    config: Config,
    runtime: Runtime,
    identity: SendingIdentity,
    resolver: dns.resolver.Resolver,
    key_records: KeyRecords,
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
        # A signature aligns only if it verifies: its selector publishes the key (the dkim rows).
        signed_by = signatures_of(runtime.keyring.keys_for(domain), key_records)

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
    findings = [identity_finding(identity)]
    keys = [k for ks in runtime.keyring.by_domain.values() for k in ks]
    host = collect_host_facts(
        config, identity, keys, runtime.domains, resolver, build_dnsbl_resolver(config.dns)
    )
    findings += host.findings
    findings.append(
        interpret_port25(query_port25(config.checks.port25_target, config.checks.port25_timeout_s))
    )
    findings += domain_findings(config, runtime, identity, resolver, host.key_records)
    if not runtime.domains:
        findings.append(no_domain_finding(config))
    findings += postfix_findings(config)
    # Rows resting on a resolver that fails the root test are unknown, the dns row says why.
    return sorted(mark_untrusted(findings, host.trust), key=family_rank)


def no_domain_finding(config: Config) -> Finding:
    """A host without a mail domain: what to set, and no advice for its own name."""
    missing = no_domain(config)
    summary = (
        f"{missing.detail}: nothing is signed, and no domain's SPF, DKIM, DMARC or MX is checked"
    )
    return Finding("domain", Status.FAIL, summary, missing.fix)


def overall(findings: Sequence[Finding]) -> Status:
    """The checklist's verdict: unknown when a resolver fails the root test, else the worst row."""
    if any(f.id.split(".", 1)[0] == "dns" and f.status is Status.FAIL for f in findings):
        return Status.UNKNOWN
    return worst(findings)


def family_rank(finding: Finding) -> int:
    family = finding.id.split(".", 1)[0]
    return ORDER.index(family) if family in ORDER else len(ORDER)


def render_text(findings: Sequence[Finding], out: TextIO) -> None:
    width = max((len(f.id) for f in findings), default=10)
    for finding in findings:
        status = finding.status
        label = status.value.upper() if status in (Status.WARN, Status.FAIL) else status.value
        print(f"{label:<7} {finding.id:<{width}}  {finding.summary}", file=out)
        if finding.fix and status is not Status.OK:
            print(f"{'':<7} {'':<{width}}  fix: {finding.fix}", file=out)
    counts = {s: sum(1 for f in findings if f.status is s) for s in Status}
    print(
        f"\n{counts[Status.OK]} ok, {counts[Status.WARN]} warning(s), "
        f"{counts[Status.FAIL]} failure(s), {counts[Status.UNKNOWN]} unknown",
        file=out,
    )
    if overall(findings) is Status.UNKNOWN:
        print("could not check: DNS cannot be trusted (see the dns row); exit code 3", file=out)


def render_json(findings: Sequence[Finding], out: TextIO) -> None:
    document = {
        "status": overall(findings).value,
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
    return EXIT[overall(findings)]
