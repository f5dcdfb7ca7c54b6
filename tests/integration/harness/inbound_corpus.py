"""Received mail for inbound verification: a corpus of messages, the DNS records each needs,
what each must be found to be, and two independent verifiers that vouch for it.

Each :class:`InboundCase` is one message as a sender outside hands it over:
the raw bytes, the client IP (198.51.100.0/24), HELO and MAIL FROM, the
records to publish on the test :class:`DnsServer` (DKIM keys, SPF, DMARC),
what the server does with some names (a key whose queries are dropped, an
SPF name answered SERVFAIL) and the results the message must get: one DKIM
result per signature (RFC 6376 §6.1 in RFC 8601's words), SPF (RFC 7208),
DMARC (RFC 9989, with the policy that applies) and ARC (RFC 8617).

The signatures are real: OpenDKIM 2.11 (``opendkim`` in ``Mode s``, as a
milter fed through ``benchmarks.milter_driver``) and dkimpy (``dkim.sign``;
Ed25519 keys as dkimpy wants them, the base64 32-byte seed) sign the
messages; dkimpy's ``arc_sign`` seals the ARC cases. The keys are made once
per process (:func:`corpus`): two RSA-2048 keys (the second only ever
published, for a record that does not match) and one Ed25519 key.

Each case has a domain of its own directly under ``.example`` (no public
suffix list entry and no record at ``_dmarc.example``): the DMARC tree walk
and a public-suffix lookup agree that the organizational domain is the
case's domain, so no case aligns with another's.

The anchors, each asking the test DNS server through real packets:

* :class:`OpenDkimVerifier`: ``opendkim`` in ``Mode v`` as a milter (its own
  config in a temp dir under /run, the test server as its only resolver the
  way ``verifiers.verify_opendkim`` does it), each case fed through the
  milter driver from the case's client IP; its Authentication-Results header
  is parsed with ``authres`` into one result per signature. Like reputable,
  it is told to verify at most five signatures (its default is three).
* :func:`pyspf_verdict`: pyspf's own command line (Debian's
  ``/usr/bin/python3 -m spf IP SENDER HELO``), which reads only
  /etc/resolv.conf: it runs under ``unshare --mount`` with a resolv.conf
  naming the server's port-53 address bind-mounted over /etc/resolv.conf in
  its own mount namespace; the host's file is never touched.
* :func:`dkimpy_arc_verdict`: dkimpy's ``arc_verify`` for the ARC chain.

Each anchor is checked to have asked the test server for what it judged.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import functools
import logging
import re
import secrets
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import authres
import authres.arc
import authres.dmarc
import dkim
import dkim.util
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from benchmarks.milter_driver import (
    SMFIP_HDR_LEADSPC,
    DriverConfig,
    DriverResult,
    Sample,
    Session,
    parse_message,
)
from benchmarks.milters import Endpoint, MilterProcess

from .dnsserver import DnsServer, name_text, txt_chunks
from .verifiers import dkimpy_dnsfunc

AUTHSERV_ID = "mx.test.example"
"""The authserv-id reputable is configured with in the inbound tests."""
OPENDKIM_AUTHSERV_ID = "opendkim.test.example"
RECIPIENT = "bob@inbound.test"
RECIPIENT_DOMAIN = "inbound.test"
OPENDKIM = "/usr/sbin/opendkim"
SYSTEM_PYTHON = "/usr/bin/python3"  # Debian's, with python3-spf
MAX_SIGNATURES = 5
ESP_DOMAIN = "esp-signer.example"  # a bulk sender signing for its customers
FORWARDER = "list-forwarder.example"  # a mailing list that reseals what it forwards
FORWARDER_NET = "198.51.100.0/24"
DATE = "Fri, 27 Nov 2026 05:00:00 +0000"
OPENDKIM_DNS_TIMEOUT_S = 3
_SPF_RESULT = re.compile(r"^result: \('(?P<result>[a-z]+)'", re.MULTILINE)
_DMARC_POLICY = re.compile(r"\bdmarc\s*=\s*[a-z]+\s*\(\s*(?:p|sp|np)\s*=\s*([a-z]+)", re.IGNORECASE)


# ---------------------------------------------------------------- keys


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


@dataclass(frozen=True)
class Keys:
    """The corpus's keys, made once per process."""

    rsa_key: rsa.RSAPrivateKey
    rsa_other: rsa.RSAPrivateKey
    """Never signs: its public key is the record that does not match."""
    ed25519_key: ed25519.Ed25519PrivateKey

    @property
    def rsa_pem(self) -> bytes:
        return self.rsa_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    @property
    def ed25519_pem(self) -> bytes:
        """OpenDKIM's form of the Ed25519 key: PKCS#8 PEM."""
        return self.ed25519_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    @property
    def ed25519_seed(self) -> bytes:
        """dkimpy's form of the Ed25519 key: the base64 32-byte seed."""
        raw = self.ed25519_key.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )
        return base64.b64encode(raw)

    def record(self, algorithm: str, which: str = "valid") -> str:
        """The DKIM key record: ``valid`` (the signing key), ``other`` (another key), ``revoked``."""
        if which == "revoked":
            return "v=DKIM1; k=rsa; p="
        if algorithm.startswith("ed25519"):
            raw = self.ed25519_key.public_key().public_bytes(
                serialization.Encoding.Raw, serialization.PublicFormat.Raw
            )
            return f"v=DKIM1; k=ed25519; p={_b64(raw)}"
        key = self.rsa_other if which == "other" else self.rsa_key
        der = key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return f"v=DKIM1; k=rsa; p={_b64(der)}"


@functools.cache
def corpus_keys() -> Keys:
    return Keys(
        rsa_key=rsa.generate_private_key(public_exponent=65537, key_size=2048),
        rsa_other=rsa.generate_private_key(public_exponent=65537, key_size=2048),
        ed25519_key=ed25519.Ed25519PrivateKey.generate(),
    )


