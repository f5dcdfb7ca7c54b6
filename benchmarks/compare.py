"""Two revisions of reputable, same machine, same run: the direct driver, round by round.

The standard run compares reputable with its peers; this compares it with
itself, to tell whether a change costs throughput or CPU. Each revision runs
as its own `reputable milter` (the baseline from another checkout, through
PYTHONPATH) with the benchmark's configuration, every check enabled; the
rounds alternate between them so that the machine's noise falls on both::

    git worktree add /tmp/baseline <rev>
    .venv/bin/python -m benchmarks.compare /tmp/baseline --rounds 7

It prints, per revision, the median msgs/s and CPU ms per message with their
ranges, and the ratios of this checkout to the baseline.

With ``--metrics`` (and no baseline) it compares this checkout with itself:
``[metrics] listen`` set against unset, /metrics scraped after every round
of the one that serves it::

    .venv/bin/python -m benchmarks.compare --metrics --rounds 9
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks import milter_driver, system
from benchmarks.milter_driver import DriverConfig, make_message
from benchmarks.milters import MilterProcess, reputable_milter, stop_all
from benchmarks.world import MAIL_FROM, make_keys, publish_world
from tests.integration.daemon import free_port
from tests.integration.harness.dnsserver import DnsServer

KB = 1024


@dataclass
class Series:
    label: str
    milter: MilterProcess
    rates: list[float] = field(default_factory=list)
    cpu_ms: list[float] = field(default_factory=list)
    scrape: str = ""  # the /metrics URL to read after each round, if any
    counted: list[int] = field(default_factory=list)

    def round(self, connections: int, messages: int, message: bytes) -> None:
        config = DriverConfig(
            socket=self.milter.endpoint.libmilter,
            connections=connections,
            messages=messages,
            message=message,
            mail_from=MAIL_FROM,
            timeout_s=300,
        )
        user0, sys0 = system.cpu_times(self.milter.pid)
        result = milter_driver.run(config)
        user1, sys1 = system.cpu_times(self.milter.pid)
        if result.errors or result.signed != result.messages:
            raise RuntimeError(
                f"{self.label}: {result.signed} of {result.messages} signed, "
                f"errors {result.errors[:3]}"
            )
        self.rates.append(result.msgs_per_s)
        self.cpu_ms.append((user1 + sys1 - user0 - sys0) * 1000 / result.messages)
        if self.scrape:  # as Prometheus would, between the rounds' messages
            with urllib.request.urlopen(self.scrape, timeout=10) as answer:
                served = answer.read().decode()
            total = sum(
                float(line.rsplit(" ", 1)[1])
                for line in served.splitlines()
                if line.startswith("reputable_messages_total{")
            )
            if total < sum(self.counted) + result.messages:
                raise RuntimeError(f"{self.label}: /metrics counted {total} messages")
        self.counted.append(result.messages)

    def line(self) -> str:
        rate, cpu = statistics.median(self.rates), statistics.median(self.cpu_ms)
        return (
            f"{self.label:>9}: {rate:7.1f} msgs/s ({min(self.rates):.1f}-{max(self.rates):.1f}), "
            f"{cpu:.3f} ms CPU/msg ({min(self.cpu_ms):.3f}-{max(self.cpu_ms):.3f})"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "baseline", type=Path, nargs="?", help="a checkout of the baseline revision"
    )
    parser.add_argument(
        "--metrics", action="store_true", help="this checkout with metrics on against off"
    )
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--connections", type=int, default=20)
    parser.add_argument("--messages", type=int, default=100, help="per connection and round")
    parser.add_argument("--size", type=int, default=2 * KB)
    args = parser.parse_args()
    if (args.baseline is None) != args.metrics:
        parser.error("give a baseline checkout, or --metrics")
    workdir = Path(tempfile.mkdtemp(prefix="reputable-compare-", dir="/run"))
    keys = make_keys(workdir)
    message = make_message(args.size)
    with DnsServer([("127.0.0.1", 0)], port53=True) as dns:
        publish_world(dns, keys)
        port = free_port()
        metrics = f'[metrics]\nlisten = "127.0.0.1:{port}"\n' if args.metrics else ""
        current = reputable_milter(workdir / "current", "unix", keys, dns.address, False, metrics)
        baseline = reputable_milter(workdir / "baseline", "unix", keys, dns.address, False)
        if args.baseline is not None:
            baseline.env["PYTHONPATH"] = str(args.baseline.resolve())
        labels = ("metrics", "none") if args.metrics else ("this", "baseline")
        series = [Series(labels[0], current.start()), Series(labels[1], baseline.start())]
        if args.metrics:
            series[0].scrape = f"http://127.0.0.1:{port}/metrics"
        try:
            for each in series:
                each.round(4, 5, message)  # warm-up: keys loaded, snapshot taken
                each.rates.clear()
                each.cpu_ms.clear()
            for number in range(args.rounds):
                for each in series if number % 2 == 0 else reversed(series):
                    each.round(args.connections, args.messages, message)
        finally:
            stop_all([current, baseline])
    this, base = series
    print(
        f"direct driver, unix socket, {args.connections} connections, {args.size} B, "
        f"{args.rounds} alternating rounds of {args.connections * args.messages} messages"
    )
    print(this.line())
    print(base.line())
    rate = statistics.median(this.rates) / statistics.median(base.rates)
    cpu = statistics.median(this.cpu_ms) / statistics.median(base.cpu_ms)
    print(f"{this.label} / {base.label}: throughput {rate:.3f}, CPU per message {cpu:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
