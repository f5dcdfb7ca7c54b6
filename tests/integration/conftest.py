"""Fixtures for the integration tests: DNS server, SMTP sink, Postfix instances.

* ``dns_server`` (session): one :class:`DnsServer` listening on
  127.0.0.1:<ephemeral> and on port 53 of a random 127.53.x.y address (for
  OpenDKIM's ``Nameservers``).  Shared by the whole session: use distinct
  names per test, or take ``fresh_dns`` which empties it first.
* ``dns53`` (session): the same server, asserting its port-53 listener.
* ``nxdomain_dns``, ``silent_dns`` (function): servers of their own that
  answer NXDOMAIN for every name (the root too), or never answer at all.
* ``fresh_dns``: the session server with no records, drops or query log.
  It empties the *shared* server, so it wipes records that a module- or
  session-scoped fixture published: do not mix the two in one module.
* ``smtp_sink`` (function): a fresh :class:`SmtpSink` on 127.0.0.1.
* ``postfix_factory`` (function): ``postfix_factory(milter=None, overrides=...)``
  starts a Postfix instance relaying to ``smtp_sink`` (``banner_probe=False``:
  readiness without an SMTP session, so the milter sees no probe connect);
  every instance is
  stopped (and its processes reaped) at teardown, whatever the test did.  When
  the test failed, the instances' logs are printed and their directories kept.
"""

from __future__ import annotations

import shutil
from collections.abc import Generator, Iterator, Mapping

import dns.resolver
import pluggy
import pytest

from reputable.config import DnsConfig, Nameserver
from reputable.resolver import build_resolver
from tests.integration.harness.dnsserver import DnsServer
from tests.integration.harness.inbound_corpus import (
    Anchors,
    InboundCase,
    anchors,
    corpus,
    publish,
    withdraw,
)
from tests.integration.harness.postfix import PostfixFactory, PostfixInstance
from tests.integration.harness.scratch import LOOKUP_TIMEOUT_S, ScratchRecords
from tests.integration.harness.sink import SmtpSink

_failed_key = pytest.StashKey[bool]()


# An old-style hook wrapper: Debian 12's pluggy 1.0 has no `wrapper=True`.
@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pluggy.Result[pytest.TestReport], None]:
    outcome = yield
    if outcome.get_result().failed:
        item.stash[_failed_key] = True


@pytest.fixture(scope="session")
def dns_server() -> Iterator[DnsServer]:
    with DnsServer([("127.0.0.1", 0)], port53=True) as server:
        yield server
        assert not server.errors, f"DNS server errors: {server.errors}"


@pytest.fixture(scope="session")
def dns53(dns_server: DnsServer) -> DnsServer:
    assert dns_server.port53_address is not None
    return dns_server


@pytest.fixture
def fresh_dns(dns_server: DnsServer) -> DnsServer:
    dns_server.clear()
    dns_server.clear_queries()
    return dns_server


@pytest.fixture
def nxdomain_dns() -> Iterator[DnsServer]:
    """A server of its own that holds nothing: NXDOMAIN for every name, the DNS root included.

    It stands for a resolver that cannot see the internet's DNS (a captive
    portal, a lab resolver without root hints).
    """
    with DnsServer([("127.0.0.1", 0)]) as server:
        yield server


@pytest.fixture
def silent_dns() -> Iterator[DnsServer]:
    """A server of its own that receives every query and never answers (offline DNS)."""
    with DnsServer([("127.0.0.1", 0)]) as server:
        server.set_silent()
        yield server


@pytest.fixture
def records(dns_server: DnsServer) -> Iterator[ScratchRecords]:
    """Records set on the shared DNS server for one test, all removed after it."""
    made = ScratchRecords(dns_server)
    yield made
    made.undo()


@pytest.fixture
def resolver(dns_server: DnsServer) -> dns.resolver.Resolver:
    """reputable's resolver asking only the shared DNS server, each lookup bounded."""
    return build_resolver(
        DnsConfig(nameservers=(Nameserver(*dns_server.address),), timeout_s=LOOKUP_TIMEOUT_S)
    )


@pytest.fixture
def smtp_sink() -> Iterator[SmtpSink]:
    with SmtpSink() as sink:
        yield sink


@pytest.fixture
def postfix_factory(
    request: pytest.FixtureRequest, smtp_sink: SmtpSink
) -> Iterator[PostfixFactory]:
    instances: list[PostfixInstance] = []

    def start(
        milter: str | None = None,
        overrides: Mapping[str, str] | None = None,
        *,
        smtpd_options: Mapping[str, str] | None = None,
        relay: tuple[str, int] | None = None,
        banner_probe: bool = True,
    ) -> PostfixInstance:
        instance = PostfixInstance(
            relay or smtp_sink.address,
            milter=milter,
            overrides=overrides,
            smtpd_options=smtpd_options,
        )
        instances.append(instance)
        return instance.start(banner_probe=banner_probe)

    yield start

    failed = request.node.stash.get(_failed_key, False)
    for instance in instances:
        instance.stop()
        if failed:
            print(f"--- Postfix log of {instance.directory} (kept) ---\n{instance.log_text()}")
        else:
            shutil.rmtree(instance.directory, ignore_errors=True)


@pytest.fixture(scope="module")
def cases(dns53: DnsServer) -> Iterator[dict[str, InboundCase]]:
    """The inbound corpus by case name, its records published for the module."""
    built = corpus()
    publish(dns53, built.values())
    yield built
    withdraw(dns53, built.values())


@pytest.fixture(scope="module")
def said(dns53: DnsServer, cases: dict[str, InboundCase]) -> dict[str, Anchors]:
    """What OpenDKIM, pyspf and dkimpy say of each case (worked out once a session)."""
    return anchors(dns53, cases)
