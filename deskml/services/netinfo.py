"""Network facts for the start-up banner and `deskml doctor`: LAN addresses, port checks, who holds a port."""

from __future__ import annotations

import contextlib
import ipaddress
import os
import socket


def is_loopback(host: str) -> bool:
    if host in {"localhost", ""}:
        return host == "localhost"
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def lan_addresses() -> list[str]:
    """IPv4 addresses of this machine that another device on the LAN could reach."""
    found: set[str] = set()
    with contextlib.suppress(OSError):
        for info in socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET):
            found.add(str(info[4][0]))
    # The address the kernel would route outward from; connect() on UDP sends nothing.
    for probe in ("192.168.0.1", "10.0.0.1", "172.16.0.1"):
        with contextlib.suppress(OSError), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.connect((probe, 9))
            found.add(sock.getsockname()[0])
    usable = []
    for address in found:
        ip = ipaddress.ip_address(address)
        if not (ip.is_loopback or ip.is_unspecified or ip.is_link_local):
            usable.append(address)
    return sorted(usable)


def port_in_use(host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host.strip("[]") or "0.0.0.0", port))
        except OSError:
            return True
    return False


def listening_inodes(port: int) -> set[int]:
    """Socket inodes listening on TCP `port` (any address), from /proc/net/tcp and tcp6 (Linux)."""
    inodes: set[int] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table, encoding="ascii") as handle:
                next(handle, None)
                for line in handle:
                    fields = line.split()
                    if len(fields) > 9 and fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                        inodes.add(int(fields[9]))
        except OSError:
            continue
    return inodes


def port_owner(port: int) -> tuple[int, str] | None:
    """(pid, command line) of the process listening on TCP `port`, when /proc lets us see it."""
    inodes = listening_inodes(port)
    if not inodes:
        return None
    wanted = {f"socket:[{i}]" for i in inodes}
    for pid_dir in os.scandir("/proc"):
        if not pid_dir.name.isdigit():
            continue
        try:
            for fd in os.scandir(f"/proc/{pid_dir.name}/fd"):
                with contextlib.suppress(OSError):
                    if os.readlink(fd.path) in wanted:
                        return int(pid_dir.name), _cmdline(int(pid_dir.name))
        except OSError:
            continue  # another user's process, or it just ended
    return None


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return handle.read().replace(b"\0", b" ").decode("utf-8", "replace").strip()
    except OSError:
        return ""


def can_connect(host: str, port: int, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((host.strip("[]"), port), timeout=timeout):
            return True
    except OSError:
        return False
