"""Verifying received mail: OpenDKIM in Mode v against reputable with [inbound] verify, direct driver.

Both milters get the same corpus of valid signed 2 KB messages (dkimpy's
signatures: RSA-2048 relaxed/relaxed, and every fifth Ed25519, which
OpenDKIM 2.11 verifies too) from an outside client (198.51.100.25, not an
internal host), through ``benchmarks.milter_driver`` on a unix socket, the
same connections as the standard benchmark's direct section (20 x 100 a
round), rounds alternating between them::

    .venv/bin/python -m benchmarks.inbound --rounds 3

OpenDKIM (Debian's 2.11) runs as a milter in Mode v, AlwaysAddARHeader, at
most five signatures, in a network namespace of its own with a DNS server
beside it serving the same records (see :class:`IsolatedOpenDkim` for why);
reputable runs ``reputable milter`` with ``[inbound] verify = true`` and the
benchmark's DNS server as its only resolver, logging its line per message
to a file. reputable does more per message than OpenDKIM: SPF of the
client, the DMARC tree walk and ARC besides DKIM. Both cache DNS answers
(libunbound's cache, reputable's TTL caches; the records' TTL is an hour)
and a warm-up round fills them. Debian's OpenDKIM is built with VBR
support, which makes a resolver context for every message (``vbr_init``
and ``vbr_dns_init`` in its mlfi_eoh): that is part of what it costs here,
as it is in production.

Every reply must add one Authentication-Results field with the milter's
authserv-id and the message accepted; every 50th reply's field is parsed
with authres and must say dkim=pass for the signature, or the run fails: a
milter that does not verify cannot win. Per milter it reports the median
msgs/s and CPU ms per message (utime + stime of the milter process over
the round, /proc/PID/stat) with their ranges, and reputable over OpenDKIM;
the text goes to ``benchmarks/results/inbound.txt`` (``--output``).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import dkim
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from benchmarks import system
from benchmarks.milter_driver import (
    DriverConfig,
    DriverResult,
    MilterProtocolError,
    Session,
    TestMessage,
    make_message,
    parse_message,
)
from benchmarks.milters import Endpoint, MilterProcess, prepare
from tests.integration.harness.dnsserver import DnsServer, txt_chunks
from tests.integration.harness.inbound_corpus import (
    OPENDKIM,
    OPENDKIM_AUTHSERV_ID,
    authserv_id,
    opendkim_verify_lines,
    parse_results,
)

KB = 1024
SENDER = "sender.example"
CLIENT_IP = "198.51.100.25"
HELO = f"mail.{SENDER}"
MAIL_FROM = f"bounces@{SENDER}"
RCPT = "bob@inbound.test"
AUTHSERV_ID = "mx.bench.example"
RSA_SELECTOR = "rsa"
ED25519_SELECTOR = "ed"
TTL = 3600
SAMPLE_EVERY = 50
RESULTS = Path(__file__).resolve().parent / "results" / "inbound.txt"
ISOLATED_DNS = "192.0.2.53"  # OpenDKIM's DNS server, on lo of OpenDKIM's own network namespace
READY_TIMEOUT_S = 30.0


# ---------------------------------------------------------------- the world


@dataclass(frozen=True)
class Corpus:
    messages: tuple[bytes, ...]
    records: dict[str, str]


def make_corpus(count: int, size: int) -> Corpus:
    """*count* distinct messages of about *size* bytes, signed by dkimpy; every fifth Ed25519."""
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ed_key = ed25519.Ed25519PrivateKey.generate()
    rsa_pem = rsa_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    ed_seed = base64.b64encode(
        ed_key.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )
    )
    der = rsa_key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    raw = ed_key.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    records = {
        f"{RSA_SELECTOR}._domainkey.{SENDER}": "v=DKIM1; k=rsa; p="
        + base64.b64encode(der).decode(),
        f"{ED25519_SELECTOR}._domainkey.{SENDER}": "v=DKIM1; k=ed25519; p="
        + base64.b64encode(raw).decode(),
        SENDER: f"v=spf1 ip4:{CLIENT_IP} -all",
        f"_dmarc.{SENDER}": "v=DMARC1; p=reject",
    }
    base = make_message(size, SENDER, RCPT)
    messages: list[bytes] = []
    for n in range(count):
        message = base.replace(
            f"Message-ID: <bench-{size}@{SENDER}>".encode(),
            f"Message-ID: <bench-in-{n}@{SENDER}>".encode(),
        )
        ed = n % 5 == 4
        signature: bytes = dkim.sign(
            message,
            (ED25519_SELECTOR if ed else RSA_SELECTOR).encode(),
            SENDER.encode(),
            ed_seed if ed else rsa_pem,
            canonicalize=(b"relaxed", b"relaxed"),
            signature_algorithm=b"ed25519-sha256" if ed else b"rsa-sha256",
        )
        messages.append(signature + message)
    return Corpus(tuple(messages), records)


def publish(dns: DnsServer, corpus: Corpus) -> None:
    for name, value in corpus.records.items():
        dns.set_txt(name, *txt_chunks(value), ttl=TTL)


def reputable_inbound(workdir: Path, dns: tuple[str, int]) -> MilterProcess:
    """``reputable milter`` verifying received mail, with the benchmark's DNS server only."""
    endpoint = prepare(workdir, "unix")
    keys = workdir / "keys"
    keys.mkdir(exist_ok=True)
    log = workdir / "milter.log"
    config = workdir / "reputable.toml"
    nameserver = f"{dns[0]}:{dns[1]}"
    config.write_text(
        "[milter]\n"
        f'socket = "{endpoint.libmilter}"\n'
        'socket_mode = "0666"\n'
        'mode = "enforce"\n'
        "[signing]\n"
        f'domains = ["{AUTHSERV_ID}"]\n'
        f'keys = "{keys}"\n'
        "[trust]\n"
        'internal_hosts = ["127.0.0.1/32"]\n'
        "[dns]\n"
        f'nameservers = ["{nameserver}"]\n'
        'timeout = "1s"\n'
        "[keys]\n"
        f'verify_nameservers = ["{nameserver}"]\n'
        "[inbound]\n"
        "verify = true\n"
        f'authserv_id = "{AUTHSERV_ID}"\n'
        "[log]\n"
        f'target = "{log}"\n'
        'level = "info"\n'
    )
    argv = [sys.executable, "-m", "reputable", "milter", "--config", str(config)]
    root = str(Path(__file__).resolve().parent.parent)
    return MilterProcess(
        "reputable", endpoint, workdir, argv, env={"PYTHONPATH": root}, log_path=log
    )


