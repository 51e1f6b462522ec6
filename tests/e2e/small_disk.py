"""A small filesystem for a command, and filling it.

`python small_disk.py run MOUNT_POINT SIZE COMMAND [ARG...]` runs COMMAND with a small filesystem of its own:

A new user namespace (mapping the caller's own uid and gid, so no root is needed and nothing runs as root) and a
new mount namespace, a tmpfs of SIZE (`64m`) mounted on MOUNT_POINT in it, then COMMAND exec'd in its place: the
command and its children see the small filesystem, everyone else sees the directory as it was. The mount goes
when the last process in the namespace exits.

`python small_disk.py fill PATH` writes zeros to PATH until the filesystem has no room left, and prints how many
bytes it wrote. Run as the command's user, with PATH `/proc/PID/root/MOUNT_POINT/...`, it fills the small
filesystem from outside (a file of another user, root included, cannot be made there: the namespace maps no other
uid).

Standard library only: PostgreSQL's pg_ctl runs it, by its path, as the server executable (`pg_ctl -p`).
"""
from __future__ import annotations

import ctypes
import errno as errnos
import os
import sys

CLONE_NEWNS = 0x00020000
CLONE_NEWUSER = 0x10000000
MS_REC = 0x4000
MS_PRIVATE = 0x40000

_libc = ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")


def _write(path: str, text: str) -> None:
    with open(path, "w") as file:
        file.write(text)


def enter(mount_point: str, size: str) -> None:
    """This process into namespaces of its own, with a tmpfs of `size` on `mount_point`, owned by the caller."""
    uid, gid = os.getuid(), os.getgid()
    _check(_libc.unshare(CLONE_NEWUSER | CLONE_NEWNS), "unshare")
    _write("/proc/self/setgroups", "deny")
    _write("/proc/self/uid_map", f"{uid} {uid} 1")
    _write("/proc/self/gid_map", f"{gid} {gid} 1")
    # Private first: the mount must not propagate back to the namespace the test runs in.
    _check(_libc.mount(None, b"/", None, MS_REC | MS_PRIVATE, None), "making / private")
    _check(_libc.mount(b"tmpfs", mount_point.encode(), b"tmpfs", 0, f"size={size},mode=0700".encode()),
           f"mounting a tmpfs on {mount_point}")


def fill(path: str) -> int:
    """Zeros appended to `path` until the filesystem is full, to the last page; the bytes written."""
    written = 0
    with open(path, "ab", buffering=0) as filler:
        for chunk in (1 << 20, 4096):
            block = bytes(chunk)
            while True:
                try:
                    written += filler.write(block)
                except OSError as exc:
                    if exc.errno != errnos.ENOSPC:
                        raise
                    break
    return written


def main(argv: list[str]) -> None:
    if argv[1] == "fill":
        print(fill(argv[2]))
        return
    mount_point, size, command = argv[2], argv[3], argv[4:]
    enter(mount_point, size)
    os.execv(command[0], command)


if __name__ == "__main__":
    main(sys.argv)