# ---------------------------------------------------------------- the cases


@dataclass(frozen=True)
class Record:
    """One DNS record a case needs: TXT (split into 255-byte strings when longer) or A."""

    name: str
    type: str
    value: str


@dataclass(frozen=True)
class ExpectedSignature:
    """One DKIM-Signature of a case, in header order, and what verifiers must say of it."""

    domain: str
    selector: str
    algorithm: str
    b: str
    """The first 8 characters of b= (RFC 6008 header.b)."""
    result: str
    """RFC 6376 §6.1 in RFC 8601 words; "" for a signature past the fifth (not verified)."""
    opendkim: str
    """OpenDKIM's word for it; "" when its header says nothing of it."""
    signer: str
    """Who made it: ``opendkim`` or ``dkimpy``."""


@dataclass(frozen=True)
class InboundCase:
    name: str
    about: str
    message: bytes
    client_ip: str
    helo: str
    mail_from: str
    """The MAIL FROM address; "" for the null sender <>."""
    from_domain: str
    records: tuple[Record, ...]
    drop: tuple[str, ...]
    """Names whose queries the DNS server never answers (a timeout)."""
    servfail: tuple[str, ...]
    """Names the DNS server answers with SERVFAIL."""
    signatures: tuple[ExpectedSignature, ...]
    spf: str
    dmarc: str
    dmarc_policy: str | None
    """The policy that applies to the From domain (p=, or sp= for a subdomain); None: no record."""
    arc: str

    @property
    def message_id(self) -> str:
        """The Message-ID, without angle brackets."""
        match = re.search(rb"^Message-ID:\s*<([^>]+)>", self.message, re.MULTILINE | re.IGNORECASE)
        assert match is not None, self.name
        return match.group(1).decode("ascii")

    @property
    def spf_identity(self) -> tuple[str, str]:
        """What SPF checks: ``("mailfrom", address)``, or ``("helo", name)`` for a null sender."""
        return ("helo", self.helo) if not self.mail_from else ("mailfrom", self.mail_from)

    @property
    def spf_domain(self) -> str:
        kind, subject = self.spf_identity
        return subject if kind == "helo" else subject.rpartition("@")[2]

    @property
    def verified(self) -> tuple[ExpectedSignature, ...]:
        """The signatures verified: at most the first five from the top."""
        return tuple(s for s in self.signatures if s.result)

    def expected(self, authserv_id: str = AUTHSERV_ID) -> Verdicts:
        """The Authentication-Results this case must get, in the terms :func:`parse_results` gives."""
        dkim_verdicts = tuple(
            DkimVerdict(s.result, s.domain, s.selector, s.algorithm, s.b) for s in self.verified
        ) or (DkimVerdict("none"),)
        kind, subject = self.spf_identity
        return Verdicts(
            authserv_id=authserv_id,
            dkim=dkim_verdicts,
            spf=(self.spf, kind, subject),
            dmarc=(self.dmarc, self.from_domain),
            arc=self.arc,
        )


@dataclass(frozen=True)
class _Sig:
    """How one signature of a case is made, and what it must be found to be."""

    signer: str  # "opendkim" or "dkimpy"
    algorithm: str = "rsa-sha256"
    canonicalization: str = "relaxed/relaxed"
    selector: str = "s1"
    domain: str = ""  # "": the case's From domain
    body_length: bool = False
    record: str = "valid"  # valid | other | revoked | missing | dropped
    result: str = "pass"
    opendkim: str | None = None  # OpenDKIM's word when it is not `result`


@dataclass(frozen=True)
class _Spec:
    name: str
    about: str
    sigs: tuple[_Sig, ...] = ()
    """In signing order: the first signs first, so its field ends lowest in the header."""
    after: Callable[[bytes, Keys], bytes] | None = None
    """What happens to the message after it was signed (a hop that changes it)."""
    from_domain: str = ""  # "": <name>.example
    mail_from: str | None = None  # None: bounces@<from domain>; "": the null sender
    helo: str = ""  # "": mail.<from domain>
    spf_record: str | None = "v=spf1 ip4:{ip} -all"
    spf_behaviour: str = ""  # "", "servfail" or "drop" at the SPF name
    dmarc_at: str = ""  # the name whose _dmarc record it is; "": the From domain
    dmarc_record: str | None = "v=DMARC1; p=reject"
    extra_records: tuple[Record, ...] = ()
    subject: str = "quarterly report"
    body: bytes = b"Hello Bob,\r\n\r\nthe quarterly report is attached.\r\n\r\n-- \r\nAlice\r\n"
    extra_headers: bytes = b""
    spf: str = "pass"
    dmarc: str = "pass"
    dmarc_policy: str | None = "reject"
    arc: str = "none"


def _tamper_body(message: bytes, keys: Keys) -> bytes:
    return message.replace(
        b"the quarterly report is attached.", b"the quarterly report is attached!"
    )


def _tamper_subject(message: bytes, keys: Keys) -> bytes:
    return message.replace(b"Subject: quarterly report", b"Subject: quarterly rep0rt", 1)


def _append_footer(message: bytes, keys: Keys) -> bytes:
    return message + b"\r\n--\r\nYou received this through the list; unsubscribe: x@y.example\r\n"