def serve_dns(records_file: Path) -> None:
    """The DNS server beside OpenDKIM (``--serve-dns``), run inside its network namespace."""
    records: dict[str, str] = json.loads(records_file.read_text())
    stop = False

    def stopping(signum: int, frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, stopping)
    with DnsServer([(ISOLATED_DNS, 53)]) as dns:
        for name, value in records.items():
            dns.set_txt(name, *txt_chunks(value), ttl=TTL)
        records_file.with_suffix(".ready").write_text(str(os.getpid()))
        while not stop:
            time.sleep(0.2)
        asked = sum(1 for q in dns.queries if q.qtype == "TXT")
    records_file.with_suffix(".asked").write_text(str(asked))


@dataclass
class SocketEndpoint(Endpoint):
    """A unix socket in another network namespace: /proc/net/unix here does not list it."""

    def listening(self) -> bool:
        assert self.path is not None
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            try:
                probe.connect(str(self.path))
            except OSError:
                return False
        return True


class IsolatedOpenDkim:
    """OpenDKIM in Mode v in a network namespace of its own, a DNS server beside it.

    OpenDKIM resolves through libunbound, which will not ask a server on
    127.0.0.0/8 unless a ResolverConfiguration file says
    ``do-not-query-localhost: no``; but Debian's OpenDKIM (built with VBR)
    reads that file again for every message (``vbr_dns_config`` in mlfi_eoh)
    with unbound's parser, which is not thread-safe: with concurrent
    connections it logs syntax errors, answers some messages without
    verifying them and dies (``fatal flex scanner internal error``, SIGSEGV).
    So, as in production (no ResolverConfiguration), OpenDKIM is only told
    ``Nameservers 192.0.2.53``: an address on the loopback interface of a
    network namespace made for it (``unshare --net``), where a DNS server
    serving the same records as the benchmark's listens (this module run
    with ``--serve-dns``). The milter socket is a unix socket, which the
    driver reaches from outside the namespace; nothing else is reachable
    from inside, so a pass is a key fetched from that server.
    """

    def __init__(self, workdir: Path, records: dict[str, str]) -> None:
        self.workdir = workdir
        prepare(workdir, "unix")
        self.endpoint = SocketEndpoint("unix", path=workdir / "milter.sock")
        self.records = workdir / "records.json"
        self.records.write_text(json.dumps(records))
        self.dns: subprocess.Popen[bytes] | None = None
        self.milter: MilterProcess | None = None

    def config(self) -> str:
        lines = opendkim_verify_lines(self.endpoint.path, self.workdir)
        return "\n".join([*lines, f"Nameservers {ISOLATED_DNS}"]) + "\n"

    def start(self) -> MilterProcess:
        root = str(Path(__file__).resolve().parent.parent)
        script = (
            f"ip link set lo up && ip addr add {ISOLATED_DNS}/32 dev lo && "
            'exec "$0" -m benchmarks.inbound --serve-dns "$1"'
        )
        with (self.workdir / "dns-stderr.txt").open("wb") as err:
            self.dns = subprocess.Popen(
                ["unshare", "--net", "sh", "-c", script, sys.executable, str(self.records)],
                env={**os.environ, "PYTHONPATH": root},
                stdout=subprocess.DEVNULL,
                stderr=err,
                cwd=root,
            )
        ready = self.records.with_suffix(".ready")
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not ready.exists():
            if self.dns.poll() is not None or time.monotonic() > deadline:
                stderr = (self.workdir / "dns-stderr.txt").read_text(errors="replace")
                raise RuntimeError(f"OpenDKIM's DNS server did not start: {stderr}")
            time.sleep(0.05)
        config = self.workdir / "opendkim.conf"
        config.write_text(self.config())
        argv = ["nsenter", f"--net=/proc/{self.dns.pid}/ns/net", OPENDKIM, "-f", "-x", str(config)]
        self.milter = MilterProcess("opendkim", self.endpoint, self.workdir, argv).start()
        return self.milter

    def stop(self) -> int:
        """Stop both; how many TXT queries the DNS server beside OpenDKIM answered."""
        if self.milter is not None:
            self.milter.stop()
        if self.dns is not None and self.dns.poll() is None:
            self.dns.terminate()
            self.dns.wait(15)
        asked = self.records.with_suffix(".asked")
        return int(asked.read_text()) if asked.exists() else 0


