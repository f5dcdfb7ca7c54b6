"""The results as tables: the matrix, the issue's ratios, the driver, memory, the profile."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Any

KB = 1024
MB = 1024 * 1024
Row = dict[str, Any]


def size_text(size: int) -> str:
    if size >= MB:
        return f"{size // MB} MB"
    return f"{size // KB} KB"


def _rows(results: dict[str, Any]) -> list[Row]:
    rows: list[Row] = results.get("rows", [])
    return rows


def find(results: dict[str, Any], milter: str, socket: str, size: int, sessions: int) -> Row | None:
    for row in _rows(results):
        if (row["milter"], row["socket"], row["size"], row["sessions"]) == (
            milter,
            socket,
            size,
            sessions,
        ):
            return row
    return None


def annotate(results: dict[str, Any]) -> None:
    """Add each row's ratio to no milter and its added latency (milter minus no milter)."""
    for row in _rows(results):
        none = find(results, "none", row["socket"], row["size"], row["sessions"])
        if none is None:
            continue
        base = none["msgs_per_s"]["median"]
        row["vs_none"] = round(row["msgs_per_s"]["median"] / base, 3) if base else None
        if "latency_ms" in row and "latency_ms" in none and row["milter"] != "none":
            row["added_latency_ms"] = {
                "p50": round(row["latency_ms"]["p50"] - none["latency_ms"]["p50"], 3),
                "p99": round(row["latency_ms"]["p99"] - none["latency_ms"]["p99"], 3),
            }


def _ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return round(a / b, 3)


def _bounds(alone: float | None, header_only: float | None, peer: float | None) -> str:
    """What Postfix alone and the header-only milter reached over the same peer, if measured."""
    parts = []
    if _ratio(alone, peer) is not None:
        parts.append(f"Postfix alone: {_ratio(alone, peer)}")
    if _ratio(header_only, peer) is not None:
        parts.append(f"header-only milter: {_ratio(header_only, peer)}")
    return ", ".join(parts)


def _median(row: Row | None) -> float | None:
    return None if row is None else float(row["msgs_per_s"]["median"])


