"""The benchmark: reputable against OpenDKIM and dkimpy-milter through a real Postfix.

    .venv/bin/python -m benchmarks.run --preset standard      # what `make bench` runs
    .venv/bin/python -m benchmarks.run --preset quick         # a smoke test, a few minutes
    .venv/bin/python -m benchmarks.run --preset full          # the whole matrix (long)

Postfix's ``smtp-source`` sends into a Postfix instance (own config dir,
loopback) whose ``smtpd_milters`` points at the milter under test and which
relays to ``smtp-sink``; rounds alternate between the configurations (no
milter, reputable, OpenDKIM, dkimpy-milter, then again) so that machine
drift hits all alike.  See benchmarks/README.md for what is measured and how.
Results: ``benchmarks/results/latest.json`` and ``latest.md``.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from benchmarks import milter_driver, report, system
from benchmarks.milter_driver import DriverConfig, DriverResult, make_message, percentile
from benchmarks.milters import HEADER_ONLY, MILTERS, MilterProcess, make_milter, stop_all
from benchmarks.mta import (
    CountingSink,
    Sinks,
    latency_client,
    smtp_source,
    start_postfix,
    write_source_file,
)
from benchmarks.verify import Checked, check_samples
from benchmarks.world import MAIL_FROM, RSA_SELECTOR, Keys, make_keys, publish_world
from reputable.log import parse_logfmt
from tests.integration.harness.dnsserver import DnsServer
from tests.integration.harness.postfix import PostfixInstance
from tests.integration.harness.sink import SmtpSink

KB = 1024
MB = 1024 * 1024
NONE = "none"
RESULTS = Path(__file__).resolve().parent / "results"
CLEAN_GATE = {"spf": "pass", "ptr": "ok", "dnsbl": "clean", "dmarc": "aligned"}


def log(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)


# ------------------------------------------------------------------ presets


@dataclass(frozen=True)
class Case:
    """One configuration of the matrix, run with every milter."""

    socket: str
    size: int
    sessions: int
    messages: int
    """smtp-source messages per round."""
    latency: int = 0
    """Messages per round through our own SMTP client, timing end of DATA to 250."""

    @property
    def label(self) -> str:
        return f"{self.socket} {report.size_text(self.size)} x{self.sessions}"


@dataclass(frozen=True)
class Preset:
    name: str
    rounds: int
    cases: tuple[Case, ...]
    direct_connections: int
    direct_messages: int
    """Per connection, per milter."""
    big_message: int
    drift_first: int
    drift_total: int
    profile_seconds: int = 20


def _full_cases() -> tuple[Case, ...]:
    cases: list[Case] = []
    for socket_kind in ("unix", "tcp"):
        for size in (2 * KB, 100 * KB, 10 * MB):
            for sessions in (1, 20, 100):
                if size == 10 * MB:
                    messages = max(4, sessions)
                elif sessions == 1:
                    messages = 200 if size == 2 * KB else 100
                else:
                    messages = 1000 if size == 2 * KB else 500
                latency = messages if sessions == 1 else 0
                cases.append(Case(socket_kind, size, sessions, messages, latency))
    return tuple(cases)


PRESETS = {
    "quick": Preset(
        "quick",
        rounds=1,
        cases=(
            Case("unix", 2 * KB, 20, 200),
            Case("unix", 100 * KB, 20, 100),
            Case("unix", 2 * KB, 1, 30, latency=30),
            Case("tcp", 2 * KB, 1, 30, latency=30),
            Case("unix", 10 * MB, 1, 2, latency=2),
        ),
        direct_connections=10,
        direct_messages=30,
        big_message=10 * MB,
        drift_first=500,
        drift_total=5000,
        profile_seconds=8,
    ),
    "standard": Preset(
        "standard",
        rounds=3,
        cases=(
            Case("unix", 2 * KB, 20, 1000),
            Case("unix", 2 * KB, 100, 1000),
            Case("unix", 100 * KB, 20, 500),
            Case("unix", 100 * KB, 100, 500),
            Case("unix", 2 * KB, 1, 100, latency=100),
            Case("tcp", 2 * KB, 1, 100, latency=100),
            Case("unix", 10 * MB, 1, 4, latency=4),
        ),
        direct_connections=20,
        direct_messages=100,
        big_message=50 * MB,
        drift_first=5000,
        drift_total=50000,
    ),
    "full": Preset(
        "full",
        rounds=3,
        cases=_full_cases(),
        direct_connections=20,
        direct_messages=100,
        big_message=50 * MB,
        drift_first=5000,
        drift_total=50000,
    ),
}


# ----------------------------------------------------------------- results


@dataclass
class RoundResult:
    msgs_per_s: float
    accepted_per_s: float
    seconds: float
    cpu_ms_per_msg: float | None
    sys_ms_per_msg: float | None = None


@dataclass
class CaseResult:
    case: Case
    milter: str
    rounds: list[RoundResult] = field(default_factory=list)
    eod_s: list[float] = field(default_factory=list)
    session_s: list[float] = field(default_factory=list)
    peak_rss_kb: int | None = None
    checked: Checked = field(default_factory=Checked)

    def as_dict(self) -> dict[str, object]:
        rates = [r.msgs_per_s for r in self.rounds]
        cpu = [r.cpu_ms_per_msg for r in self.rounds if r.cpu_ms_per_msg is not None]
        sys_ms = [r.sys_ms_per_msg for r in self.rounds if r.sys_ms_per_msg is not None]
        row: dict[str, object] = {
            "case": self.case.label,
            "socket": self.case.socket,
            "size": self.case.size,
            "sessions": self.case.sessions,
            "messages_per_round": self.case.messages,
            "milter": self.milter,
            "msgs_per_s": {
                "median": round(statistics.median(rates), 1),
                "min": round(min(rates), 1),
                "max": round(max(rates), 1),
                "rounds": [round(r, 1) for r in rates],
            },
            "accepted_msgs_per_s_median": round(
                statistics.median(r.accepted_per_s for r in self.rounds), 1
            ),
            "cpu_ms_per_msg": round(statistics.median(cpu), 3) if cpu else None,
            "cpu_ms_per_msg_rounds": [round(c, 3) for c in cpu],
            "sys_ms_per_msg": round(statistics.median(sys_ms), 3) if sys_ms else None,
            "peak_rss_mb": round(self.peak_rss_kb / 1024, 1) if self.peak_rss_kb else None,
            "verified": self.checked.as_dict(),
        }
        if self.eod_s:
            row["latency_ms"] = {
                "samples": len(self.eod_s),
                "p50": round(percentile(self.eod_s, 50) * 1000, 3),
                "p99": round(percentile(self.eod_s, 99) * 1000, 3),
                "session_p50": round(percentile(self.session_s, 50) * 1000, 3),
            }
        return row


# ------------------------------------------------------------------ the run


class LogCursor:
    """Reads reputable's log lines written since the last call."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.offset = 0

    def new_lines(self) -> list[dict[str, str]]:
        if self.path is None or not self.path.exists():
            return []
        with self.path.open("rb") as f:
            f.seek(self.offset)
            data = f.read()
        end = data.rfind(b"\n") + 1
        self.offset += end
        return [
            parse_logfmt(line)
            for line in data[:end].decode("utf-8", "replace").splitlines()
            if line.strip()
        ]