# ---------------------------------------------------------------- the load


class VerificationMissing(RuntimeError):
    """A reply without the Authentication-Results it must add, or one not saying dkim=pass."""


@dataclass
class Round:
    messages: int = 0
    seconds: float = 0.0
    with_header: int = 0
    sampled: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    actions: dict[str, int] = field(default_factory=dict)


async def _connection(
    socket: str, parsed: Sequence[TestMessage], start: int, count: int, result: Round
) -> None:
    for n in range(start, start + count):
        config = DriverConfig(
            socket=socket,
            mail_from=MAIL_FROM,
            rcpt=RCPT,
            client_addr=CLIENT_IP,
            client_name="unknown",
            helo=HELO,
            timeout_s=120,
        )
        session = Session(config, parsed[n % len(parsed)], DriverResult())
        try:
            await asyncio.wait_for(session.open(), config.timeout_s)
            action, added = await asyncio.wait_for(
                session.message(time.perf_counter()), config.timeout_s
            )
        except (OSError, asyncio.IncompleteReadError, TimeoutError, MilterProtocolError) as exc:
            result.errors.append(f"{type(exc).__name__}: {exc}")
            continue
        finally:
            await session.close()
        result.messages += 1
        result.actions[action] = result.actions.get(action, 0) + 1
        fields = [v for name, v in added or [] if name.lower() == "authentication-results"]
        if len(fields) == 1:
            result.with_header += 1
            if n % SAMPLE_EVERY == 0:
                result.sampled.append(fields[0])


def drive(socket: str, parsed: Sequence[TestMessage], connections: int, messages: int) -> Round:
    result = Round()

    async def run() -> None:
        await asyncio.gather(
            *(
                _connection(socket, parsed, c * messages, messages, result)
                for c in range(connections)
            )
        )

    started = time.perf_counter()
    asyncio.run(run())
    result.seconds = time.perf_counter() - started
    return result


def check(label: str, result: Round, ours: str, expected_messages: int) -> None:
    """Every message accepted with one header added; each sampled header says dkim=pass."""
    if result.errors or result.messages != expected_messages:
        raise VerificationMissing(
            f"{label}: {result.messages} of {expected_messages} messages, errors {result.errors[:3]}"
        )
    if result.actions != {"accept": result.messages}:
        raise VerificationMissing(f"{label}: actions {result.actions}")
    if result.with_header != result.messages:
        raise VerificationMissing(
            f"{label}: {result.messages - result.with_header} replies added no Authentication-Results"
        )
    for value in result.sampled:
        verdicts = parse_results(value)
        dkim_results = [v.result for v in verdicts.dkim]
        if authserv_id(value) != ours or dkim_results != ["pass"]:
            raise VerificationMissing(f"{label}: a sampled reply says {value!r}")


