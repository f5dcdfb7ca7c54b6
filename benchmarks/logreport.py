"""`reputable report` against pflogsumm on the same generated mail log, in the same run.

    .venv/bin/python -m benchmarks.logreport                       # 1,000,000 lines, 3 rounds
    .venv/bin/python -m benchmarks.logreport --lines 100000 --rounds 1

The log is what a busy Postfix with reputable writes to one syslog file:
traditional stamps over about a day, 20 messages in flight at once, each
with its smtpd, cleanup, qmgr and smtp lines and our verdict line. The mix:
mail to Google, Microsoft, Yahoo and other MX hosts, deliveries deferred by
Microsoft's 4.7.650 and sent on a retry, bounces with Gmail's 5.7.26 and a
plain "user unknown", mail held and refused by the gate, inbound mail
delivered locally and not signed, and a host check failing and recovering.

Both programs read the same file, rounds alternating; each is timed from
start to exit, its peak memory read from the kernel's accounting of the
child (wait4). Their totals must agree (sent, deferred, bounced, held,
rejected) or the run fails. reputable's memory is also measured on a tenth
of the file: it holds the messages in flight, not the file, so it must stay
flat. pflogsumm is installed from Debian when missing.
"""

from __future__ import annotations

import argparse
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
IN_FLIGHT = 20
# The two logs: lines about messages only (an outbound relay), and a server on the internet,
# where bots knocking at smtpd and postscreen and IMAP logins write most of the lines.
MIXES = (0.0, 0.6)
PIDS = {
    "smtpd": 2101,
    "cleanup": 2102,
    "qmgr": 1990,
    "smtp": 2103,
    "local": 2104,
    "postscreen": 2105,
}

RECEIVERS = (  # recipient domain, MX host and IP, share of the mail
    ("gmail.com", "gmail-smtp-in.l.google.com", "142.250.102.27", 35),
    ("outlook.com", "outlook-com.olc.protection.outlook.com", "52.101.68.18", 25),
    ("yahoo.com", "mta7.am0.yahoodns.net", "67.195.204.72", 10),
    ("example.org", "mx.example.org", "198.51.100.25", 30),
)
GMAIL_DMARC = (
    "550-5.7.26 Unauthenticated email from example.com is not accepted due to domain's "
    "550-5.7.26 DMARC policy. Please contact the administrator of example.com domain. "
    "550 5.7.26 a1si2 - gsmtp"
)
MICROSOFT_RATE = (
    "451 4.7.650 The mail server [192.0.2.25] has been temporarily rate limited due to IP "
    "reputation. For e-mail delivery information, see https://postmaster.live.com (S843)"
)


@dataclass
class Totals:
    """What both programs count, from their own outputs."""

    sent: int = 0
    deferred: int = 0
    bounced: int = 0
    held: int = 0
    rejected: int = 0