def check_reputable_lines(lines: list[dict[str, str]], expected: int, where: str) -> None:
    """Every message was signed and ran the whole gate with a clean result."""
    messages = [line for line in lines if "action" in line]
    if len(messages) != expected:
        raise RuntimeError(f"{where}: reputable logged {len(messages)} messages, not {expected}")
    for line in messages:
        bad = {k: line.get(k) for k, v in CLEAN_GATE.items() if line.get(k) != v}
        if line.get("action") != "accept" or bad or RSA_SELECTOR not in line.get("dkim", ""):
            raise RuntimeError(f"{where}: reputable did not sign with a clean gate: {line}")


@dataclass
class Bench:
    preset: Preset
    workdir: Path
    keys: Keys
    dns: DnsServer
    sinks: Sinks
    milters_wanted: tuple[str, ...]
    dual_sign: bool
    cursors: dict[int, LogCursor] = field(default_factory=dict)
    source_files: dict[int, Path] = field(default_factory=dict)
    messages: dict[int, bytes] = field(default_factory=dict)

    def message(self, size: int) -> bytes:
        if size not in self.messages:
            self.messages[size] = make_message(size)
        return self.messages[size]

    def source_file(self, size: int) -> Path:
        if size not in self.source_files:
            path = self.workdir / f"message-{size}.txt"
            write_source_file(self.message(size), path)
            path.chmod(0o644)
            self.source_files[size] = path
        return self.source_files[size]

    def signatures(self, name: str) -> int:
        """DKIM-Signature fields a message gets from *name* (OpenDKIM cannot dual-sign)."""
        if name in (NONE, HEADER_ONLY):
            return 0
        return 2 if self.dual_sign and name != "opendkim" else 1

    def cursor(self, milter: MilterProcess) -> LogCursor:
        return self.cursors.setdefault(milter.pid, LogCursor(milter.log_path))

    def take_samples(self, name: str, opendkim_budget: int) -> Checked:
        messages = [m.data for m in self.sinks.sample.messages]
        self.sinks.sample.clear()
        return check_samples(messages, name, self.dns, self.signatures(name), opendkim_budget)

    # ------------------------------------------------------------ milters

    def start_milter(self, name: str, kind: str, tag: str = "") -> MilterProcess:
        workdir = self.workdir / f"{name}-{kind}{tag}"
        milter = make_milter(name, workdir, kind, self.keys, self.dns.address, self.dual_sign)
        milter.start()
        cursor = self.cursor(milter)
        if name == "reputable":
            # Messages before the first host refresh would be judged "ptr=unknown".
            deadline = time.monotonic() + 30
            while not any(line.get("event") == "host_refreshed" for line in cursor.new_lines()):
                if time.monotonic() > deadline:
                    raise RuntimeError("reputable never finished its first host refresh")
                time.sleep(0.05)
        return milter

    def warm_up(self, name: str, postfix: PostfixInstance, milter: MilterProcess | None) -> None:
        """A few messages first: caches filled, and for reputable the first host refresh done."""
        deadline = time.monotonic() + 30
        while True:
            before = self.sinks.received()
            latency_client(postfix.smtp_address, self.message(2 * KB), 10)
            self.sinks.wait_for(before + 10, 60)
            if milter is None or milter.name != "reputable":
                break
            lines = [line for line in self.cursor(milter).new_lines() if "action" in line]
            if lines and all(line.get("ptr") == "ok" for line in lines[-3:]):
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"reputable's gate never came clean: {lines[-1:]}")
            time.sleep(0.5)
        self.take_samples(name, 1)

    # -------------------------------------------------------------- cases

    def run_case(
        self,
        case: Case,
        postfixes: dict[str, PostfixInstance],
        milters: dict[str, MilterProcess],
    ) -> list[CaseResult]:
        order = [NONE, *[m for m in MILTERS if m in milters]]
        results = {name: CaseResult(case, name) for name in order}
        for milter in milters.values():
            system.reset_peak_rss(milter.pid)
        for number in range(self.preset.rounds):
            for name in order:
                self.run_round(
                    case, name, postfixes[name], milters.get(name), results[name], number
                )
                res = results[name].rounds[-1]
                cpu = f", {res.cpu_ms_per_msg:.2f} ms CPU/msg" if res.cpu_ms_per_msg else ""
                log(f"  {case.label} round {number + 1} {name}: {res.msgs_per_s:.1f} msgs/s{cpu}")
        for name, milter in milters.items():
            results[name].peak_rss_kb = system.status_kb(milter.pid, "VmHWM")
        return [results[name] for name in order]

    def run_round(
        self,
        case: Case,
        name: str,
        postfix: PostfixInstance,
        milter: MilterProcess | None,
        result: CaseResult,
        number: int,
    ) -> None:
        self.sinks.sample.clear()
        timeout = 120 + case.messages * (0.05 + case.size / MB)
        before = self.sinks.received()
        cpu_before = system.cpu_times(milter.pid) if milter else (0.0, 0.0)
        source = smtp_source(
            postfix.smtp_address, self.source_file(case.size), case.messages, case.sessions, timeout
        )
        delivered = self.sinks.wait_for(before + case.messages, timeout)
        cpu_after = system.cpu_times(milter.pid) if milter else (0.0, 0.0)
        seconds = delivered - source.started
        user_ms = (cpu_after[0] - cpu_before[0]) * 1000 / case.messages
        sys_ms = (cpu_after[1] - cpu_before[1]) * 1000 / case.messages
        result.rounds.append(
            RoundResult(
                msgs_per_s=case.messages / seconds,
                accepted_per_s=case.messages / source.seconds,
                seconds=seconds,
                cpu_ms_per_msg=user_ms + sys_ms if milter else None,
                sys_ms_per_msg=sys_ms if milter else None,
            )
        )
        if case.latency:
            lat = latency_client(postfix.smtp_address, self.message(case.size), case.latency)
            self.sinks.wait_for(before + case.messages + case.latency, timeout)
            result.eod_s.extend(lat.eod_s)
            result.session_s.extend(lat.session_s)
        result.checked.add(self.take_samples(name, 2 if number == 0 else 0))
        if milter is not None:
            milter.check_alive()
            if milter.name == "reputable":
                check_reputable_lines(
                    self.cursor(milter).new_lines(),
                    case.messages + case.latency,
                    f"{case.label} round {number + 1}",
                )

    # ------------------------------------------------------------- direct

    def drive(
        self,
        milter: MilterProcess,
        connections: int,
        per_connection: int,
        size: int = 2 * KB,
        duration: float | None = None,
    ) -> DriverResult:
        config = DriverConfig(
            socket=milter.endpoint.libmilter,
            connections=connections,
            messages=per_connection,
            message=self.message(size),
            mail_from=MAIL_FROM,
            duration_s=duration,
            timeout_s=300,
        )
        result = milter_driver.run(config)
        if result.errors:
            raise RuntimeError(f"driver against {milter.label}: {result.errors[:3]}")
        if result.signed != result.messages:
            raise RuntimeError(
                f"driver against {milter.label}: {result.signed} of {result.messages} signed"
            )
        samples = [s.signed_message() for s in result.samples]
        check_samples(samples, milter.name, self.dns, self.signatures(milter.name), 1)
        if milter.name == "reputable":
            check_reputable_lines(self.cursor(milter).new_lines(), result.messages, "driver")
        return result

    def run_direct(self, milters: dict[str, MilterProcess]) -> list[dict[str, object]]:
        rows: list[dict[str, object]] = []
        p = self.preset
        for name, milter in milters.items():
            self.drive(milter, 4, 5)  # warm-up
            system.reset_peak_rss(milter.pid)
            user0, sys0 = system.cpu_times(milter.pid)
            result = self.drive(milter, p.direct_connections, p.direct_messages)
            user1, sys1 = system.cpu_times(milter.pid)
            cpu = (user1 + sys1 - user0 - sys0) * 1000 / result.messages
            summary = result.summary()
            row: dict[str, object] = {
                "milter": name,
                "socket": milter.endpoint.kind,
                "connections": p.direct_connections,
                "messages": result.messages,
                "msgs_per_s": round(result.msgs_per_s, 1),
                "cpu_ms_per_msg": round(cpu, 3),
                "sys_ms_per_msg": round((sys1 - sys0) * 1000 / result.messages, 3),
                "latency_ms": summary["latency_ms"],
                "eom_latency_ms": summary["eom_latency_ms"],
                "peak_rss_mb": round(system.status_kb(milter.pid, "VmHWM") / 1024, 1),
                "negotiated": summary["negotiated"],
            }
            rows.append(row)
            log(f"  direct {name}: {result.msgs_per_s:.1f} msgs/s, {cpu:.2f} ms CPU/msg")
        return rows

    # ------------------------------------------------------------- memory

    def big_message(self, name: str) -> dict[str, object]:
        """RSS growth of a fresh milter while it signs one big message."""
        milter = self.start_milter(name, "unix", "-big")
        try:
            self.drive(milter, 4, 25)  # warm-up: imports, caches, first host refresh
            rss_before = system.status_kb(milter.pid, "VmRSS")
            system.reset_peak_rss(milter.pid)
            peak = [rss_before]
            stop = threading.Event()

            def sample() -> None:
                while not stop.is_set():
                    with contextlib.suppress(OSError, KeyError):
                        peak[0] = max(peak[0], system.status_kb(milter.pid, "VmRSS"))
                    time.sleep(0.005)

            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            try:
                result = self.drive(milter, 1, 1, size=self.preset.big_message)
            finally:
                stop.set()
                sampler.join()
            hwm = system.status_kb(milter.pid, "VmHWM")
            growth = max(peak[0], hwm) - rss_before
            return {
                "milter": name,
                "message_mb": round(self.preset.big_message / MB, 1),
                "rss_before_mb": round(rss_before / 1024, 1),
                "peak_vmrss_sampled_mb": round(peak[0] / 1024, 1),
                "vmhwm_after_mb": round(hwm / 1024, 1),
                "growth_mb": round(growth / 1024, 1),
                "seconds": round(result.seconds, 2),
            }
        finally:
            milter.stop()

    def drift(self) -> dict[str, object]:
        """RSS of a fresh reputable after the first N messages and after all of them."""
        p = self.preset
        milter = self.start_milter("reputable", "unix", "-drift")
        connections = 20
        try:
            rss_start = system.status_kb(milter.pid, "VmRSS")
            first = self.drive(milter, connections, p.drift_first // connections)
            rss_first = system.status_kb(milter.pid, "VmRSS")
            rest = self.drive(milter, connections, (p.drift_total - p.drift_first) // connections)
            rss_all = system.status_kb(milter.pid, "VmRSS")
            return {
                "messages_first": first.messages,
                "messages_total": first.messages + rest.messages,
                "rss_start_mb": round(rss_start / 1024, 1),
                "rss_after_first_mb": round(rss_first / 1024, 1),
                "rss_after_all_mb": round(rss_all / 1024, 1),
                "drift_percent": round((rss_all - rss_first) * 100 / rss_first, 2),
                "msgs_per_s": round(
                    (first.messages + rest.messages) / (first.seconds + rest.seconds), 1
                ),
                "threads_after": system.threads(milter.pid),
            }
        finally:
            milter.stop()

    # ------------------------------------------------------------ profile

    def profile(self, output_dir: Path) -> dict[str, dict[str, object]]:
        """py-spy --native on a fresh reputable under the direct driver (20 connections, 2 KB).

        Two recordings: every thread, idle ones included (``profile.txt``: what
        the threads are doing, running or waiting), and only the thread holding
        the GIL (``profile-gil.txt``: where the interpreter's time goes; its
        sample count over the ticks is the share of time the GIL is held).
        Without ``--idle`` py-spy 0.4 fails to attach with ``--native`` here
        (UNW_EBADREG), hence the idle samples, classified afterwards.
        """
        py_spy = ensure_py_spy()
        milter = self.start_milter("reputable", "unix", "-profile")
        seconds = self.preset.profile_seconds
        plans = {
            "all": (output_dir / "profile.txt", 50, ["--idle"]),
            "gil": (output_dir / "profile-gil.txt", 200, ["--gil"]),
        }
        runs: dict[str, dict[str, object]] = {}
        try:
            self.drive(milter, 4, 25)
            for what, (path, rate, extra) in plans.items():
                argv = [py_spy, "record", "--native", "--format", "raw", "--rate", str(rate)]
                argv += ["--duration", str(seconds), "--output", str(path)]
                argv += ["--pid", str(milter.pid), *extra]
                for _attempt in range(3):
                    path.unlink(missing_ok=True)
                    cpu_before = system.cpu_seconds(milter.pid)
                    spy = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
                    time.sleep(1.0)
                    result = self.drive(milter, 20, 10**6, duration=seconds + 1.0)
                    _, err = spy.communicate(timeout=120)
                    if spy.returncode == 0 and path.exists():
                        break
                else:
                    raise RuntimeError(f"py-spy failed: {err.decode('utf-8', 'replace')[-2000:]}")
                cpu = (system.cpu_seconds(milter.pid) - cpu_before) * 1000 / result.messages
                summary = report.summarise_profile(path)
                runs[what] = {
                    "file": str(path),
                    "argv": " ".join(["py-spy", *argv[1:]]),
                    "messages": result.messages,
                    "msgs_per_s": round(result.msgs_per_s, 1),
                    "cpu_ms_per_msg": round(cpu, 3),
                    "ticks": rate * seconds,
                    **summary,
                }
        finally:
            milter.stop()
        return runs


def ensure_py_spy() -> str:
    py_spy = Path(sys.executable).with_name("py-spy")
    if not py_spy.exists():
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "-q", "py-spy"], check=True, timeout=600
        )
    return str(py_spy)