@dataclass
class Series:
    label: str
    milter: MilterProcess
    authserv_id: str
    rates: list[float] = field(default_factory=list)
    cpu_ms: list[float] = field(default_factory=list)
    sampled: int = 0

    def round(self, parsed: Sequence[TestMessage], connections: int, messages: int) -> Round:
        self.milter.check_alive()
        user0, sys0 = system.cpu_times(self.milter.pid)
        result = drive(self.milter.endpoint.libmilter, parsed, connections, messages)
        user1, sys1 = system.cpu_times(self.milter.pid)
        check(self.label, result, self.authserv_id, connections * messages)
        self.rates.append(result.messages / result.seconds)
        self.cpu_ms.append((user1 + sys1 - user0 - sys0) * 1000 / result.messages)
        self.sampled += len(result.sampled)
        return result

    def line(self) -> str:
        rate, cpu = statistics.median(self.rates), statistics.median(self.cpu_ms)
        return (
            f"{self.label:>9}: {rate:7.1f} msgs/s ({min(self.rates):.1f}-{max(self.rates):.1f}), "
            f"{cpu:.3f} ms CPU/msg ({min(self.cpu_ms):.3f}-{max(self.cpu_ms):.3f}), "
            f"{self.sampled} sampled replies dkim=pass"
        )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=20)
    parser.add_argument("--messages", type=int, default=100, help="per connection and round")
    parser.add_argument("--size", type=int, default=2 * KB)
    parser.add_argument("--corpus", type=int, default=20, help="distinct signed messages")
    parser.add_argument(
        "--milters", default="opendkim,reputable", help="opendkim, reputable or both"
    )
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument("--serve-dns", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_dns is not None:
        serve_dns(args.serve_dns)
        return 0
    names = [n.strip() for n in args.milters.split(",") if n.strip()]
    if not names or set(names) - {"opendkim", "reputable"}:
        parser.error("--milters takes opendkim, reputable or both")
    corpus = make_corpus(args.corpus, args.size)
    parsed = [parse_message(m) for m in corpus.messages]
    workdir = Path(tempfile.mkdtemp(prefix="reputable-inbound-bench-", dir="/run"))
    series: list[Series] = []
    asked: list[int] = []  # TXT queries OpenDKIM's DNS server answered
    try:
        with contextlib.ExitStack() as stack:
            dns = stack.enter_context(DnsServer([("127.0.0.1", 0)], port53=True))
            publish(dns, corpus)
            if "opendkim" in names:
                isolated = IsolatedOpenDkim(workdir / "opendkim", corpus.records)
                stack.callback(lambda: asked.append(isolated.stop()))
                series.append(Series("opendkim", isolated.start(), OPENDKIM_AUTHSERV_ID))
            if "reputable" in names:
                milter = reputable_inbound(workdir / "reputable", dns.address)
                stack.callback(milter.stop)
                series.append(Series("reputable", milter.start(), AUTHSERV_ID))
            for each in series:
                each.round(parsed, 4, 5)  # warm-up: keys and caches loaded
                each.rates.clear()
                each.cpu_ms.clear()
                each.sampled = 0
            for number in range(args.rounds):
                for each in series if number % 2 == 0 else list(reversed(series)):
                    each.round(parsed, args.connections, args.messages)
                    print(
                        f"round {number + 1}: {each.label} {each.rates[-1]:.1f} msgs/s", flush=True
                    )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    ed = sum(1 for n in range(args.corpus) if n % 5 == 4)
    lines = [
        f"Verifying received mail, direct driver, unix socket, {args.connections} connections, "
        f"{args.rounds} alternating rounds of {args.connections * args.messages} messages of "
        f"{args.size} B ({args.corpus} distinct: {args.corpus - ed} RSA-2048 and {ed} Ed25519 "
        "signatures, relaxed/relaxed, by dkimpy), from an outside client",
        "OpenDKIM 2.11 Mode v (DKIM only); reputable [inbound] verify (DKIM, SPF, DMARC, ARC)",
        *(f"OpenDKIM's DNS server answered {n} TXT queries (libunbound caches)" for n in asked),
        *(each.line() for each in series),
    ]
    if len(series) == 2:
        odk, rep = series
        rate = statistics.median(rep.rates) / statistics.median(odk.rates)
        cpu = statistics.median(rep.cpu_ms) / statistics.median(odk.cpu_ms)
        lines.append(f"reputable / opendkim: throughput {rate:.2f}x, CPU per message {cpu:.2f}x")
    text = "\n".join(lines) + "\n"
    print(text, end="")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