class MailLog:
    """Writes the lines of one syslog file, the clock moving one second per 12 lines."""

    def __init__(self, start: datetime, seed: int, noise: float = 0.0) -> None:
        self.noise = noise  # the share of lines about no message
        self.noise_rejects = 0  # smtpd's NOQUEUE rejects: pflogsumm counts them as rejected
        self.clock = start
        self.random = random.Random(seed)
        self.lines: list[str] = []  # written in batches
        self.count = 0  # lines made so far
        self.expected = Totals()
        self.next_id = 0x10000

    def stamp(self) -> str:
        self.count += 1
        if self.count % 12 == 0:
            self.clock += timedelta(seconds=1)
        return f"{self.clock:%b} {self.clock.day:2d} {self.clock:%H:%M:%S} mta"

    def postfix(self, daemon: str, text: str) -> str:
        return f"{self.stamp()} postfix/{daemon}[{PIDS[daemon]}]: {text}"

    def ours(self, text: str) -> str:
        return f"{self.stamp()} reputable[900]: level=info logger=milter {text}"

    def message(self) -> Iterator[str]:
        """One message's lines, in Postfix's order; the caller interleaves them."""
        pick = self.random.random()
        queue_id = f"{self.next_id:X}{self.random.randrange(16**5):05X}"
        self.next_id += 1
        inbound = pick < 0.1
        client = "203.0.113.9" if inbound else "192.0.2.10"
        domain, mx, mx_ip, _ = self.random.choices(RECEIVERS, [r[3] for r in RECEIVERS])[0]
        yield self.postfix("smtpd", f"connect from client.example.net[{client}]")
        yield self.postfix("smtpd", f"{queue_id}: client=client.example.net[{client}]")
        yield self.postfix("cleanup", f"{queue_id}: message-id=<{queue_id}@example.com>")
        if inbound:
            yield self.ours(
                f"queue_id={queue_id} action=accept source=external client={client} "
                "from_domain=example.net dkim=none reason=not_outbound ms=0.05"
            )
        elif pick < 0.12:
            yield self.ours(
                f"queue_id={queue_id} action=hold source=internal client={client} "
                "from_domain=example.com dkim=example.com/s2026 spf=pass ptr=ok dnsbl=listed "
                "dmarc=aligned checks=dnsbl.zen.spamhaus.org.192.0.2.25 ms=0.9"
            )
            yield self.postfix(
                "cleanup",
                f"{queue_id}: milter-hold: END-OF-MESSAGE from client.example.net[{client}]: "
                f"milter triggers HOLD action; from=<alice@example.com> to=<bob@{domain}> "
                "proto=ESMTP helo=<client.example.net>",
            )
            self.expected.held += 1
            yield self.postfix("smtpd", f"disconnect from client.example.net[{client}]")
            return
        elif pick < 0.13:
            yield self.ours(
                f"queue_id={queue_id} action=reject source=internal client={client} "
                "from_domain=example.com dkim=none spf=fail ptr=ok dnsbl=clean "
                "dmarc=unaligned checks=spf ms=0.8"
            )
            yield self.postfix(
                "cleanup",
                f"{queue_id}: milter-reject: END-OF-MESSAGE from client.example.net[{client}]: "
                "5.7.1 SPF fails for 192.0.2.25; from=<alice@example.com> "
                f"to=<bob@{domain}> proto=ESMTP helo=<client.example.net>",
            )
            self.expected.rejected += 1
            yield self.postfix("smtpd", f"disconnect from client.example.net[{client}]")
            return
        else:
            yield self.ours(
                f"queue_id={queue_id} action=accept source=internal client={client} "
                "from_domain=example.com dkim=example.com/s2026,example.com/e2026 spf=pass "
                "ptr=ok dnsbl=clean dmarc=aligned ms=0.92"
            )
        size = self.random.randrange(800, 60000)
        yield self.postfix(
            "qmgr", f"{queue_id}: from=<alice@example.com>, size={size}, nrcpt=1 (queue active)"
        )
        yield self.postfix("smtpd", f"disconnect from client.example.net[{client}]")
        if inbound:
            yield self.delivery(queue_id, "alice@example.com", "local", "2.0.0", "sent", "")
        elif pick < 0.20:
            yield self.delivery(
                queue_id,
                f"dave@{domain}",
                f"{mx}[{mx_ip}]:25",
                "4.7.650",
                "deferred",
                f"host {mx}[{mx_ip}] said: {MICROSOFT_RATE} (in reply to end of DATA command)",
            )
            self.expected.deferred += 1
            yield self.delivery(
                queue_id, f"dave@{domain}", f"{mx}[{mx_ip}]:25", "2.0.0", "sent", ""
            )
        elif pick < 0.23:
            yield self.delivery(
                queue_id,
                f"carol@{domain}",
                f"{mx}[{mx_ip}]:25",
                "5.7.26",
                "bounced",
                f"host {mx}[{mx_ip}] said: {GMAIL_DMARC} (in reply to end of DATA command)",
            )
        elif pick < 0.25:
            yield self.delivery(
                queue_id,
                f"nobody@{domain}",
                f"{mx}[{mx_ip}]:25",
                "5.1.1",
                "bounced",
                f"host {mx}[{mx_ip}] said: 550 5.1.1 <nobody@{domain}>: Recipient address "
                "rejected: User unknown in virtual mailbox table (in reply to RCPT TO command)",
            )
        else:
            yield self.delivery(queue_id, f"bob@{domain}", f"{mx}[{mx_ip}]:25", "2.0.0", "sent", "")
        yield self.postfix("qmgr", f"{queue_id}: removed")

    def delivery(self, queue_id: str, to: str, relay: str, dsn: str, status: str, said: str) -> str:
        if status == "sent":
            self.expected.sent += 1
            said = "250 2.0.0 Ok: queued as 4Xy9" if relay != "local" else "delivered to mailbox"
        elif status == "bounced":
            self.expected.bounced += 1
        daemon = "local" if relay == "local" else "smtp"
        return self.postfix(
            daemon,
            f"{queue_id}: to=<{to}>, relay={relay}, delay=0.4, delays=0.1/0/0.1/0.2, "
            f"dsn={dsn}, status={status} ({said})",
        )

    def noise_line(self) -> str:
        """A line about no message: bots at smtpd and postscreen, IMAP logins, TLS."""
        ip = f"198.51.100.{self.random.randrange(1, 255)}"
        pick = self.random.randrange(8)
        if pick == 0:
            return self.postfix(
                "postscreen", f"CONNECT from [{ip}]:{40000 + pick} to [192.0.2.25]:25"
            )
        if pick == 1:
            return self.postfix("postscreen", f"PASS OLD [{ip}]:{40000 + pick}")
        if pick == 2:
            return self.postfix("smtpd", f"connect from unknown[{ip}]")
        if pick == 3:
            return self.postfix(
                "smtpd", f"warning: unknown[{ip}]: SASL LOGIN authentication failed: UGFzc3dvcmQ6"
            )
        if pick == 4:
            self.noise_rejects += 1
            return self.postfix(
                "smtpd",
                f"NOQUEUE: reject: RCPT from unknown[{ip}]: 554 5.7.1 <spam@example.net>: Relay "
                f"access denied; from=<spam@example.net> to=<x@example.net> proto=ESMTP helo=<{ip}>",
            )
        if pick == 5:
            return self.postfix(
                "smtpd", f"disconnect from unknown[{ip}] ehlo=1 auth=0/1 rset=1 quit=1 commands=3/4"
            )
        if pick == 6:
            return (
                f"{self.stamp()} dovecot: imap-login: Login: user=<alice@example.com>, "
                f"method=PLAIN, rip={ip}, lip=192.0.2.25, mpid=4242, TLS, session=<AbCdEf>"
            )
        return f"{self.stamp()} dovecot: imap(alice@example.com)<4242><AbCdEf>: Logged out in=120 out=900"

    def host_event(self, event: str) -> str:
        level = "warning" if event == "host_fail" else "info"
        return (
            f"{self.stamp()} reputable[900]: level={level} logger=checks event={event} "
            'check=dnsbl.zen.spamhaus.org.192.0.2.25 detail="listed: 127.0.0.3"'
        )

    def write(self, path: Path, count: int) -> None:
        """About `count` lines, IN_FLIGHT messages interleaved at any moment."""
        flying: list[Iterator[str]] = [self.message() for _ in range(IN_FLIGHT)]
        with path.open("w") as out:
            while self.count < count:
                if self.count % 250_000 == 100_000:
                    self.lines.append(self.host_event("host_fail"))
                elif self.count % 250_000 == 101_000:
                    self.lines.append(self.host_event("host_ok"))
                if self.noise and self.random.random() < self.noise:
                    self.lines.append(self.noise_line())
                    continue
                slot = self.random.randrange(IN_FLIGHT)
                line = next(flying[slot], None)
                if line is None:
                    flying[slot] = self.message()
                    continue
                self.lines.append(line)
                if len(self.lines) >= 50_000:
                    out.write("\n".join(self.lines) + "\n")
                    self.lines.clear()
            for rest in flying:  # the messages in flight end with the log
                self.lines.extend(rest)
            out.write("\n".join(self.lines) + "\n")
            self.lines.clear()


