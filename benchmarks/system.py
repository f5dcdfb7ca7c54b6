"""The machine: installing what the benchmark needs, describing it, reading /proc."""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import platform
import re
import shutil
import subprocess
import sys
from pathlib import Path

PACKAGES = ("postfix", "opendkim", "dkimpy-milter")
SYSTEM_SERVICES = ("postfix", "opendkim", "dkimpy-milter")
DKIMPY_SYSTEM_PID = Path("/run/dkimpy-milter/dkimpy-milter.pid")
REPO = Path(__file__).resolve().parent.parent
CLK_TCK = os.sysconf("SC_CLK_TCK")


def installed(package: str) -> bool:
    proc = subprocess.run(
        ["dpkg-query", "-W", "-f=${Status}", package],
        capture_output=True,
        text=True,
        check=False,
    )
    return "ok installed" in proc.stdout


def ensure_packages(packages: tuple[str, ...] = PACKAGES) -> list[str]:
    """Install the missing Debian packages (packaging/apt-ensure.sh: no service is started).

    dkimpy-milter's package enables its service: when this run installed it,
    the service is disabled (and stopped, were one running), so that the only
    dkimpy-milter running is the benchmark's own, from its own config.
    """
    missing = [p for p in packages if not installed(p)]
    if missing:
        subprocess.run(["sh", str(REPO / "packaging" / "apt-ensure.sh"), *missing], check=True)
    for service in missing:
        if service in SYSTEM_SERVICES:
            quiesce_service(service)
    return missing


def quiesce_service(service: str) -> None:
    """Stop and disable a system service that a package install may have started or enabled."""
    systemctl = shutil.which("systemctl")
    if systemctl is not None:
        # Works without systemd running too: it removes the enablement links.
        subprocess.run(
            [systemctl, "disable", "--now", f"{service}.service"],
            capture_output=True,
            check=False,
        )
    elif Path(f"/etc/init.d/{service}").exists():
        subprocess.run(
            [f"/etc/init.d/{service}", "stop"], capture_output=True, check=False, timeout=30
        )
        subprocess.run(
            ["update-rc.d", service, "disable"], capture_output=True, check=False, timeout=30
        )
    if service == "dkimpy-milter":
        for pid in system_dkimpy_pids():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, 15)


def system_dkimpy_pids() -> list[int]:
    """Processes running dkimpy-milter from the system config (not the benchmark's)."""
    found: list[int] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if any(a.endswith(b"dkimpy-milter") for a in argv[:2]) and any(
            a.startswith(b"/etc/dkimpy-milter/") for a in argv
        ):
            found.append(int(entry.name))
    return found


# ------------------------------------------------------------------- /proc


def cpu_times(pid: int) -> tuple[float, float]:
    """(utime, stime) of the whole process, every thread live or exited (/proc/PID/stat)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return int(fields[11]) / CLK_TCK, int(fields[12]) / CLK_TCK


def cpu_seconds(pid: int) -> float:
    """utime + stime of the whole process."""
    user, system = cpu_times(pid)
    return user + system


def status_kb(pid: int, key: str) -> int:
    """A ``kB`` line of /proc/PID/status: VmRSS, VmHWM..."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


def threads(pid: int) -> int:
    return status_kb(pid, "Threads")


def reset_peak_rss(pid: int) -> None:
    """Reset VmHWM to the current RSS (``echo 5 > /proc/PID/clear_refs``, Linux 4.0+)."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


# ----------------------------------------------------------------- machine


def _first_line(argv: list[str]) -> str:
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    text = (proc.stdout or proc.stderr).strip()
    return text.splitlines()[0] if text else "unknown"


def package_version(package: str) -> str:
    return _first_line(["dpkg-query", "-W", "-f=${Version}", package])


def machine() -> dict[str, object]:
    cpuinfo = Path("/proc/cpuinfo").read_text()
    model = re.search(r"^model name\s*:\s*(.+)$", cpuinfo, re.MULTILINE)
    meminfo = Path("/proc/meminfo").read_text()
    total = re.search(r"^MemTotal:\s*(\d+) kB", meminfo, re.MULTILINE)
    import cryptography
    import Milter
    from cryptography.hazmat.backends.openssl.backend import backend

    from reputable import __version__

    return {
        "cpu": model.group(1).strip() if model else platform.processor(),
        "cores": os.cpu_count(),
        "memory_gib": round(int(total.group(1)) / 1024 / 1024, 1) if total else None,
        "kernel": platform.release(),
        "os": _first_line(["sh", "-c", ". /etc/os-release && echo $PRETTY_NAME"]),
        "postfix": _first_line(["/usr/sbin/postconf", "-d", "-h", "mail_version"]),
        "opendkim": _first_line(["/usr/sbin/opendkim", "-V"]),
        "opendkim_package": package_version("opendkim"),
        "dkimpy_milter": package_version("dkimpy-milter"),
        "dkimpy_milter_python": _first_line(["/usr/bin/python3", "--version"]),
        "dkimpy_milter_dkimpy": package_version("python3-dkim"),
        "python": sys.version.split()[0],
        "reputable": __version__,
        "pymilter": getattr(Milter, "__version__", "unknown"),
        "uvloop": importlib.metadata.version("uvloop"),
        "cryptography": cryptography.__version__,
        "openssl": backend.openssl_version_text(),
    }