@contextlib.contextmanager
def started(items: list[MilterProcess]) -> Iterator[None]:
    try:
        yield
    finally:
        stop_all(items)


def run(args: argparse.Namespace) -> dict[str, object]:
    preset = PRESETS[args.preset]
    if args.rounds:
        preset = dataclasses.replace(preset, rounds=args.rounds)
    wanted = tuple(m for m in MILTERS if m in args.milters.split(","))
    began = time.monotonic()
    # OpenDKIM refuses config and key files under a world-writable directory such as /tmp.
    base = Path("/run") if os.geteuid() == 0 else None
    workdir = Path(tempfile.mkdtemp(prefix="reputable-bench-", dir=base))
    workdir.chmod(0o755)
    postfix_base = Path(tempfile.mkdtemp(prefix="reputable-bench-postfix-"))
    postfix_base.chmod(0o755)
    log(f"work directory {workdir}, Postfix instances under {postfix_base}")
    keys = make_keys(workdir)
    results: dict[str, object] = {
        "preset": preset.name,
        "rounds": preset.rounds,
        "command": "python -m benchmarks.run " + " ".join(sys.argv[1:]),
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": system.machine(),
        "dual_sign": args.dual_sign,
        "algorithms": ["rsa-sha256", "ed25519-sha256"] if args.dual_sign else ["rsa-sha256"],
    }
    other = system.system_dkimpy_pids()
    if other:
        results["warning"] = f"a system dkimpy-milter runs (pids {other}): it shares the CPU"
    postfixes: list[PostfixInstance] = []
    try:
        with DnsServer([("127.0.0.1", 0)], port53=True) as dns, SmtpSink() as sample:
            publish_world(dns, keys)
            counting = CountingSink(workdir).start()
            sinks = Sinks(counting, sample)
            bench = Bench(
                preset,
                workdir,
                keys,
                dns,
                sinks,
                wanted,
                args.dual_sign,
            )
            try:
                none_postfix = start_postfix(sinks, None, workdir, postfix_base)
                postfixes.append(none_postfix)
                bench.warm_up(NONE, none_postfix, None)
                rows: list[CaseResult] = []
                direct: list[dict[str, object]] = []
                cases_wanted = "cases" in args.sections
                direct_wanted = "direct" in args.sections
                kinds = list(dict.fromkeys(c.socket for c in preset.cases)) if cases_wanted else []
                if direct_wanted and "unix" not in kinds:
                    kinds.append("unix")
                for kind in kinds:
                    milters = {name: bench.start_milter(name, kind) for name in wanted}
                    with started(list(milters.values())):
                        pfs = {NONE: none_postfix}
                        for name, milter in milters.items():
                            pfs[name] = start_postfix(
                                sinks, milter.endpoint.postfix, workdir, postfix_base
                            )
                            postfixes.append(pfs[name])
                            bench.warm_up(name, pfs[name], milter)
                        cases = sorted(
                            (c for c in preset.cases if c.socket == kind and cases_wanted),
                            key=lambda c: (c.size, -c.sessions),
                        )
                        for case in cases:
                            log(f"case {case.label}: {preset.rounds} rounds")
                            rows.extend(bench.run_case(case, pfs, milters))
                        if kind == "unix" and direct_wanted:
                            log("direct milter-protocol driver (no Postfix), unix socket")
                            signers = {n: m for n, m in milters.items() if n != HEADER_ONLY}
                            direct = bench.run_direct(signers)
                        for name in milters:
                            pfs[name].stop()
                results["rows"] = [r.as_dict() for r in rows]
                results["direct"] = direct
                if "memory" in args.sections and "reputable" in wanted:
                    log(f"memory: one {report.size_text(preset.big_message)} message")
                    results["big_message"] = [
                        bench.big_message(name) for name in wanted if name != HEADER_ONLY
                    ]
                    log(f"memory: {preset.drift_total} messages through reputable")
                    results["drift"] = bench.drift()
                if "profile" in args.sections and "reputable" in wanted:
                    log("profile: py-spy on reputable under the direct driver")
                    results["profile"] = bench.profile(Path(args.output))
            finally:
                for instance in postfixes:
                    instance.stop()
                counting.stop()
    finally:
        if not args.keep:
            for instance in postfixes:
                shutil.rmtree(instance.directory, ignore_errors=True)
            shutil.rmtree(postfix_base, ignore_errors=True)
            shutil.rmtree(workdir, ignore_errors=True)
    results["duration_s"] = round(time.monotonic() - began, 1)
    results["ratios"] = report.ratios(results)
    return results