@dataclass
class Run:
    seconds: float
    peak_rss_mb: float
    output: str


def timed(command: list[str]) -> Run:
    """Run to exit: the wall time, and the peak RSS GNU time read with wait4. (Ours would
    count this process's own RSS, inherited through the fork, as the child's.)"""
    with tempfile.TemporaryFile("w+") as out, tempfile.NamedTemporaryFile("r") as peak:
        start = time.perf_counter()
        child = subprocess.run(
            ["/usr/bin/time", "-f", "%M", "-o", peak.name, *command],
            stdout=out,
            stderr=subprocess.PIPE,
            text=True,
            check=False,
        )
        seconds = time.perf_counter() - start
        out.seek(0)
        output = out.read()
        peak_kb = int(peak.read().split()[-1])
    if child.returncode not in (0, 1, 2) or child.stderr.strip():
        raise SystemExit(f"{command[0]}: exit {child.returncode}: {child.stderr.strip()[:500]}")
    return Run(seconds, peak_kb / 1024, output)


def pflogsumm_totals(output: str) -> Totals:
    def count(label: str) -> int:
        found = re.search(rf"^\s*(\d+)(k|m)?\s+{label}\b", output, re.M)
        assert found is not None and found[2] is None, f"pflogsumm said no {label!r}"
        return int(found[1])

    return Totals(
        count("delivered"), count("deferred"), count("bounced"), count("held"), count("rejected")
    )