def _forwarded_by_list(message: bytes, keys: Keys) -> bytes:
    """A mailing list: it tags the subject, adds a footer, notes what it found and reseals."""
    message = message.replace(b"Subject: quarterly report", b"Subject: [team] quarterly report", 1)
    message = _append_footer(message, keys)
    domain = message.split(b"From: Alice <alice@", 1)[1].split(b">", 1)[0]
    found = (
        f"Authentication-Results: {FORWARDER}; dkim=pass header.d={domain.decode()} "
        f"header.s=s1; spf=pass smtp.mailfrom=bounces@{domain.decode()}\r\n"
    ).encode()
    message = found + message
    lines: list[bytes] = dkim.arc_sign(
        message,
        b"arc",
        FORWARDER.encode(),
        keys.rsa_pem,
        FORWARDER.encode(),
        include_headers=[b"from", b"to", b"subject", b"date", b"message-id"],
    )
    if not lines:
        raise RuntimeError("dkimpy sealed nothing")
    return b"".join(lines) + message


def _forwarded_then_changed(message: bytes, keys: Keys) -> bytes:
    """Sealed by the list, then changed by the next hop: the newest ARC signature breaks."""
    return _forwarded_by_list(message, keys).replace(b"unsubscribe:", b"Unsubscribe:", 1)


_NONE = "v=spf1 ip4:192.0.2.1 -all"  # an SPF record that does not list the case's IP
_LIST_SPF = Record(FORWARDER, "TXT", f"v=spf1 ip4:{FORWARDER_NET} -all")

SPECS: tuple[_Spec, ...] = (
    # --- DKIM: who signs, with what, and what happens to the key or the message
    _Spec("opendkim-rsa-relaxed", "OpenDKIM, RSA-2048, relaxed/relaxed", (_Sig("opendkim"),)),
    _Spec(
        "opendkim-rsa-simple",
        "OpenDKIM, RSA-2048, simple/simple",
        (_Sig("opendkim", canonicalization="simple/simple"),),
    ),
    _Spec(
        "opendkim-ed25519",
        "OpenDKIM, Ed25519, relaxed/relaxed",
        (_Sig("opendkim", algorithm="ed25519-sha256"),),
    ),
    _Spec(
        "dkimpy-rsa-simple",
        "dkimpy, RSA, simple/simple, a folded header and trailing white space",
        (_Sig("dkimpy", canonicalization="simple/simple"),),
        extra_headers=b"X-Report-Note: the figures\r\n\tare final   \r\n",
        body=b"Hello Bob,  \r\n\r\nthe quarterly report\t is attached.\r\n\r\n\r\n",
    ),
    _Spec(
        "dkimpy-rsa-relaxed-simple",
        "dkimpy, RSA, relaxed/simple",
        (_Sig("dkimpy", canonicalization="relaxed/simple"),),
        extra_headers=b"X-Report-Note:   spaced    out\r\n",
    ),
    _Spec(
        "dkimpy-ed25519",
        "dkimpy, Ed25519, relaxed/relaxed",
        (_Sig("dkimpy", algorithm="ed25519-sha256"),),
    ),
    _Spec(
        "multiple-signatures",
        "OpenDKIM RSA and dkimpy Ed25519 for the author, dkimpy RSA for a bulk sender",
        (
            _Sig("opendkim", selector="odk"),
            _Sig("dkimpy", algorithm="ed25519-sha256", selector="ed"),
            _Sig("dkimpy", selector="esp", domain=ESP_DOMAIN),
        ),
    ),
    _Spec(
        "too-many-signatures",
        "six signatures: only the first five from the top are verified",
        # The first made ends lowest: the sixth from the top, which OpenDKIM reports neutral.
        tuple(
            _Sig("dkimpy", selector=f"s{n}", opendkim="neutral" if n == 1 else None)
            for n in range(1, 7)
        ),
    ),
    _Spec(
        "body-length",
        "OpenDKIM with l= and dkimpy without, then a footer appended: only l= survives",
        (_Sig("opendkim", selector="len", body_length=True), _Sig("dkimpy", result="fail")),
        after=_append_footer,
    ),
    _Spec(
        "tampered-body",
        "OpenDKIM, RSA; the body changed after signing",
        (_Sig("opendkim", result="fail"),),
        after=_tamper_body,
    ),
    _Spec(
        "tampered-header",
        "dkimpy, RSA; the Subject changed after signing",
        (_Sig("dkimpy", result="fail"),),
        after=_tamper_subject,
    ),
    _Spec(
        "key-missing",
        "no key record at the selector (RFC 6376 §6.1.2: PERMFAIL, no key for signature)",
        (_Sig("dkimpy", record="missing", result="permerror", opendkim="fail"),),
    ),
    _Spec(
        "key-revoked",
        "the key record has an empty p= (RFC 6376 §6.1.2: a failed signature check)",
        (_Sig("dkimpy", record="revoked", result="fail"),),
    ),
    _Spec(
        "key-mismatch",
        "the key record is another key",
        (_Sig("dkimpy", record="other", result="fail"),),
    ),
    _Spec(
        "key-timeout",
        "the key's queries are never answered (RFC 6376 §6.1.2: TEMPFAIL, key unavailable)",
        (_Sig("dkimpy", record="dropped", result="temperror", opendkim=""),),
    ),
    # --- SPF of the client for MAIL FROM (or HELO)
    _Spec(
        "spf-fail",
        "-all, the IP not listed",
        spf_record=_NONE,
        spf="fail",
        dmarc_record=None,
        dmarc="none",
        dmarc_policy=None,
    ),
    _Spec(
        "spf-softfail",
        "~all, the IP not listed",
        spf_record="v=spf1 ip4:192.0.2.1 ~all",
        spf="softfail",
        dmarc_record=None,
        dmarc="none",
        dmarc_policy=None,
    ),
    _Spec(
        "spf-neutral",
        "?all",
        spf_record="v=spf1 ?all",
        spf="neutral",
        dmarc_record=None,
        dmarc="none",
        dmarc_policy=None,
    ),
    _Spec(
        "spf-none",
        "no SPF record (the domain exists)",
        spf_record=None,
        extra_records=(Record("spf-none.example", "A", "192.0.2.80"),),
        spf="none",
        dmarc_record=None,
        dmarc="none",
        dmarc_policy=None,
    ),
    _Spec(
        "spf-temperror",
        "the MAIL FROM domain answered SERVFAIL",
        mail_from="bounces@bounce.spf-temperror.example",
        spf_behaviour="servfail",
        spf="temperror",
        dmarc_record=None,
        dmarc="none",
        dmarc_policy=None,
    ),
    _Spec(
        "spf-timeout",
        "the MAIL FROM domain's queries never answered",
        mail_from="bounces@bounce.spf-timeout.example",
        spf_behaviour="drop",
        spf="temperror",
        dmarc_record=None,
        dmarc="none",
        dmarc_policy=None,
    ),
    _Spec(
        "spf-helo",
        "MAIL FROM <>: SPF of the HELO name; DKIM aligns",
        (_Sig("dkimpy"),),
        mail_from="",
    ),
    # --- DMARC of the From domain
    _Spec(
        "dmarc-pass-dkim-only",
        "an aligned OpenDKIM signature, SPF fails",
        (_Sig("opendkim"),),
        spf_record=_NONE,
        spf="fail",
    ),
    _Spec("dmarc-pass-spf-only", "unsigned, SPF passes for the From domain"),
    _Spec(
        "dmarc-fail-none",
        "unsigned, SPF fails, p=none",
        spf_record=_NONE,
        spf="fail",
        dmarc_record="v=DMARC1; p=none",
        dmarc="fail",
        dmarc_policy="none",
    ),
    _Spec(
        "dmarc-fail-quarantine",
        "unsigned, SPF fails, p=quarantine",
        spf_record=_NONE,
        spf="fail",
        dmarc_record="v=DMARC1; p=quarantine",
        dmarc="fail",
        dmarc_policy="quarantine",
    ),
    _Spec(
        "dmarc-fail-reject",
        "unsigned, SPF fails, p=reject",
        spf_record=_NONE,
        spf="fail",
        dmarc="fail",
    ),
    _Spec(
        "dmarc-testing",
        "unsigned, SPF fails, p=reject with t=y",
        spf_record=_NONE,
        spf="fail",
        dmarc_record="v=DMARC1; p=reject; t=y",
        dmarc="fail",
    ),
    _Spec(
        "dmarc-subdomain",
        "From a subdomain of a domain whose record says p=none; sp=reject",
        from_domain="news.dmarc-subdomain.example",
        dmarc_at="dmarc-subdomain.example",
        dmarc_record="v=DMARC1; p=none; sp=reject",
        spf_record=_NONE,
        spf="fail",
        dmarc="fail",
    ),
    _Spec(
        "dmarc-relaxed-alignment",
        "From a subdomain, signed by its organizational domain (adkim=r)",
        (_Sig("dkimpy", domain="dmarc-relaxed.example"),),
        from_domain="alerts.dmarc-relaxed.example",
        dmarc_at="dmarc-relaxed.example",
        spf_record="v=spf1 -all",
        spf="fail",
    ),
    _Spec(
        "dmarc-fail-unaligned",
        "DKIM and SPF pass for a bulk sender's domain, not the From domain",
        (_Sig("dkimpy", selector="esp", domain=ESP_DOMAIN),),
        mail_from=f"bounces@{ESP_DOMAIN}",
        dmarc="fail",
    ),
    # --- ARC: a mailing list in between
    _Spec(
        "arc-pass",
        "a mailing list changed the author's signed message and sealed it",
        (_Sig("dkimpy", result="fail"),),
        after=_forwarded_by_list,
        mail_from=f"bounces@{FORWARDER}",
        helo=f"mail.{FORWARDER}",
        spf_record=None,
        extra_records=(_LIST_SPF,),
        dmarc="fail",
        arc="pass",
    ),
    _Spec(
        "arc-fail",
        "sealed by the list, then changed again: the newest ARC-Message-Signature breaks",
        (_Sig("dkimpy", result="fail"),),
        after=_forwarded_then_changed,
        mail_from=f"bounces@{FORWARDER}",
        helo=f"mail.{FORWARDER}",
        spf_record=None,
        extra_records=(_LIST_SPF,),
        dmarc="fail",
        arc="fail",
    ),
)
CASE_NAMES: tuple[str, ...] = tuple(spec.name for spec in SPECS)
FORWARDER_KEY = "arc"


