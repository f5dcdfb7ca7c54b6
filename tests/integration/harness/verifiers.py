"""Three independent DKIM verifiers that fetch keys from the test DNS server.

Each verifier is a function ``(message_bytes, dns_server) -> VerifierResult``.
A result has one :class:`SignatureResult` per DKIM-Signature (in header
order) and ``passed`` is true only when there is at least one signature and
every one of them passed.  A bad signature, a missing key or a DNS timeout is
a failed result, never an exception; a verifier that cannot run at all (the
tool is not installed, the harness is misconfigured) raises
:class:`VerifierUnavailable` with a message saying what to install.

* :func:`verify_mail_dkim`: Perl's Mail::DKIM (Debian ``libmail-dkim-perl``)
  through ``mail_dkim_verify.pl``, whose Net::DNS resolver is pointed at the
  server's address and port.  Debian's Mail::DKIM 1.20230212 has no
  Ed25519 support: it reports ``invalid (unsupported algorithm
  ed25519-sha256)`` for such signatures; use ``result.only("rsa")``.
* :func:`verify_opendkim`: ``opendkim -x CONF -vvv -t FILE`` (Debian
  ``opendkim``) in test mode; its verdict is read from the
  Authentication-Results header it prints (one ``dkim=`` per signature).
  Debian builds OpenDKIM with libunbound.  The library really queries our
  server: when the server has a port-53 listener (``DnsServer(port53=True)``)
  the config says ``Nameservers 127.53.x.y`` (port 53 is all that option can
  express); otherwise ``ResolverConfiguration`` names an unbound config file
  with ``do-not-query-localhost: no`` and a forward zone for "." to
  ``ADDRESS@PORT``.  Either way the verifier checks the server's query log
  afterwards and fails the result if OpenDKIM passed a signature without
  having asked our server for its key.  No TestDNSData/TestPublicKeys
  fallback is used.
* :func:`verify_dkimpy`: dkimpy's ``DKIM.verify(idx=i, dnsfunc=...)`` with a
  dnsfunc asking our server through dnspython (UDP, TCP on truncation) and
  joining the TXT character-strings.  Ed25519 needs PyNaCl installed.  A DNS
  timeout or error rcode is reported as ``temperror (DnsTimeoutError: ...)``.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import dkim
import dkim.util
import dns.exception
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import dns.rdtypes.ANY.TXT

from .dnsserver import DnsServer, name_text

MAIL_DKIM_SCRIPT = Path(__file__).with_name("mail_dkim_verify.pl")
DEFAULT_TIMEOUT = 10.0
"""Seconds a verifier may take in all (its DNS timeouts are shorter)."""


class VerifierUnavailable(RuntimeError):
    """The verifier cannot run here (missing program or module, bad set-up)."""


@dataclass(frozen=True)
class SignatureResult:
    """The verdict on one DKIM-Signature."""

    passed: bool
    result: str
    """The verifier's result keyword: ``pass``, ``fail``, ``invalid``, ``neutral``, ..."""
    detail: str
    """The verifier's own words, e.g. ``pass`` or ``fail (body has been altered)``."""
    domain: str = ""
    selector: str = ""
    algorithm: str = ""


@dataclass(frozen=True)
class VerifierResult:
    """All the verdicts of one verifier on one message."""

    verifier: str
    passed: bool
    """True when there was at least one signature and every one passed."""
    detail: str
    results: tuple[SignatureResult, ...] = ()
    output: str = ""
    """The tool's raw output, for failure messages."""

    def only(self, algorithm_prefix: str) -> VerifierResult:
        """The same result restricted to signatures whose ``a=`` starts with *algorithm_prefix*.

        ``result.only("rsa")`` is how to judge Mail::DKIM, which cannot verify Ed25519.
        """
        kept = tuple(r for r in self.results if r.algorithm.startswith(algorithm_prefix))
        return replace(
            self,
            results=kept,
            passed=bool(kept) and all(r.passed for r in kept),
            detail=_summary(kept) if kept else f"no {algorithm_prefix}* signature",
        )

    def for_selector(self, selector: str, domain: str | None = None) -> SignatureResult:
        """The verdict on the signature with this ``s=`` (and ``d=``); KeyError if none."""
        for r in self.results:
            if r.selector == selector and (domain is None or r.domain.lower() == domain.lower()):
                return r
        raise KeyError(f"{self.verifier}: no signature s={selector} d={domain}: {self.detail}")

    def __str__(self) -> str:
        return f"{self.verifier}: {'PASS' if self.passed else 'FAIL'}: {self.detail}"


