"""Every signature made during a run is still checked: a sample through independent verifiers.

dkimpy verifies every sampled message, OpenDKIM (``opendkim -t``, which asks
the benchmark's DNS server through libunbound) the first few of each
configuration.  Both come from the integration tests' harness.  A sampled
message from a milter that carries no signature, or one that does not verify,
fails the run: speed must never come from skipping work.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import dkim

from benchmarks.world import DOMAIN
from tests.integration.harness.dnsserver import DnsServer
from tests.integration.harness.verifiers import verify_dkimpy, verify_opendkim


class SignatureCheckFailed(RuntimeError):
    """A sampled message was not signed as it should be, or its signature did not verify."""


@dataclass
class Checked:
    dkimpy: int = 0
    opendkim: int = 0
    unsigned: int = 0

    def add(self, other: Checked) -> None:
        self.dkimpy += other.dkimpy
        self.opendkim += other.opendkim
        self.unsigned += other.unsigned

    def as_dict(self) -> dict[str, int]:
        return {"dkimpy": self.dkimpy, "opendkim": self.opendkim, "unsigned": self.unsigned}


def signature_count(message: bytes) -> int:
    try:
        headers = dkim.DKIM(message).headers
    except Exception:  # unparseable: no signature to speak of
        return 0
    return sum(1 for name, _ in headers if name.lower() == b"dkim-signature")


def check_samples(
    messages: Iterable[bytes],
    milter: str,
    dns: DnsServer,
    signatures: int,
    opendkim_budget: int,
) -> Checked:
    """Verify each message; *signatures* per message expected (0 for no milter)."""
    checked = Checked()
    for message in messages:
        count = signature_count(message)
        if signatures == 0:
            if count:
                raise SignatureCheckFailed(f"{milter}: a message has {count} signatures, none made")
            checked.unsigned += 1
            continue
        if count != signatures:
            raise SignatureCheckFailed(
                f"{milter}: a sampled message has {count} DKIM-Signature fields, not {signatures}"
            )
        result = verify_dkimpy(message, dns)
        if not result.passed or any(r.domain.lower() != DOMAIN for r in result.results):
            raise SignatureCheckFailed(f"{milter}: {result}\n{message[:2000]!r}")
        checked.dkimpy += 1
        if checked.opendkim < opendkim_budget:
            odk = verify_opendkim(message, dns)
            # OpenDKIM is the second opinion on the RSA signature (dkimpy judged them all).
            odk = odk.only("rsa")
            if not odk.passed:
                raise SignatureCheckFailed(f"{milter}: {odk}\n{odk.output[-2000:]}")
            checked.opendkim += 1
    return checked