# ---------------------------------------------------------------- signing


@dataclass(frozen=True)
class OpenDkimKey:
    """One signature OpenDKIM is to make: its key's name and the signer's settings."""

    domain: str
    selector: str
    algorithm: str
    canonicalization: str
    body_length: bool

    @property
    def settings(self) -> tuple[str, str, bool]:
        return (self.algorithm, self.canonicalization, self.body_length)


class OpenDkimSigner:
    """OpenDKIM in ``Mode s`` as milters fed by the driver: one instance per set of settings.

    Canonicalization, algorithm and l= are settings of a whole OpenDKIM
    instance, so each combination the corpus needs gets its own, started
    together; a KeyTable and a SigningTable (``*@domain``) give each instance
    every key it signs with. libmilter takes 5 s to stop, so the instances
    are stopped all at once by :meth:`close`. The key files and configs live
    in a temp dir under /run (OpenDKIM refuses keys other users may read, and
    paths under world-writable /tmp).
    """

    def __init__(self, keys: Keys, plan: Iterable[OpenDkimKey]) -> None:
        self.workdir = Path(tempfile.mkdtemp(prefix="reputable-odkim-sign-", dir="/run"))
        for name, pem in (("rsa.pem", keys.rsa_pem), ("ed25519.pem", keys.ed25519_pem)):
            path = self.workdir / name
            path.write_bytes(pem)
            path.chmod(0o600)
        groups: dict[tuple[str, str, bool], list[OpenDkimKey]] = {}
        for key in plan:
            groups.setdefault(key.settings, []).append(key)
        self.milters: dict[tuple[str, str, bool], MilterProcess] = {}
        try:
            for settings, group in groups.items():
                self.milters[settings] = self._start(len(self.milters), settings, group).start()
        except BaseException:
            self.close()
            raise

    def _start(
        self, number: int, settings: tuple[str, str, bool], group: list[OpenDkimKey]
    ) -> MilterProcess:
        algorithm, canonicalization, body_length = settings
        directory = self.workdir / f"instance-{number}"
        directory.mkdir()
        key_file = self.workdir / ("ed25519.pem" if algorithm.startswith("ed25519") else "rsa.pem")
        domains = [key.domain for key in group]
        if len(set(domains)) != len(domains):
            raise ValueError(f"one OpenDKIM key per domain and settings: {group}")
        (directory / "keys").write_text(
            "".join(f"k{n} {k.domain}:{k.selector}:{key_file}\n" for n, k in enumerate(group))
        )
        (directory / "signers").write_text(
            "".join(f"*@{k.domain} k{n}\n" for n, k in enumerate(group))
        )
        lines = [
            "Syslog no",
            "Mode s",
            f"Socket local:{directory / 'sign.sock'}",
            "UMask 077",
            f"Canonicalization {canonicalization}",
            f"SignatureAlgorithm {algorithm}",
            "InternalHosts 127.0.0.1",
            f"KeyTable file:{directory / 'keys'}",
            f"SigningTable refile:{directory / 'signers'}",
            f"PidFile {directory / 'opendkim.pid'}",
        ]
        if body_length:
            (directory / "body-length").write_text("*\n")
            lines.append(f"BodyLengthDB refile:{directory / 'body-length'}")
        config = directory / "opendkim.conf"
        config.write_text("\n".join(lines) + "\n")
        endpoint = Endpoint("unix", path=directory / "sign.sock")
        return MilterProcess(
            "opendkim-sign", endpoint, directory, [OPENDKIM, "-f", "-x", str(config)]
        )

    def close(self) -> None:
        running = [m.process for m in self.milters.values() if m.process is not None]
        for process in running:
            if process.poll() is None:
                process.terminate()
        for process in running:
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
        shutil.rmtree(self.workdir, ignore_errors=True)

    def sign(self, message: bytes, key: OpenDkimKey) -> bytes:
        """The message with OpenDKIM's DKIM-Signature on top (the From domain picks the key)."""
        milter = self.milters[key.settings]
        action, added, leading = drive_one(
            milter.endpoint.libmilter, message, "127.0.0.1", "localhost", f"alice@{key.domain}"
        )
        names = [name.lower() for name, _ in added]
        if action != "accept" or names != ["dkim-signature"]:
            stderr = (milter.workdir / "stderr.txt").read_text(errors="replace")
            raise RuntimeError(f"OpenDKIM did not sign for {key}: {action} {added}\n{stderr}")
        return Sample(parse_message(message).raw, added, leading).signed_message()