def ratios(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's targets, measured: one entry per target with the value and whether it is met."""
    annotate(results)
    out: list[dict[str, Any]] = []

    def add(what: str, value: float | None, target: str, met: bool | None, note: str = "") -> None:
        out.append({"what": what, "value": value, "target": target, "met": met, "note": note})

    for size in (2 * KB, 100 * KB):
        for sessions in (20, 100):
            rep = _median(find(results, "reputable", "unix", size, sessions))
            odk = _median(find(results, "opendkim", "unix", size, sessions))
            dpy = _median(find(results, "dkimpy-milter", "unix", size, sessions))
            alone = _median(find(results, "none", "unix", size, sessions))
            header_only = _median(find(results, "header-only", "unix", size, sessions))
            where = f"unix {size_text(size)} x{sessions}"
            for peer, peer_rate, least in (("OpenDKIM", odk, 1.5), ("dkimpy-milter", dpy, 4.0)):
                r = _ratio(rep, peer_rate)
                met = None if r is None else r >= least
                bounds = _bounds(alone, header_only, peer_rate)
                add(f"throughput vs {peer}, {where}", r, f">= {least:g}", met, bounds)
    none = _median(find(results, "none", "unix", 2 * KB, 20))
    references = (("opendkim", None), ("dkimpy-milter", None), ("header-only", None))
    for milter, target in (("reputable", 0.6), *references):
        r = _ratio(_median(find(results, milter, "unix", 2 * KB, 20)), none)
        add(
            f"throughput vs no milter, unix 2 KB x20: {milter}",
            r,
            f">= {target}" if target else "(reference)",
            None if r is None or target is None else r >= target,
        )
    rep_row = find(results, "reputable", "unix", 2 * KB, 20)
    odk_row = find(results, "opendkim", "unix", 2 * KB, 20)
    r = _ratio(
        rep_row["cpu_ms_per_msg"] if rep_row else None,
        odk_row["cpu_ms_per_msg"] if odk_row else None,
    )
    add(
        "milter CPU per 2 KB message vs OpenDKIM (unix x20)",
        r,
        "<= 0.5",
        None if r is None else r <= 0.5,
    )
    for socket in ("tcp", "unix"):
        added = {
            m: (find(results, m, socket, 2 * KB, 1) or {}).get("added_latency_ms", {}).get("p50")
            for m in ("reputable", "opendkim", "dkimpy-milter")
        }
        rep = added["reputable"]
        note = f"OpenDKIM {added['opendkim']} ms, dkimpy-milter {added['dkimpy-milter']} ms"
        if socket == "tcp":
            met = None if rep is None else rep <= 5.0
            add("added latency p50 ms, one session, TCP", rep, "<= 5 ms", met, note)
        else:
            odk = added["opendkim"]
            met = None if rep is None or odk is None else rep <= odk
            add("added latency p50 ms, one session, unix", rep, "<= OpenDKIM's", met, note)
    for big in results.get("big_message", []):
        if big["milter"] == "reputable":
            growth = big["growth_mb"]
            add(
                f"RSS growth signing a {big['message_mb']} MB message, MB",
                growth,
                "<= 16 MB",
                growth <= 16,
                ", ".join(f"{b['milter']} {b['growth_mb']} MB" for b in results["big_message"]),
            )
    drift = results.get("drift")
    if drift:
        value = drift["drift_percent"]
        add(
            f"RSS after {drift['messages_total']} vs after {drift['messages_first']} messages, %",
            value,
            "within 10 %",
            abs(value) <= 10,
            f"{drift['rss_after_first_mb']} MB -> {drift['rss_after_all_mb']} MB",
        )
    return out


def _fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def markdown(results: dict[str, Any]) -> str:
    m = results["machine"]
    lines = [
        f"# Benchmark: preset `{results['preset']}`",
        "",
        f"Command: `{results['command']}` ({results['started']}, {results['duration_s']} s; "
        f"{results['rounds']} alternating rounds per configuration; "
        f"{', '.join(results['algorithms'])}"
        f"{' (OpenDKIM rsa-sha256 only: it cannot dual-sign)' if results.get('dual_sign') else ''}"
        ", relaxed/relaxed; reputable with every check "
        'enabled, `mode = "enforce"`).',
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, Linux {m['kernel']} "
        f"({m['os']}); Postfix {m['postfix']}; {m['opendkim']} ({m['opendkim_package']}); "
        f"dkimpy-milter {m['dkimpy_milter']} (dkimpy {m['dkimpy_milter_dkimpy']}, "
        f"{m['dkimpy_milter_python']}); reputable {m['reputable']} on Python {m['python']}, "
        f"pymilter {m['pymilter']}, uvloop {m.get('uvloop', '-')}, "
        f"cryptography {m['cryptography']} ({m['openssl']}).",
        "",
    ]
    if results.get("warning"):
        lines += [f"**Warning:** {results['warning']}", ""]
    lines += [
        "| configuration | milter | msgs/s median | range | x no milter | milter CPU ms/msg "
        "| latency p50 / p99 ms | added p50 / p99 ms | peak RSS MB | verified |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in _rows(results):
        rate = row["msgs_per_s"]
        lat = row.get("latency_ms")
        added = row.get("added_latency_ms")
        verified = row["verified"]
        checked = (
            f"{verified['dkimpy']} + {verified['opendkim']}"
            if row["milter"] != "none"
            else f"{verified['unsigned']} unsigned"
        )
        lines.append(
            f"| {row['case']} | {row['milter']} | {_fmt(rate['median'])} "
            f"| {_fmt(rate['min'])}-{_fmt(rate['max'])} | {_fmt(row.get('vs_none'), 2)} "
            f"| {_fmt(row['cpu_ms_per_msg'], 2)} "
            f"| {_fmt(lat['p50'], 2) + ' / ' + _fmt(lat['p99'], 2) if lat else '-'} "
            f"| {_fmt(added['p50'], 2) + ' / ' + _fmt(added['p99'], 2) if added else '-'} "
            f"| {_fmt(row['peak_rss_mb'])} | {checked} |"
        )
    lines += [
        "",
        "verified: sampled messages whose signatures dkimpy + OpenDKIM (`opendkim -t`) verified.",
        "",
        "## The issue's targets",
        "",
        "| what | measured | target | met |",
        "|---|---:|---|---|",
    ]
    for r in results.get("ratios", []):
        met = {True: "yes", False: "**no**", None: "-"}[r["met"]]
        note = f" ({r['note']})" if r["note"] else ""
        lines.append(f"| {r['what']}{note} | {_fmt(r['value'], 2)} | {r['target']} | {met} |")
    direct = results.get("direct") or []
    if direct:
        lines += [
            "",
            "## Direct milter-protocol driver (no Postfix), 2 KB, unix socket",
            "",
            "| milter | connections | messages | msgs/s | CPU ms/msg | latency p50 / p99 ms "
            "| EOM p50 ms | peak RSS MB |",
            "|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for d in direct:
            lat = d["latency_ms"]
            lines.append(
                f"| {d['milter']} | {d['connections']} | {d['messages']} | {_fmt(d['msgs_per_s'])} "
                f"| {_fmt(d['cpu_ms_per_msg'], 2)} | {_fmt(lat['p50'], 2)} / {_fmt(lat['p99'], 2)} "
                f"| {_fmt(d['eom_latency_ms']['p50'], 2)} | {_fmt(d['peak_rss_mb'])} |"
            )
    bigs = results.get("big_message") or []
    if bigs:
        lines += [
            "",
            "## Memory",
            "",
            "| milter | message | RSS before MB | peak (VmRSS sampled / VmHWM) MB | growth MB "
            "| seconds |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for b in bigs:
            lines.append(
                f"| {b['milter']} | {b['message_mb']} MB | {b['rss_before_mb']} "
                f"| {b['peak_vmrss_sampled_mb']} / {b['vmhwm_after_mb']} | {b['growth_mb']} "
                f"| {b['seconds']} |"
            )
    drift = results.get("drift")
    if drift:
        lines += [
            "",
            f"reputable, {drift['messages_total']} messages through the direct driver "
            f"({drift['msgs_per_s']} msgs/s): RSS {drift['rss_start_mb']} MB at start, "
            f"{drift['rss_after_first_mb']} MB after {drift['messages_first']}, "
            f"{drift['rss_after_all_mb']} MB after all: {drift['drift_percent']:+.2f} %.",
        ]
    prof = results.get("profile")
    if prof:
        everything, gil = prof.get("all"), prof.get("gil")
        lines += ["", "## Profile: py-spy --native on reputable under the direct driver", ""]
        if everything:
            lines += [
                f"All threads ({everything['messages']} messages, {everything['msgs_per_s']} "
                f"msgs/s while sampled, {everything['cpu_ms_per_msg']} ms CPU/msg; "
                f"{everything['samples']} thread samples):",
                "",
                "| thread state | share of thread samples |",
                "|---|---:|",
            ]
            lines += [f"| {k} | {v} % |" for k, v in everything["states"]]
        if gil:
            held = gil["samples"] * 100 / gil["ticks"] if gil.get("ticks") else 0.0
            lines += [
                "",
                f"The thread holding the GIL ({gil['samples']} samples of {gil.get('ticks')} "
                f"ticks: the GIL was held {held:.0f} % of the time; {gil['msgs_per_s']} "
                f"msgs/s, {gil['cpu_ms_per_msg']} ms CPU/msg while sampled), by area:",
                "",
                "| area (inclusive, first match) | share |",
                "|---|---:|",
            ]
            lines += [f"| {k} | {v} % |" for k, v in gil["areas"]]
            lines += ["", "| function (self) | share |", "|---|---:|"]
            lines += [f"| `{k}` | {v} % |" for k, v in gil["self"][:15]]
            lines += ["", "| reputable function (inclusive) | share |", "|---|---:|"]
            lines += [f"| `{k}` | {v} % |" for k, v in gil["inclusive"][:15]]
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------ profile

_LOCATION = re.compile(r"^(?P<func>.*?) \((?P<file>[^:()]*)(?::\d+)?\)$")

# What a sampled thread was doing, judged from its stack (first match wins).
STATES: tuple[tuple[str, str], ...] = (
    ("waiting for the logging handler's lock", r"Handler\.acquire"),
    ("idle: waiting for the MTA", r"^(poll|read|accept|select|epoll_wait) \(libc|mi_listener"),
    ("idle: main and background threads", r"Thread\.join|Event\.wait|Condition\.wait|time\.sleep"),
    (
        "waiting for the GIL",
        r"^(pthread_cond_timedwait|pthread_mutex_lock|PyEval_RestoreThread|take_gil) ",
    ),
)
# Where a running thread's time goes, by the frames on its stack (first match wins).
AREAS: tuple[tuple[str, str], ...] = (
    ("RSA signature (cryptography/OpenSSL)", r"sign_digest_input|signing/signature\.py"),
    ("DKIM-Signature header folding (fold_signature)", r"^fold_signature "),
    ("DKIM canonicalization, hashing, header selection", r"reputable/signing/"),
    (
        "reputation gate (snapshot, SPF/DMARC caches, decision)",
        r"reputable/(gate|reputation|snapshot|checks|resolver)",
    ),
    ("policy (From parsing, source, keys)", r"reputable/(policy|author|runtime)"),
    ("the per-message log line (logging)", r"reputable/log\.py|logging/__init__"),
    ("session callbacks (reputable/milter/session.py)", r"reputable/milter/session"),
    ("pymilter glue (Milter)", r"Milter/|miltermodule\.c"),
    ("milter protocol and event loop (connection, protocol, uvloop)", r"reputable/milter/|uvloop"),
    ("libmilter (the peers' protocol I/O)", r"libmilter|^mi_"),
)
_WAITING_LEAF = re.compile(
    r"^(0x[0-9a-f]+|pthread_cond_\w*wait|pthread_mutex_lock|poll|read|accept|select|epoll_wait) \("
)


def _frame(frame: str) -> str:
    m = _LOCATION.match(frame.strip())
    if not m:
        return frame.strip()
    file = m.group("file")
    for marker in ("site-packages/", "lib/python3.11/", "/work/main/"):
        if marker in file:
            file = file.split(marker, 1)[1]
    return f"{m.group('func')} ({file})"


def _state(frames: list[str]) -> str:
    leaf = frames[-1]
    if not _WAITING_LEAF.match(leaf):
        return "running"
    # The innermost recognisable frame says what the thread waits for.
    for frame in reversed(frames):
        for state, pattern in STATES:
            if re.search(pattern, frame):
                return state
    return "waiting (other)"


def _area(frames: list[str]) -> str:
    for area, pattern in AREAS:
        if any(re.search(pattern, f) for f in frames):
            return area
    return "other (interpreter, threads)"


def summarise_profile(path: Path) -> dict[str, Any]:
    """From py-spy's raw output (one collapsed stack and its count per line): thread states,
    and for the running samples the areas (inclusive) and the functions (self)."""
    states: Counter[str] = Counter()
    areas: Counter[str] = Counter()
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = running = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_frame(f) for f in stack.split(";") if f.strip()]
        if not frames:
            continue
        total += count
        state = _state(frames)
        states[state] += count
        if state != "running":
            continue
        running += count
        areas[_area(frames)] += count
        own[frames[-1]] += count
        for name in set(frames):
            if "reputable/" in name or "signing" in name:
                inclusive[name] += count

    def share(counter: Counter[str], n: int, of: int) -> list[tuple[str, float]]:
        return [(k, round(v * 100 / of, 1)) for k, v in counter.most_common(n)] if of else []

    return {
        "samples": total,
        "running_samples": running,
        "states": share(states, 10, total),
        "areas": share(areas, 12, running),
        "self": share(own, 20, running),
        "inclusive": share(inclusive, 25, running),
    }
