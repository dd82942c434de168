"""Run a command under the seccomp part of a unit's sandbox, without systemd.

    python tests/unit_sandbox.py [--strict [--tolerate CALL,...]] UNIT -- COMMAND ...

systemd applies ``SystemCallFilter=``, ``SystemCallErrorNumber=``, ``MemoryDenyWriteExecute=``
and ``RestrictAddressFamilies=`` as seccomp filters; this loads the same ones (libseccomp, as
systemd does) and execs the command, so a test can run the real hub under them on a machine
where systemd is not PID 1. The allow list is the unit's own lines, its groups expanded by
``systemd-analyze syscall-filter``. Mounts, devices and namespaces are not reproduced.

``--strict`` kills the process at a call outside the list (instead of the unit's error number),
so a test cannot miss one; ``--tolerate`` names calls the unit refuses on purpose, which then
get the unit's error number as under systemd. Run as root, strict also allows fchown(), which
SQLite calls on its journal files only when run as root (the units run as the user tuquan).
"""

from __future__ import annotations

import ctypes
import errno
import os
import socket
import subprocess
import sys
from pathlib import Path

# libseccomp's constants (seccomp.h)
ACT_ALLOW = 0x7FFF0000
ACT_KILL_PROCESS = 0x80000000
CMP_EQ, CMP_GE, CMP_MASKED_EQ = 4, 5, 7
AF_MAX = 64  # above every address family Linux has (46 in 6.x)


def ACT_ERRNO(err: int) -> int:  # noqa: N802 (seccomp.h's name)
    return 0x00050000 | (err & 0xFFFF)


class _ArgCmp(ctypes.Structure):
    _fields_ = [
        ("arg", ctypes.c_uint),
        ("op", ctypes.c_int),
        ("datum_a", ctypes.c_uint64),
        ("datum_b", ctypes.c_uint64),
    ]


def unit_values(unit: Path, key: str) -> list[str]:
    values = []
    for raw in unit.read_text().splitlines():
        line = raw.strip()
        if line.startswith(key + "="):
            values.append(line.split("=", 1)[1].strip())
    return values


def expand(name: str) -> set[str]:
    """A system call, or a group's calls (nested groups too)."""
    if not name.startswith("@"):
        return {name}
    out = subprocess.run(
        ["systemd-analyze", "syscall-filter", name], capture_output=True, text=True, check=True
    ).stdout
    calls: set[str] = set()
    for line in out.splitlines()[1:]:
        item = line.strip()
        if item and not item.startswith("#"):
            calls |= expand(item)
    return calls


def allowed_calls(unit: Path) -> set[str] | None:
    """The unit's allow list (lines applied in order: ``~`` removes), or None without one."""
    lines = unit_values(unit, "SystemCallFilter")
    if not lines or lines[0].startswith("~"):
        return None
    allowed: set[str] = set()
    for line in lines:
        remove = line.startswith("~")
        for name in line.lstrip("~").split():
            allowed = allowed - expand(name) if remove else allowed | expand(name)
    return allowed


def load_filters(
    unit: Path, *, strict: bool = False, tolerate: frozenset[str] = frozenset()
) -> None:
    allowed = allowed_calls(unit)  # before any filter: it runs systemd-analyze
    if allowed is not None and strict and os.geteuid() == 0:
        allowed.add("fchown")
    lib = ctypes.CDLL("libseccomp.so.2", use_errno=True)
    lib.seccomp_init.restype = ctypes.c_void_p
    lib.seccomp_init.argtypes = [ctypes.c_uint32]
    lib.seccomp_rule_add_exact_array.argtypes = [
        ctypes.c_void_p,
        ctypes.c_uint32,
        ctypes.c_int,
        ctypes.c_uint,
        ctypes.POINTER(_ArgCmp),
    ]
    lib.seccomp_load.argtypes = [ctypes.c_void_p]
    lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]

    def rule(ctx: int, action: int, call: str, *cmps: _ArgCmp) -> None:
        nr = lib.seccomp_syscall_resolve_name(call.encode())
        if nr < 0:
            return  # not a call of this architecture (clock_adjtime64 on x86-64)
        array = (_ArgCmp * max(1, len(cmps)))(*cmps)
        if lib.seccomp_rule_add_exact_array(ctx, action, nr, len(cmps), array) < 0:
            raise OSError(f"seccomp rule for {call} refused")

    def load(ctx: int) -> None:
        if lib.seccomp_load(ctx) < 0:
            raise OSError("seccomp_load failed")

    # The allow list goes last: loading a filter is a call it does not allow (seccomp()).
    if (unit_values(unit, "MemoryDenyWriteExecute") or ["no"])[-1] == "yes":
        # systemd's rules: no mapping both writable and executable, no mprotect() to executable.
        wx, x = 0x2 | 0x4, 0x4  # PROT_WRITE | PROT_EXEC, PROT_EXEC
        ctx = lib.seccomp_init(ACT_ALLOW)
        for call in ("mmap", "mmap2"):
            rule(ctx, ACT_ERRNO(errno.EPERM), call, _ArgCmp(2, CMP_MASKED_EQ, wx, wx))
        for call in ("mprotect", "pkey_mprotect"):
            rule(ctx, ACT_ERRNO(errno.EPERM), call, _ArgCmp(2, CMP_MASKED_EQ, x, x))
        rule(ctx, ACT_ERRNO(errno.EPERM), "shmat", _ArgCmp(2, CMP_MASKED_EQ, 0o100000, 0o100000))
        load(ctx)

    families = unit_values(unit, "RestrictAddressFamilies")
    if families and not families[-1].startswith("~"):
        keep = {int(getattr(socket, name)) for name in families[-1].split()}
        ctx = lib.seccomp_init(ACT_ALLOW)
        # socket() in any other family: EAFNOSUPPORT, as systemd answers.
        refused = ACT_ERRNO(errno.EAFNOSUPPORT)
        for family in sorted(set(range(AF_MAX)) - keep):
            rule(ctx, refused, "socket", _ArgCmp(0, CMP_EQ, family, 0))
        rule(ctx, refused, "socket", _ArgCmp(0, CMP_GE, AF_MAX, 0))
        load(ctx)

    if allowed is not None:
        err_text = (unit_values(unit, "SystemCallErrorNumber") or ["EPERM"])[-1]
        refused = ACT_ERRNO(getattr(errno, err_text))
        ctx = lib.seccomp_init(ACT_KILL_PROCESS if strict else refused)
        for call in sorted(allowed):
            rule(ctx, ACT_ALLOW, call)
        for call in sorted(tolerate - allowed):
            rule(ctx, refused, call)
        load(ctx)


def main(argv: list[str]) -> int:
    args = argv[1:]
    strict = bool(args) and args[0] == "--strict"
    args = args[1:] if strict else args
    tolerate: frozenset[str] = frozenset()
    if strict and len(args) > 1 and args[0] == "--tolerate":
        tolerate, args = frozenset(args[1].split(",")), args[2:]
    if len(args) < 3 or args[1] != "--":
        print(__doc__, file=sys.stderr)
        return 2
    load_filters(Path(args[0]), strict=strict, tolerate=tolerate)
    os.execvp(args[2], args[2:])
    return 127  # not reached


if __name__ == "__main__":
    sys.exit(main(sys.argv))