def drive_one(
    socket: str,
    message: bytes,
    client_ip: str,
    helo: str,
    mail_from: str,
    rcpt: str = RECIPIENT,
    timeout: float = 30.0,
) -> tuple[str, list[tuple[str, str]], bool]:
    """One message through a milter by the direct driver: (final action, added fields, leadspc)."""

    async def exchange() -> tuple[str, list[tuple[str, str]], bool]:
        config = DriverConfig(
            socket=socket,
            message=message,
            mail_from=mail_from,
            rcpt=rcpt,
            client_addr=client_ip,
            client_name="unknown",
            helo=helo,
            timeout_s=timeout,
        )
        session = Session(config, parse_message(message), DriverResult())
        try:
            await asyncio.wait_for(session.open(), timeout)
            action, added = await asyncio.wait_for(session.message(time.perf_counter()), timeout)
        finally:
            await session.close()
        return action, added or [], bool(session.protocol & SMFIP_HDR_LEADSPC)

    return asyncio.run(exchange())


def _dkimpy_sign(message: bytes, sig: _Sig, domain: str, keys: Keys) -> bytes:
    header, body = sig.canonicalization.split("/")
    ed = sig.algorithm.startswith("ed25519")
    signature: bytes = dkim.sign(
        message,
        sig.selector.encode(),
        domain.encode(),
        keys.ed25519_seed if ed else keys.rsa_pem,
        canonicalize=(header.encode(), body.encode()),
        signature_algorithm=sig.algorithm.encode(),
        length=sig.body_length,
        linesep=b"\r\n",
    )
    if not signature.lower().startswith(b"dkim-signature:"):
        raise RuntimeError(f"dkimpy did not sign for {domain}: {signature!r}")
    return signature + message


def _message(spec: _Spec, from_domain: str) -> bytes:
    token = secrets.token_hex(6)
    head = (
        f"From: Alice <alice@{from_domain}>\r\n"
        f"To: Bob <{RECIPIENT}>\r\n"
        f"Subject: {spec.subject}\r\n"
        f"Date: {DATE}\r\n"
        f"Message-ID: <{spec.name}.{token}@{from_domain}>\r\n"
        "MIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=us-ascii\r\n"
    ).encode("ascii")
    return head + spec.extra_headers + b"\r\n" + spec.body


def signature_tags(message: bytes) -> list[dict[str, str]]:
    """The tags of each DKIM-Signature, top first (b= with its white space removed)."""
    tags: list[dict[str, str]] = []
    for name, value in dkim.DKIM(message).headers:
        if name.lower() != b"dkim-signature":
            continue
        parsed = {
            k.decode("ascii"): v.decode("ascii")
            for k, v in dkim.util.parse_tag_value(value).items()
        }
        parsed["b"] = re.sub(r"\s+", "", parsed.get("b", ""))
        tags.append(parsed)
    return tags