Verifier = Callable[[bytes, DnsServer], VerifierResult]


def _summary(results: Sequence[SignatureResult]) -> str:
    if not results:
        return "no DKIM signature"
    return "; ".join(f"d={r.domain} s={r.selector} a={r.algorithm}: {r.detail}" for r in results)


def _make_result(verifier: str, results: Sequence[SignatureResult], output: str) -> VerifierResult:
    return VerifierResult(
        verifier=verifier,
        passed=bool(results) and all(r.passed for r in results),
        detail=_summary(results),
        results=tuple(results),
        output=output,
    )


def _require_program(name: str, package: str) -> str:
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin:/sbin:/bin")
    if path is None:
        raise VerifierUnavailable(
            f"{name} is not installed: apt-get install {package} (see TEST_PACKAGES in Makefile)"
        )
    return path


def _signature_tags(message: bytes) -> list[dict[bytes, bytes]]:
    """The tag lists of the message's DKIM-Signature fields, in order ({} if unparseable)."""
    try:
        d = dkim.DKIM(message)
    except Exception:  # not even a parseable message: no signature to speak of
        return []
    tags: list[dict[bytes, bytes]] = []
    for name, value in d.headers:
        if name.lower() != b"dkim-signature":
            continue
        try:
            tags.append(dict(dkim.util.parse_tag_value(value)))
        except Exception:
            tags.append({})
    return tags


def _tag(tags: dict[bytes, bytes], key: bytes) -> str:
    return tags.get(key, b"").decode("ascii", "replace").strip()


# ---------------------------------------------------------------- Mail::DKIM


