"""Exim's two ways to sign with reputable's keys, same machine, same run: messages a second.

    .venv/bin/python -m benchmarks.exim --rounds 3 --messages 60

One real Exim 4.96 (unpacked from Debian, as the tests do) signs natively
with the README's transport lines; another pipes each message through
`reputable sign` (`transport_filter`), on Debian's python3 as the package
runs it. Each round submits the messages over SMTP, 4 clients at once,
and waits until the sink has them all; the rounds alternate. Run as root
from the repository root.
"""

from __future__ import annotations

import argparse
import os
import shutil
import smtplib
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

from tests.integration.harness.exim import EximInstance, ensure_user, exim_binary
from tests.integration.harness.sink import SmtpSink

ROOT = Path(__file__).resolve().parents[1]
DOMAIN = "bench.example.com"
KB = 1024


def message(size: int) -> tuple[str, bytes]:
    message_id = f"{uuid.uuid4().hex}@{DOMAIN}"
    head = (
        f"From: Alice <alice@{DOMAIN}>\r\nTo: bob@example.net\r\nSubject: bench\r\n"
        f"Message-ID: <{message_id}>\r\n\r\n"
    )
    body = ("x" * 76 + "\r\n") * max(1, (size - len(head)) // 78)
    return message_id, (head + body).encode()


def round_of(exim: EximInstance, sink: SmtpSink, count: int, size: int) -> float:
    """Messages a second, from the first submission to the last arrival."""
    before = len(sink.messages)
    started = time.perf_counter()

    def submit(share: int) -> None:
        # A connection a message: past 10 on one connection, Exim queues the rest for its
        # queue runner (smtp_accept_queue_per_connection), which would set the pace instead.
        for _ in range(share):
            _, data = message(size)
            with smtplib.SMTP("127.0.0.1", exim.port, timeout=60) as smtp:
                smtp.sendmail(f"alice@{DOMAIN}", ["bob@example.net"], data)

    workers = [threading.Thread(target=submit, args=(count // 4,)) for _ in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    deadline = time.monotonic() + 600
    while len(sink.messages) < before + (count // 4) * 4:
        if time.monotonic() > deadline:
            raise SystemExit(f"the sink did not get every message:\n{exim.logs()}")
        time.sleep(0.05)
    fresh = sink.messages[before:]
    if not all(b"DKIM-Signature:" in m.data for m in fresh):
        raise SystemExit("a message arrived unsigned")
    return (count // 4) * 4 / (time.perf_counter() - started)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--messages", type=int, default=60)
    parser.add_argument("--size", type=int, default=2 * KB)
    args = parser.parse_args()
    exim_binary()
    ensure_user()
    base = Path(tempfile.mkdtemp(prefix="reputable-bench-exim-", dir="/var/tmp"))
    os.chmod(base, 0o755)
    config = base / "reputable.toml"
    keys = base / "keys"
    config.write_text(
        f'[signing]\ndomains = ["{DOMAIN}"]\nkeys = "{keys}"\n[log]\nlevel = "error"\n'
    )
    reputable = [sys.executable, "-m", "reputable", "keys"]
    subprocess.run(
        [*reputable, "new", DOMAIN, "--config", str(config)], check=True, capture_output=True
    )
    subprocess.run(
        [*reputable, "share", "Debian-exim", "--config", str(config)],
        check=True,
        capture_output=True,
    )
    library = base / "lib"
    shutil.copytree(
        ROOT / "reputable", library / "reputable", ignore=shutil.ignore_patterns("__pycache__")
    )
    sink = SmtpSink().start()
    native = EximInstance(base / "native", keys, sink.address)
    piped = EximInstance(base / "filter", keys, sink.address)
    piped.transport = (
        f"  transport_filter = /usr/bin/env PYTHONPATH={library} /usr/bin/python3 -m reputable "
        f"sign --config {config}\n"
    )
    rates: dict[str, list[float]] = {"native": [], "transport_filter": []}
    try:
        for instance in (native, piped):
            instance.workdir.mkdir(mode=0o755)
            instance.start()
        round_of(native, sink, 8, args.size)  # warm-up
        round_of(piped, sink, 8, args.size)
        for number in range(args.rounds):
            order = [("native", native), ("transport_filter", piped)]
            for label, instance in order if number % 2 == 0 else reversed(order):
                rates[label].append(round_of(instance, sink, args.messages, args.size))
    finally:
        native.stop()
        piped.stop()
        sink.stop()
        shutil.rmtree(base, ignore_errors=True)
    lines = [
        f"Exim 4.96, {args.messages} messages of {args.size} B a round from 4 SMTP clients, "
        f"{args.rounds} alternating rounds"
    ]
    for label, values in rates.items():
        lines.append(
            f"  {label:>16}: {statistics.median(values):7.1f} msgs/s "
            f"({min(values):.1f}-{max(values):.1f})"
        )
    ratio = statistics.median(rates["native"]) / statistics.median(rates["transport_filter"])
    lines.append(f"  native / transport_filter: {ratio:.1f}")
    text = "\n".join(lines) + "\n"
    (ROOT / "benchmarks" / "results" / "exim.txt").write_text(text)
    print(text, end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