def _build(spec: _Spec, number: int, keys: Keys, signer: OpenDkimSigner) -> InboundCase:
    from_domain = _from_domain(spec)
    ip = f"198.51.100.{10 + number}"
    mail_from = f"bounces@{from_domain}" if spec.mail_from is None else spec.mail_from
    helo = spec.helo or f"mail.{from_domain}"
    message = _message(spec, from_domain)
    for sig in spec.sigs:
        domain = sig.domain or from_domain
        if sig.signer == "opendkim":
            message = signer.sign(message, _opendkim_key(sig, domain))
        else:
            message = _dkimpy_sign(message, sig, domain, keys)
    if spec.after is not None:
        message = spec.after(message, keys)

    records: list[Record] = list(spec.extra_records)
    drop: list[str] = []
    servfail: list[str] = []
    expected: list[ExpectedSignature] = []
    tags = signature_tags(message)
    if len(tags) != len(spec.sigs):
        raise RuntimeError(f"{spec.name}: {len(tags)} signatures made, not {len(spec.sigs)}")
    for position, (sig, tag) in enumerate(zip(reversed(spec.sigs), tags, strict=True)):
        domain = sig.domain or from_domain
        if (tag.get("d"), tag.get("s"), tag.get("a")) != (domain, sig.selector, sig.algorithm):
            raise RuntimeError(f"{spec.name}: signature {position} is not as made: {tag}")
        key_name = f"{sig.selector}._domainkey.{domain}"
        if sig.record != "missing":
            which = "valid" if sig.record == "dropped" else sig.record
            records.append(Record(key_name, "TXT", keys.record(sig.algorithm, which)))
        if sig.record == "dropped":
            drop.append(key_name)
        verified = position < MAX_SIGNATURES
        result = sig.result if verified else ""
        expected.append(
            ExpectedSignature(
                domain=domain,
                selector=sig.selector,
                algorithm=sig.algorithm,
                b=tag["b"][:8],
                result=result,
                opendkim=sig.opendkim if sig.opendkim is not None else result,
                signer=sig.signer,
            )
        )
    spf_name = helo if not mail_from else mail_from.rpartition("@")[2]
    if spec.spf_record is not None:
        records.append(Record(spf_name, "TXT", spec.spf_record.format(ip=ip)))
    if spec.spf_behaviour == "servfail":
        servfail.append(spf_name)
    elif spec.spf_behaviour == "drop":
        drop.append(spf_name)
    if spec.dmarc_record is not None:
        records.append(Record(f"_dmarc.{spec.dmarc_at or from_domain}", "TXT", spec.dmarc_record))
    if spec.arc != "none":
        records.append(
            Record(f"{FORWARDER_KEY}._domainkey.{FORWARDER}", "TXT", keys.record("rsa-sha256"))
        )
    return InboundCase(
        name=spec.name,
        about=spec.about,
        message=message,
        client_ip=ip,
        helo=helo,
        mail_from=mail_from,
        from_domain=from_domain,
        records=tuple(records),
        drop=tuple(drop),
        servfail=tuple(servfail),
        signatures=tuple(expected),
        spf=spec.spf,
        dmarc=spec.dmarc,
        dmarc_policy=spec.dmarc_policy,
        arc=spec.arc,
    )


_build_lock = threading.Lock()


def _from_domain(spec: _Spec) -> str:
    return spec.from_domain or f"{spec.name}.example"


def _opendkim_key(sig: _Sig, domain: str) -> OpenDkimKey:
    return OpenDkimKey(domain, sig.selector, sig.algorithm, sig.canonicalization, sig.body_length)


@functools.cache
def _corpus() -> tuple[InboundCase, ...]:
    keys = corpus_keys()
    plan = [
        _opendkim_key(sig, sig.domain or _from_domain(spec))
        for spec in SPECS
        for sig in spec.sigs
        if sig.signer == "opendkim"
    ]
    signer = OpenDkimSigner(keys, plan)
    try:
        return tuple(_build(spec, n, keys, signer) for n, spec in enumerate(SPECS))
    finally:
        signer.close()


def corpus() -> dict[str, InboundCase]:
    """Every case by name, built (and signed) once per process."""
    with _build_lock:
        return {case.name: case for case in _corpus()}


# ---------------------------------------------------------------- DNS


def _grouped(cases: Iterable[InboundCase]) -> dict[tuple[str, str], list[str]]:
    grouped: dict[tuple[str, str], list[str]] = {}
    for case in cases:
        for record in case.records:
            values = grouped.setdefault((record.name, record.type), [])
            if record.value not in values:
                values.append(record.value)
    return grouped


def publish(dns: DnsServer, cases: Iterable[InboundCase]) -> None:
    """Publish every case's records and set its drops and SERVFAILs."""
    cases = list(cases)
    for (name, rdtype), values in _grouped(cases).items():
        dns.remove(name, rdtype)
        for value in values:
            if rdtype == "TXT":
                dns.add_txt(name, *txt_chunks(value))
            else:
                dns.add_record(name, rdtype, value)
    for case in cases:
        for name in case.drop:
            dns.set_drop(name)
        for name in case.servfail:
            dns.set_rcode(name, "SERVFAIL")


def withdraw(dns: DnsServer, cases: Iterable[InboundCase]) -> None:
    """Take back everything :func:`publish` did."""
    cases = list(cases)
    for name, _ in _grouped(cases):
        dns.remove(name)
    for case in cases:
        for name in case.drop:
            dns.set_drop(name, False)
        for name in case.servfail:
            dns.set_rcode(name, None)


# ---------------------------------------------------------------- reading the results