def report_totals(output: str) -> Totals:
    import json

    data = json.loads(output)
    deliveries = data["deliveries"].values()
    actions = data["messages"]["actions"]
    return Totals(
        sum(d["sent"] for d in deliveries),
        sum(d["deferred"] for d in deliveries),
        sum(d["bounced"] for d in deliveries),
        actions.get("hold", 0),
        actions.get("reject", 0),
    )


def install() -> None:
    """pflogsumm, and GNU time for the peak memory, from Debian when missing."""
    subprocess.run(["sh", str(ROOT / "packaging/apt-ensure.sh"), "pflogsumm", "time"], check=True)


def run(lines: int, rounds: int, workdir: Path, noise: float) -> dict[str, object]:
    start = (datetime.now() - timedelta(days=2)).replace(hour=0, minute=0, second=0)
    log = MailLog(start, seed=1, noise=noise)
    path = workdir / "mail.log"
    log.write(path, lines)
    tenth = workdir / "mail-tenth.log"
    MailLog(start, seed=1, noise=noise).write(tenth, lines // 10)
    written = sum(1 for _ in path.open())
    ours = [sys.executable, "-m", "reputable", "report", "--json"]
    theirs = ["pflogsumm", "--problems-first"]
    reputable_runs: list[Run] = []
    pflogsumm_runs: list[Run] = []
    for _ in range(rounds):
        reputable_runs.append(timed([*ours, str(path)]))
        pflogsumm_runs.append(timed([*theirs, str(path)]))
    small = timed([*ours, str(tenth)])
    got, told = report_totals(reputable_runs[0].output), pflogsumm_totals(pflogsumm_runs[0].output)
    expected = log.expected
    told.rejected -= log.noise_rejects
    if got != expected or told != expected:
        raise SystemExit(f"totals differ: written {expected}, reputable {got}, pflogsumm {told}")
    ours_s = statistics.median(r.seconds for r in reputable_runs)
    theirs_s = statistics.median(r.seconds for r in pflogsumm_runs)
    return {
        "noise": noise,
        "lines": written,
        "megabytes": round(path.stat().st_size / 2**20, 1),
        "rounds": rounds,
        "totals": expected,
        "reputable_s": [round(r.seconds, 2) for r in reputable_runs],
        "pflogsumm_s": [round(r.seconds, 2) for r in pflogsumm_runs],
        "speed_ratio": round(theirs_s / ours_s, 2),
        "reputable_peak_mb": round(max(r.peak_rss_mb for r in reputable_runs), 1),
        "reputable_tenth_peak_mb": round(small.peak_rss_mb, 1),
        "pflogsumm_peak_mb": round(max(r.peak_rss_mb for r in pflogsumm_runs), 1),
    }


def markdown(results: list[dict[str, object]]) -> str:
    out = ["# `reputable report` and pflogsumm on one mail log\n"]
    for result in results:
        mix = (
            "only lines about messages"
            if not result["noise"]
            else f"{result['noise']:.0%} of the lines about no message (bots, IMAP, postscreen)"
        )
        out.append(
            f"## {mix}\n\n"
            f"{result['lines']:,} lines ({result['megabytes']} MB), {result['rounds']} rounds, "
            f"alternating; both counted {result['totals']}.\n\n"
            "| | wall seconds (each round) | peak RSS |\n|---|---|---:|\n"
            f"| reputable report | {result['reputable_s']} | {result['reputable_peak_mb']} MB "
            f"({result['reputable_tenth_peak_mb']} MB on a tenth of the file) |\n"
            f"| pflogsumm | {result['pflogsumm_s']} | {result['pflogsumm_peak_mb']} MB |\n\n"
            f"reputable report is {result['speed_ratio']}x as fast as pflogsumm (medians).\n"
        )
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks/results")
    options = parser.parse_args(argv)
    install()
    with tempfile.TemporaryDirectory() as workdir:
        results = [run(options.lines, options.rounds, Path(workdir), noise) for noise in MIXES]
    text = markdown(results)
    options.output.mkdir(parents=True, exist_ok=True)
    (options.output / "logreport.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