def rewrite_report(out: Path) -> int:
    results = json.loads((out / "latest.json").read_text())
    for run_info in (results.get("profile") or {}).values():
        path = Path(run_info["file"])
        if path.exists():
            run_info.update(report.summarise_profile(path))
    results["ratios"] = report.ratios(results)
    (out / "latest.json").write_text(json.dumps(results, indent=2) + "\n")
    (out / "latest.md").write_text(report.markdown(results))
    print(report.markdown(results))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.run",
        description="Benchmark reputable against OpenDKIM and dkimpy-milter through Postfix.",
    )
    parser.add_argument("--preset", choices=sorted(PRESETS), default="standard")
    parser.add_argument("--rounds", type=int, help="override the preset's rounds per case")
    parser.add_argument(
        "--milters",
        default=",".join(MILTERS),
        help="comma-separated subset of " + ",".join(MILTERS),
    )
    parser.add_argument("--dual-sign", action="store_true", help="add the Ed25519 signature")
    parser.add_argument(
        "--sections",
        default="cases,direct,memory",
        help="comma-separated: cases (through Postfix), direct (the milter-protocol driver), "
        "memory (big message, long run), profile (py-spy); default: all but profile",
    )
    parser.add_argument("--profile", action="store_true", help="add the profile section")
    parser.add_argument("--no-install", action="store_true", help="do not apt-get anything")
    parser.add_argument("--output", default=str(RESULTS), help="where latest.json/.md go")
    parser.add_argument("--keep", action="store_true", help="keep the work directories")
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="only rewrite latest.md from latest.json (profiles re-summarised from their files)",
    )
    args = parser.parse_args(argv)
    if args.report_only:
        return rewrite_report(Path(args.output))
    args.sections = set(args.sections.split(",")) | ({"profile"} if args.profile else set())
    unknown = args.sections - {"cases", "direct", "memory", "profile"}
    if unknown:
        parser.error(f"unknown sections: {', '.join(sorted(unknown))}")
    if os.geteuid() != 0:
        print(
            "benchmarks.run needs root (Postfix instances, smtp-sink -u postfix)", file=sys.stderr
        )
        return 2
    if not args.no_install:
        installed = system.ensure_packages()
        if installed:
            log(f"installed {' '.join(installed)}")
    Path(args.output).mkdir(parents=True, exist_ok=True)
    results = run(args)
    out = Path(args.output)
    (out / "latest.json").write_text(json.dumps(results, indent=2) + "\n")
    (out / "latest.md").write_text(report.markdown(results))
    print(report.markdown(results))
    log(f"wrote {out / 'latest.json'} and {out / 'latest.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