@dataclass(frozen=True)
class DkimVerdict:
    result: str
    domain: str = ""
    selector: str = ""
    algorithm: str = ""
    b: str = ""


@dataclass(frozen=True)
class Verdicts:
    """One Authentication-Results header as the corpus compares it (comments aside)."""

    authserv_id: str
    dkim: tuple[DkimVerdict, ...]
    spf: tuple[str, str, str] | None
    """(result, ``mailfrom`` or ``helo``, the address or name)."""
    dmarc: tuple[str, str] | None
    """(result, header.from)."""
    arc: str | None

    def dkim_by_signature(self) -> dict[tuple[str, str], str]:
        """Each signature's result keyed by (header.d, header.b)."""
        return {(v.domain.lower(), v.b): v.result for v in self.dkim if v.result != "none"}


def _property(result: authres.AuthenticationResult, type_: str, name: str) -> str:
    for prop in result.properties:
        if prop.type.lower() == type_ and prop.name.lower() == name:
            return prop.value or ""
    return ""


def unfold(value: str) -> str:
    return re.sub(r"\r?\n[ \t]+", " ", value).strip()


def parse_results(value: str) -> Verdicts:
    """An Authentication-Results value (without the field name), parsed by ``authres``."""
    header = authres.FeatureContext(authres.dmarc, authres.arc).parse_value(unfold(value))
    dkim_verdicts: list[DkimVerdict] = []
    spf: tuple[str, str, str] | None = None
    dmarc: tuple[str, str] | None = None
    arc: str | None = None
    for result in header.results:
        method = result.method.lower()
        word = (result.result or "").lower()
        if method == "dkim":
            dkim_verdicts.append(
                DkimVerdict(
                    word,
                    _property(result, "header", "d"),
                    _property(result, "header", "s"),
                    _property(result, "header", "a"),
                    _property(result, "header", "b"),
                )
            )
        elif method == "spf":
            helo = _property(result, "smtp", "helo")
            kind, subject = (
                ("helo", helo) if helo else ("mailfrom", _property(result, "smtp", "mailfrom"))
            )
            spf = (word, kind, subject)
        elif method == "dmarc":
            dmarc = (word, _property(result, "header", "from"))
        elif method == "arc":
            arc = word
    return Verdicts(header.authserv_id.lower(), tuple(dkim_verdicts), spf, dmarc, arc)


def dmarc_policy(value: str) -> str | None:
    """The policy in the comment after ``dmarc=<result>`` (``(p=reject)``), or None."""
    match = _DMARC_POLICY.search(unfold(value))
    return match.group(1).lower() if match else None


def authserv_id(value: str) -> str:
    """The authserv-id an Authentication-Results value begins with, lower case."""
    text = re.sub(r"\([^()]*\)", " ", unfold(value))
    tokens = text.split(";", 1)[0].split()
    return tokens[0].lower() if tokens else ""


# ---------------------------------------------------------------- OpenDKIM, Mode v


@dataclass(frozen=True)
class OpenDkimVerdict:
    action: str
    """The milter's final reply: accept, tempfail, reject..."""
    header: str | None
    """The value of the Authentication-Results field it added, unfolded; None if none."""

    @property
    def verdicts(self) -> Verdicts | None:
        return parse_results(self.header) if self.header is not None else None

    def by_signature(self) -> dict[tuple[str, str], str]:
        verdicts = self.verdicts
        return verdicts.dkim_by_signature() if verdicts is not None else {}

    def __str__(self) -> str:
        return f"OpenDKIM: {self.action}, Authentication-Results: {self.header}"


def opendkim_verify_lines(socket: Path | None, workdir: Path) -> list[str]:
    """OpenDKIM as a verifier (Mode v) on a unix socket, one A-R for every message; the lines
    of its configuration but for how it reaches DNS."""
    return [
        "Syslog no",
        "Mode v",
        f"Socket local:{socket}",
        "UMask 000",
        f"AuthservID {OPENDKIM_AUTHSERV_ID}",
        "AlwaysAddARHeader yes",
        f"MaximumSignaturesToVerify {MAX_SIGNATURES}",
        f"DNSTimeout {OPENDKIM_DNS_TIMEOUT_S}",
        f"PidFile {workdir / 'opendkim.pid'}",
        f"TemporaryDirectory {workdir}",
    ]


class OpenDkimVerifier:
    """``opendkim -f -x CONF`` in Mode v on a unix socket, asking only the test DNS server.

    Use as a context manager; :meth:`verify` feeds one case through the
    milter driver from the case's client IP and returns what OpenDKIM said.
    One message at a time: Debian's OpenDKIM (built with VBR) reads the
    ResolverConfiguration file again for every message with unbound's
    parser, which is not thread-safe; concurrent messages make it skip
    verifying some and then crash (``benchmarks/inbound.py`` runs it
    without that file, in a network namespace of its own).
    """

    def __init__(self, dns: DnsServer) -> None:
        self.dns = dns
        self.workdir = Path(tempfile.mkdtemp(prefix="reputable-odkim-verify-", dir="/run"))
        self.workdir.chmod(0o755)
        self.endpoint = Endpoint("unix", path=self.workdir / "verify.sock")
        self.milter: MilterProcess | None = None
        self.started = 0.0

    def config(self) -> str:
        lines = opendkim_verify_lines(self.endpoint.path, self.workdir)
        port53 = self.dns.port53_address
        if port53 is not None:
            lines.append(f"Nameservers {port53[0]}")
            unbound = "server:\n  do-not-query-localhost: no\n"
        else:
            host, port = self.dns.address
            unbound = (
                "server:\n  do-not-query-localhost: no\n"
                f'forward-zone:\n  name: "."\n  forward-addr: {host}@{port}\n'
            )
        (self.workdir / "unbound.conf").write_text(unbound)
        lines.append(f"ResolverConfiguration {self.workdir / 'unbound.conf'}")
        return "\n".join(lines) + "\n"

    def __enter__(self) -> OpenDkimVerifier:
        config = self.workdir / "opendkim.conf"
        config.write_text(self.config())
        self.started = time.monotonic()
        self.milter = MilterProcess(
            "opendkim-verify", self.endpoint, self.workdir, [OPENDKIM, "-f", "-x", str(config)]
        ).start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.milter is not None:
            self.milter.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def verify(self, case: InboundCase) -> OpenDkimVerdict:
        action, added, _ = drive_one(
            self.endpoint.libmilter, case.message, case.client_ip, case.helo, case.mail_from
        )
        headers = [unfold(v) for n, v in added if n.lower() == "authentication-results"]
        if len(headers) > 1:
            raise RuntimeError(f"OpenDKIM added {len(headers)} Authentication-Results: {headers}")
        verdict = OpenDkimVerdict(action, headers[0] if headers else None)
        asked = {q.qname for q in self.dns.queries if q.time >= self.started and q.qtype == "TXT"}
        for signature in case.signatures:
            key = name_text(f"{signature.selector}._domainkey.{signature.domain}")
            said = verdict.by_signature().get((signature.domain, signature.b))
            if said == "pass" and key not in asked:
                raise RuntimeError(f"OpenDKIM passed {key} without asking the test DNS server")
        return verdict