def verify_mail_dkim(
    message: bytes, dns_server: DnsServer, timeout: float = DEFAULT_TIMEOUT
) -> VerifierResult:
    """Verify with Perl's Mail::DKIM::Verifier asking *dns_server* for keys."""
    perl = _require_program("perl", "perl")
    host, port = dns_server.address
    dns_timeout = max(1, int(timeout / 4))
    try:
        proc = subprocess.run(
            [
                perl,
                str(MAIL_DKIM_SCRIPT),
                "--server",
                host,
                "--port",
                str(port),
                "--timeout",
                str(dns_timeout),
                "-",
            ],
            input=message,
            capture_output=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as e:
        return _make_result("mail-dkim", [], f"timed out after {timeout}s: {e}")
    stderr = proc.stderr.decode("utf-8", "replace")
    stdout = proc.stdout.decode("utf-8", "replace")
    if proc.returncode != 0:
        if "Can't locate" in stderr:
            raise VerifierUnavailable(
                "Mail::DKIM or Net::DNS is missing: apt-get install libmail-dkim-perl "
                f"libnet-dns-perl\n{stderr}"
            )
        raise VerifierUnavailable(f"mail_dkim_verify.pl exited {proc.returncode}: {stderr}")
    results: list[SignatureResult] = []
    for line in stdout.splitlines():
        record = json.loads(line)
        if record.get("type") != "signature":
            continue
        results.append(
            SignatureResult(
                passed=record["result"] == "pass",
                result=record["result"],
                detail=record["detail"],
                domain=record["domain"],
                selector=record["selector"],
                algorithm=record["algorithm"],
            )
        )
    return _make_result("mail-dkim", results, stdout + stderr)


# ------------------------------------------------------------------ OpenDKIM

_AR_RE = re.compile(
    r"### INSHEADER: idx=\d+ hname='Authentication-Results' hvalue='(?P<value>.*?)'\s*$",
    re.DOTALL | re.MULTILINE,
)
_RESINFO_RE = re.compile(
    r'^dkim=(?P<result>\w+)(?:\s+reason="(?P<reason>[^"]*)")?(?P<rest>.*)$', re.DOTALL
)
_PROP_RE = re.compile(r"header\.(?P<key>[dsaib])=(?P<value>[^\s;]+)")


def _opendkim_config(dns_server: DnsServer, workdir: Path, dns_timeout: int) -> str:
    lines = [
        "Mode v",
        "Syslog no",
        "AlwaysAddARHeader yes",
        "AuthservID verifier.example.net",
        f"DNSTimeout {dns_timeout}",
        f"TemporaryDirectory {workdir}",
    ]
    port53 = dns_server.port53_address
    if port53 is not None:
        lines.append(f"Nameservers {port53[0]}")
        # libunbound refuses to query 127/8 unless told otherwise.
        unbound = "server:\n  do-not-query-localhost: no\n"
    else:
        host, port = dns_server.address
        unbound = (
            "server:\n"
            "  do-not-query-localhost: no\n"
            "forward-zone:\n"
            '  name: "."\n'
            f"  forward-addr: {host}@{port}\n"
        )
    unbound_conf = workdir / "unbound.conf"
    unbound_conf.write_text(unbound)
    lines.append(f"ResolverConfiguration {unbound_conf}")
    return "\n".join(lines) + "\n"


def verify_opendkim(
    message: bytes, dns_server: DnsServer, timeout: float = DEFAULT_TIMEOUT
) -> VerifierResult:
    """Verify with ``opendkim -t`` (test mode) asking *dns_server* for keys."""
    opendkim = _require_program("opendkim", "opendkim")
    tags = _signature_tags(message)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="opendkim-verify-") as tmp:
        workdir = Path(tmp)
        conf = workdir / "opendkim.conf"
        conf.write_text(_opendkim_config(dns_server, workdir, max(1, int(timeout / 3))))
        msg_file = workdir / "message.eml"
        msg_file.write_bytes(message)
        try:
            proc = subprocess.run(
                [opendkim, "-x", str(conf), "-vvv", "-t", str(msg_file)],
                capture_output=True,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as e:
            return _make_result("opendkim", [], f"timed out after {timeout}s: {e}")
    stdout = proc.stdout.decode("utf-8", "replace")
    stderr = proc.stderr.decode("utf-8", "replace")
    output = stdout + stderr
    if proc.returncode != 0:
        raise VerifierUnavailable(f"opendkim -t exited {proc.returncode}: {output}")
    match = _AR_RE.search(stdout)
    if match is None:
        return _make_result("opendkim", [], f"no Authentication-Results in output:\n{output}")
    results: list[SignatureResult] = []
    # resinfo = "authserv-id; dkim=...; dkim=...; dkim-atps=..."; reasons hold no ';'.
    for part in match.group("value").split(";")[1:]:
        resinfo = " ".join(part.split())
        m = _RESINFO_RE.match(resinfo)
        if m is None or m.group("result") == "none":
            continue
        props = {p.group("key"): p.group("value") for p in _PROP_RE.finditer(resinfo)}
        result = m.group("result")
        reason = m.group("reason")
        results.append(
            SignatureResult(
                passed=result == "pass",
                result=result,
                detail=f"{result} ({reason})" if reason else result,
                domain=props.get("d", ""),
                selector=props.get("s", ""),
                algorithm=props.get("a", ""),
            )
        )
    # OpenDKIM reports in header order; fill in what its output leaves out.
    if len(results) == len(tags):
        results = [
            replace(
                r,
                domain=r.domain or _tag(t, b"d"),
                selector=r.selector or _tag(t, b"s"),
                algorithm=r.algorithm or _tag(t, b"a"),
            )
            for r, t in zip(results, tags, strict=True)
        ]
    checked: list[SignatureResult] = []
    for r in results:
        key_name = f"{r.selector}._domainkey.{r.domain}"
        asked = [
            q
            for q in dns_server.queries
            if q.time >= started and q.qname == name_text(key_name) and q.qtype == "TXT"
        ]
        if r.passed and not asked:
            r = replace(
                r,
                passed=False,
                result="harness-error",
                detail=f"{r.detail}, but OpenDKIM never asked the test DNS server for {key_name}",
            )
        checked.append(r)
    return _make_result("opendkim", checked, output)


# -------------------------------------------------------------------- dkimpy


def dkimpy_dnsfunc(dns_server: DnsServer) -> Callable[..., bytes | None]:
    """A dkimpy ``dnsfunc`` asking *dns_server* (UDP, then TCP if truncated).

    Returns the first TXT record's character-strings joined, None for
    NXDOMAIN / no TXT, and raises ``dkim.DnsTimeoutError`` on a timeout or
    another rcode (dkimpy turns that into a failed verification).
    """
    host, port = dns_server.address

    def get_txt(name: bytes | str, timeout: float = 5) -> bytes | None:
        qname = name.decode("ascii") if isinstance(name, bytes) else name
        query = dns.message.make_query(qname, dns.rdatatype.TXT)
        try:
            response, _ = dns.query.udp_with_fallback(query, host, timeout=timeout, port=port)
        except dns.exception.Timeout as e:
            raise dkim.DnsTimeoutError(f"DNS timeout for {qname}: {e}") from e
        rcode = response.rcode()
        if rcode == dns.rcode.NXDOMAIN:
            return None
        if rcode != dns.rcode.NOERROR:
            raise dkim.DnsTimeoutError(f"DNS {dns.rcode.to_text(rcode)} for {qname}")
        for rrset in response.answer:
            if rrset.rdtype != dns.rdatatype.TXT:
                continue
            for rdata in rrset:
                if isinstance(rdata, dns.rdtypes.ANY.TXT.TXT):
                    return b"".join(rdata.strings)
        return None

    return get_txt


class _ListHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.INFO)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def verify_dkimpy(
    message: bytes, dns_server: DnsServer, timeout: float = DEFAULT_TIMEOUT
) -> VerifierResult:
    """Verify every signature with dkimpy, asking *dns_server* for keys."""
    dnsfunc = dkimpy_dnsfunc(dns_server)
    tags = _signature_tags(message)
    if any(_tag(t, b"a").startswith("ed25519") for t in tags) and (
        importlib.util.find_spec("nacl") is None
    ):
        raise VerifierUnavailable("dkimpy needs PyNaCl for Ed25519: pip install pynacl")
    results: list[SignatureResult] = []
    lines: list[str] = []
    for idx, t in enumerate(tags):
        handler = _ListHandler()
        logger = logging.Logger(f"dkimpy-verifier-{idx}")  # unmanaged: no global logging state
        logger.addHandler(handler)
        d = dkim.DKIM(message, logger=logger, timeout=max(1, int(timeout / 3)))
        result = "fail"
        try:
            ok = bool(d.verify(idx=idx, dnsfunc=dnsfunc))
            why = "; ".join(handler.messages) or "signature did not verify"
            if ok:
                result = "pass"
            elif why.startswith("DnsTimeoutError"):
                result = "temperror"  # dkimpy logs DNS timeouts/errors and returns False
            detail = result if ok else f"{result} ({why})"
        except dkim.DKIMException as e:
            ok = False
            detail = f"fail ({type(e).__name__}: {e})"
        except Exception as e:  # dkimpy lets some malformed input escape as other errors
            ok = False
            detail = f"fail (unexpected {type(e).__name__}: {e})"
        lines.append(f"signature {idx}: {detail}")
        results.append(
            SignatureResult(
                passed=ok,
                result=result,
                detail=detail,
                domain=_tag(t, b"d"),
                selector=_tag(t, b"s"),
                algorithm=_tag(t, b"a"),
            )
        )
    return _make_result("dkimpy", results, "\n".join(lines))


ALL_VERIFIERS: tuple[tuple[str, Verifier], ...] = (
    ("mail-dkim", verify_mail_dkim),
    ("opendkim", verify_opendkim),
    ("dkimpy", verify_dkimpy),
)


def verify_all(message: bytes, dns_server: DnsServer) -> dict[str, VerifierResult]:
    """Run every verifier; results keyed by verifier name."""
    return {name: fn(message, dns_server) for name, fn in ALL_VERIFIERS}