# ---------------------------------------------------------------- pyspf


@dataclass(frozen=True)
class SpfVerdict:
    result: str
    output: str


def pyspf_verdict(dns: DnsServer, ip: str, mail_from: str, helo: str) -> SpfVerdict:
    """``python3 -m spf IP SENDER HELO`` with /etc/resolv.conf naming only the test server.

    The resolv.conf is bind-mounted in a mount namespace of pyspf's own
    (``unshare --mount``, private propagation): nothing outside it sees it.
    """
    port53 = dns.port53_address
    if port53 is None:
        raise RuntimeError("pyspf can only be pointed at port 53: DnsServer(port53=True)")
    domain = helo if not mail_from else mail_from.rpartition("@")[2]
    with tempfile.TemporaryDirectory(prefix="pyspf-") as tmp:
        resolv = Path(tmp) / "resolv.conf"
        resolv.write_text(f"nameserver {port53[0]}\n")
        started = time.monotonic()
        proc = subprocess.run(
            [
                "unshare",
                "--mount",
                "--propagation",
                "private",
                "sh",
                "-c",
                'mount --bind "$0" /etc/resolv.conf && exec "$1" -W ignore -m spf "$2" "$3" "$4"',
                str(resolv),
                SYSTEM_PYTHON,
                ip,
                mail_from,
                helo,
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    output = proc.stdout + proc.stderr
    match = _SPF_RESULT.search(proc.stdout)
    if proc.returncode != 0 or match is None:
        raise RuntimeError(
            f"pyspf ({ip}, {mail_from!r}, {helo}) exited {proc.returncode}: {output}"
        )
    asked = [
        q
        for q in dns.queries
        if q.time >= started and q.qname == name_text(domain) and q.qtype == "TXT"
    ]
    if not asked:
        raise RuntimeError(f"pyspf never asked the test DNS server for {domain}: {output}")
    return SpfVerdict(match.group("result"), output.strip())


def dkimpy_arc_verdict(dns: DnsServer, message: bytes) -> str:
    """dkimpy's ``arc_verify`` chain validation: pass, fail or none."""
    quiet = logging.Logger("dkimpy-arc-anchor")  # unmanaged: its words stay out of the test log
    quiet.addHandler(logging.NullHandler())
    cv, _, _ = dkim.arc_verify(message, logger=quiet, dnsfunc=dkimpy_dnsfunc(dns))
    return bytes(cv).decode("ascii").lower()


# ---------------------------------------------------------------- every anchor, once


@dataclass(frozen=True)
class Anchors:
    opendkim: OpenDkimVerdict
    spf: SpfVerdict
    arc: str


_anchors: dict[tuple[int, str], Anchors] = {}
_anchors_lock = threading.Lock()


def anchors(dns: DnsServer, cases: Mapping[str, InboundCase]) -> dict[str, Anchors]:
    """What OpenDKIM, pyspf and dkimpy's ARC say of each case (the records published).

    Kept for the process, per DNS server: pyspf waits out the dropped SPF
    name (its lookups last 20 s), which no module should pay twice.
    """
    with _anchors_lock:
        missing = [c for c in cases.values() if (id(dns), c.name) not in _anchors]
        if missing:
            with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
                spf = {
                    c.name: pool.submit(pyspf_verdict, dns, c.client_ip, c.mail_from, c.helo)
                    for c in missing
                }
                with OpenDkimVerifier(dns) as opendkim:
                    said = {c.name: opendkim.verify(c) for c in missing}
                for c in missing:
                    _anchors[(id(dns), c.name)] = Anchors(
                        said[c.name], spf[c.name].result(), dkimpy_arc_verdict(dns, c.message)
                    )
        return {name: _anchors[(id(dns), name)] for name in cases}


def describe(case: InboundCase) -> str:
    """A case in a few lines, for assertion messages."""
    lines = [
        f"{case.name}: {case.about}",
        f"  client {case.client_ip} HELO {case.helo} MAIL FROM <{case.mail_from}>",
        *(
            f"  DKIM d={s.domain} s={s.selector} a={s.algorithm} b={s.b} by {s.signer}: "
            f"{s.result or 'not verified'} (OpenDKIM: {s.opendkim or 'nothing'})"
            for s in case.signatures
        ),
        f"  SPF {case.spf}, DMARC {case.dmarc} (policy {case.dmarc_policy}), ARC {case.arc}",
    ]
    return "\n".join(lines)
