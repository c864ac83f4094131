"""faultfs: a FUSE passthrough filesystem that injects disk faults on command (its own process).

``python -m nemeses.disk.faultfs --mount DIR --control NAME --log FILE`` opens ``DIR``,
then mounts itself *over* ``DIR``: every file operation a node makes in its data
directory reaches this process, which passes it through to the same directory
underneath (reached by the descriptor opened before the mount) unless a fault rule
says otherwise. When the mount goes (clean unmount, or the run's mount namespace
dying with the controller) the data is exactly where it was, in ``DIR``.

Why a process of its own: a node blocked in ``fsync`` waits on this daemon; if the
daemon shared the controller's interpreter, the controller's threads (and its GIL)
would sit in that path, and a controller stalled on a node's fsync could deadlock.
Binding: mfusepy (a maintained ctypes binding to libfuse3, Debian 12's ``fuse3``
package, pure Python wheel, no compiler needed; its multi-threaded loop lets a stalled
operation sleep while others proceed).

Writes go to faultfs's own page cache (:mod:`nemeses.disk.pagecache`), fsync writes
them out; so "what survived the last fsync" is always on disk and a power cut drops
exactly the rest. Fault rules (:class:`Rule`) match an operation by kind, file,
offset range and probability, and fail it (EIO, ENOSPC) and/or stall it (N ms or
until cleared). Every injected fault is one JSON line in ``--log`` with file, offset
and length.

Control: a JSON request per line on an abstract unix socket named ``--control`` (the
run's network namespace scopes it, and it leaves no file behind); see
docs/contracts.md "faultfs control" and :mod:`nemeses.disk.control`.
"""

from __future__ import annotations

import argparse
import errno
import fnmatch
import json
import logging
import os
import random
import socket
import stat
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from nemeses.disk.pagecache import DirtyFile

logger = logging.getLogger("faultfs")

OPS = ("read", "write", "fsync", "any")
ERRORS = {"EIO": errno.EIO, "ENOSPC": errno.ENOSPC}
STALL_UNTIL_CLEARED = -1


class BadRequest(ValueError):
    """A control request that does not say a valid thing (answered with its reason)."""


@dataclass(slots=True)
class Rule:
    """One fault: which operations it matches and what it does to them."""

    id: str
    op: str = "any"
    error: str | None = "EIO"
    stall_ms: int = 0  # > 0: sleep that long first; -1: block until the rule is cleared
    file: str = "*"  # fnmatch pattern on the path inside the mount ("replica.vr")
    offset_min: int = 0
    offset_max: int | None = None  # exclusive; None: to the end of the file
    probability: float = 1.0
    seed: int = 0
    hits: int = 0
    rng: random.Random = field(default_factory=random.Random, repr=False)
    cleared: threading.Event = field(default_factory=threading.Event, repr=False)

    @staticmethod
    def parse(data: dict[str, Any]) -> Rule:
        known = {"id", "op", "error", "stall_ms", "file", "offset_min", "offset_max", "probability", "seed"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise BadRequest(f"unknown rule fields {unknown}; accepted: {sorted(known)}")
        if not isinstance(data.get("id"), str) or not data["id"]:
            raise BadRequest("a rule needs a non-empty string 'id'")
        rule = Rule(id=data["id"])
        rule.op = data.get("op", "any")
        if rule.op not in OPS:
            raise BadRequest(f"rule op {rule.op!r} is not one of {', '.join(OPS)}")
        rule.error = data.get("error", "EIO")
        if rule.error is not None and rule.error not in ERRORS:
            raise BadRequest(f"rule error {rule.error!r} is not one of {', '.join(ERRORS)} or null")
        for name in ("stall_ms", "offset_min", "seed"):
            value = data.get(name, getattr(rule, name))
            if not isinstance(value, int) or isinstance(value, bool):
                raise BadRequest(f"rule {name} must be an integer, got {value!r}")
            setattr(rule, name, value)
        if rule.stall_ms < STALL_UNTIL_CLEARED:
            raise BadRequest("rule stall_ms must be >= 0, or -1 for 'until cleared'")
        offset_max = data.get("offset_max")
        if offset_max is not None and (not isinstance(offset_max, int) or offset_max <= rule.offset_min):
            raise BadRequest("rule offset_max must be an integer above offset_min, or null")
        rule.offset_max = offset_max
        rule.file = str(data.get("file", "*"))
        probability = data.get("probability", 1.0)
        if not isinstance(probability, int | float) or not 0 < probability <= 1:
            raise BadRequest("rule probability must be in (0, 1]")
        rule.probability = float(probability)
        if rule.error is None and rule.stall_ms == 0:
            raise BadRequest("a rule must fail (error) or stall (stall_ms) the operations it matches")
        rule.rng = random.Random(rule.seed)
        return rule

    def matches(self, op: str, path: str, offset: int, length: int) -> bool:
        if self.op not in ("any", op):
            return False
        if not fnmatch.fnmatchcase(path, self.file):
            return False
        if op != "fsync":
            end = offset + max(length, 1)
            if end <= self.offset_min or (self.offset_max is not None and offset >= self.offset_max):
                return False
        return self.probability >= 1.0 or self.rng.random() < self.probability

    def describe(self) -> dict[str, Any]:
        names = (
            "id",
            "op",
            "error",
            "stall_ms",
            "file",
            "offset_min",
            "offset_max",
            "probability",
            "seed",
            "hits",
        )
        return {name: getattr(self, name) for name in names}


class FaultState:
    """Rules, the page cache per inode, and the injection log, shared by FUSE threads and control."""

    def __init__(self, root_fd: int, log_path: str | None) -> None:
        self.root_fd = root_fd
        self.lock = threading.RLock()
        self.rules: dict[str, Rule] = {}
        self.cache: dict[int, DirtyFile] = {}  # inode -> unsynced pages
        self.flush_fds: dict[int, int] = {}  # inode -> a descriptor kept to flush or tear it later
        self.paths: dict[int, str] = {}  # inode -> the path it was last written through (for the log)
        self.counts: dict[str, int] = {"read": 0, "write": 0, "fsync": 0, "injected": 0, "power_cuts": 0}
        self._log = open(log_path, "a", buffering=1) if log_path else None  # noqa: SIM115

    def log(self, entry: dict[str, Any]) -> None:
        entry = {"time_ns": time.time_ns(), **entry}
        logger.info("%s", json.dumps(entry))
        if self._log is not None:
            self._log.write(json.dumps(entry) + "\n")

    def check(self, op: str, path: str, offset: int, length: int) -> None:
        """Apply the first matching rule: stall, then raise its error. Logged with file/offset/length."""
        with self.lock:
            self.counts[op] += 1
            rule = next((r for r in self.rules.values() if r.matches(op, path, offset, length)), None)
            if rule is None:
                return
            rule.hits += 1
            self.counts["injected"] += 1
        self.log(
            {
                "fault": rule.id,
                "op": op,
                "file": path,
                "offset": offset,
                "length": length,
                "error": rule.error,
                "stall_ms": rule.stall_ms,
            }
        )
        if rule.stall_ms > 0:
            rule.cleared.wait(rule.stall_ms / 1000)
        elif rule.stall_ms == STALL_UNTIL_CLEARED:
            rule.cleared.wait()
        if rule.error is not None and not rule.cleared.is_set():
            raise OSError(ERRORS[rule.error], os.strerror(ERRORS[rule.error]))

    def dirty(self, ino: int) -> DirtyFile:
        entry = self.cache.get(ino)
        if entry is None:
            entry = self.cache[ino] = DirtyFile()
        return entry

    # -- control ---------------------------------------------------------------------------

    def add_rule(self, data: dict[str, Any]) -> dict[str, Any]:
        rule = Rule.parse(data)
        with self.lock:
            if rule.id in self.rules:
                raise BadRequest(f"a rule with id {rule.id!r} is already active")
            self.rules[rule.id] = rule
        return rule.describe()

    def clear_rules(self, ids: list[str] | None) -> list[dict[str, Any]]:
        with self.lock:
            chosen = list(self.rules) if ids is None else [i for i in ids if i in self.rules]
            removed = [self.rules.pop(i) for i in chosen]
        for rule in removed:
            rule.cleared.set()  # releases operations stalled "until cleared"
        return [r.describe() for r in removed]

    def power_cut(self, *, torn: bool, seed: int) -> list[dict[str, Any]]:
        """Drop every unsynced page of every file (a torn write first keeps some sectors)."""
        rng = random.Random(seed)
        report = []
        with self.lock:
            self.counts["power_cuts"] += 1
            for ino in sorted(self.cache):
                entry = self.cache[ino]
                if not entry.dirty:
                    continue
                cut = entry.power_cut(self.flush_fds.get(ino), torn=torn, rng=rng)
                first = cut.dropped_ranges[0][0] if cut.dropped_ranges else 0
                item = {
                    "file": self.paths.get(ino, f"inode {ino}"),
                    "offset": first,
                    "length": cut.dropped_bytes,
                    "inode": ino,
                    **asdict(cut),
                }
                report.append(item)
                self.log({"fault": "power-cut", "op": "power-cut", "torn": torn, **item})
            self._close_idle_fds()
        return report

    def flush_all(self) -> int:
        """Write out every cached page (a clean unmount is not a power cut)."""
        written = 0
        with self.lock:
            for ino, entry in self.cache.items():
                fd = self.flush_fds.get(ino)
                if fd is not None and entry.dirty:
                    written += entry.flush(fd)
                    os.fsync(fd)
            self._close_idle_fds()
        return written

    def _close_idle_fds(self) -> None:
        for ino in [i for i, e in self.cache.items() if not e.dirty]:
            del self.cache[ino]
        for ino in [i for i in self.flush_fds if i not in self.cache]:
            os.close(self.flush_fds.pop(ino))

    def corrupt(self, path: str, offset: int, data: bytes) -> dict[str, Any]:
        """Put ``data`` at ``offset`` of ``path`` durably, under the node's feet (live corruption):
        on the backing file and over any cached page, as a device returning wrong bytes would."""
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC, dir_fd=self.root_fd)
        try:
            with self.lock:
                os.pwrite(fd, data, offset)
                os.fsync(fd)
                entry = self.cache.get(os.fstat(fd).st_ino)
                if entry is not None:
                    for index, page in entry.pages.items():
                        start, stop = index * len(page), (index + 1) * len(page)
                        lo, hi = max(start, offset), min(stop, offset + len(data))
                        if lo < hi:
                            page[lo - start : hi - start] = data[lo - offset : hi - offset]
        finally:
            os.close(fd)
        entry_log = {"fault": "corrupt", "op": "corrupt", "file": path, "offset": offset, "length": len(data)}
        self.log(entry_log)
        return entry_log

    def stats(self) -> dict[str, Any]:
        with self.lock:
            return {
                "counts": dict(self.counts),
                "rules": [r.describe() for r in self.rules.values()],
                "dirty_bytes": sum(e.dirty_bytes() for e in self.cache.values()),
                "dirty_files": sum(1 for e in self.cache.values() if e.dirty),
            }

    def handle(self, request: dict[str, Any]) -> Any:
        cmd = request.get("cmd")
        if cmd == "ping":
            return {"pid": os.getpid()}
        if cmd == "add":
            return self.add_rule(dict(request.get("rule") or {}))
        if cmd == "clear":
            ids = request.get("ids")
            if ids is not None and not (isinstance(ids, list) and all(isinstance(i, str) for i in ids)):
                raise BadRequest("clear takes 'ids': a list of rule ids, or none for all")
            return self.clear_rules(ids)
        if cmd == "power-cut":
            seed = request.get("seed", 0)
            if not isinstance(seed, int):
                raise BadRequest("power-cut 'seed' must be an integer")
            return self.power_cut(torn=bool(request.get("torn", False)), seed=seed)
        if cmd == "corrupt":
            path, offset, data = request.get("file"), request.get("offset"), request.get("data_hex")
            if not isinstance(path, str) or "/" in path or path in ("", ".", ".."):
                raise BadRequest("corrupt 'file' must be a file name inside the mount")
            if not isinstance(offset, int) or offset < 0 or not isinstance(data, str):
                raise BadRequest("corrupt needs 'offset' (integer >= 0) and 'data_hex' (hex string)")
            try:
                raw = bytes.fromhex(data)
            except ValueError as exc:
                raise BadRequest(f"corrupt 'data_hex' is not hex: {exc}") from None
            return self.corrupt(path, offset, raw)
        if cmd == "flush":
            return {"written": self.flush_all()}
        if cmd == "stats":
            return self.stats()
        raise BadRequest(
            f"unknown command {cmd!r}; known: ping, add, clear, power-cut, corrupt, flush, stats"
        )


def serve_control(state: FaultState, name: str) -> socket.socket:
    """Answer control requests on the abstract unix socket ``name`` (one thread per connection)."""
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind("\0" + name)
    server.listen(16)

    def connection(conn: socket.socket) -> None:
        with conn, conn.makefile("rwb") as stream:
            for line in stream:
                try:
                    request = json.loads(line)
                    if not isinstance(request, dict):
                        raise BadRequest("a request is a JSON object")
                    reply = {"ok": True, "value": state.handle(request)}
                except (BadRequest, json.JSONDecodeError) as exc:
                    reply = {"ok": False, "error": str(exc)}
                except Exception as exc:  # answer, and keep serving: a bad request must not kill control
                    logger.exception("control request failed")
                    reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
                stream.write(json.dumps(reply).encode() + b"\n")
                stream.flush()

    def accept() -> None:
        while True:
            conn, _ = server.accept()
            threading.Thread(target=connection, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, name="control", daemon=True).start()
    return server


def _operations(state: FaultState) -> Any:
    import mfusepy

    root = state.root_fd

    def rel(path: str) -> str:
        return path.lstrip("/") or "."

    def oserror(exc: OSError) -> mfusepy.FuseOSError:
        return mfusepy.FuseOSError(exc.errno or errno.EIO)

    class FaultFS(mfusepy.Operations):  # type: ignore[misc]
        use_ns = True

        def getattr(self, path: str, fh: int | None = None) -> dict[str, Any]:
            try:
                st = (
                    os.fstat(fh) if fh is not None else os.stat(rel(path), dir_fd=root, follow_symlinks=False)
                )
            except OSError as exc:
                raise oserror(exc) from None
            attrs = {
                key: getattr(st, key)
                for key in ("st_mode", "st_nlink", "st_uid", "st_gid", "st_size", "st_ino")
            }
            attrs.update(st_atime=st.st_atime_ns, st_mtime=st.st_mtime_ns, st_ctime=st.st_ctime_ns)
            if stat.S_ISREG(st.st_mode):
                with state.lock:
                    entry = state.cache.get(st.st_ino)
                    if entry is not None:
                        attrs["st_size"] = entry.logical_size(st.st_size)
            return attrs

        def readdir(self, path: str, fh: int) -> list[str]:
            fd = os.open(rel(path), os.O_RDONLY | os.O_DIRECTORY, dir_fd=root)
            try:
                return [".", "..", *os.listdir(fd)]
            finally:
                os.close(fd)

        def access(self, path: str, amode: int) -> int:
            if not os.access(rel(path), amode, dir_fd=root):
                raise mfusepy.FuseOSError(errno.EACCES)
            return 0

        def open(self, path: str, flags: int) -> int:
            try:
                return os.open(rel(path), (flags & ~os.O_APPEND) | os.O_CLOEXEC, dir_fd=root)
            except OSError as exc:
                raise oserror(exc) from None

        def create(self, path: str, mode: int, fi: Any = None) -> int:
            try:
                return os.open(
                    rel(path), os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode, dir_fd=root
                )
            except OSError as exc:
                raise oserror(exc) from None

        def read(self, path: str, size: int, offset: int, fh: int) -> bytes:
            try:
                state.check("read", rel(path), offset, size)
                with state.lock:
                    entry = state.cache.get(os.fstat(fh).st_ino)
                    if entry is None:
                        return os.pread(fh, size, offset)
                    return entry.read(fh, offset, size)
            except OSError as exc:
                raise oserror(exc) from None

        def write(self, path: str, data: bytes, offset: int, fh: int) -> int:
            try:
                state.check("write", rel(path), offset, len(data))
                with state.lock:
                    ino = os.fstat(fh).st_ino
                    state.dirty(ino).write(fh, offset, data)
                    state.paths[ino] = rel(path)
                    if ino not in state.flush_fds:
                        state.flush_fds[ino] = os.dup(fh)
                return len(data)
            except OSError as exc:
                raise oserror(exc) from None

        def fsync(self, path: str, datasync: int, fh: int) -> int:
            try:
                state.check("fsync", rel(path), 0, 0)
            except OSError as exc:
                # Like Linux after a failed writeback: the dirty pages are gone, not retried later.
                with state.lock:
                    entry = state.cache.get(os.fstat(fh).st_ino)
                    if entry is not None:
                        lost = entry.dirty_bytes()
                        entry.clear()
                        state.log({"op": "fsync-dropped", "file": rel(path), "offset": 0, "length": lost})
                raise oserror(exc) from None
            try:
                with state.lock:
                    entry = state.cache.get(os.fstat(fh).st_ino)
                    if entry is not None and entry.dirty:
                        entry.flush(fh)
                (os.fdatasync if datasync else os.fsync)(fh)
                return 0
            except OSError as exc:
                raise oserror(exc) from None

        def fallocate(self, path: str, mode: int, offset: int, size: int, fh: int) -> int:
            """Reserve blocks on the backing file (metadata: durable at once, like truncate). Without
            this, posix_fallocate falls back to writing one byte per block through FUSE."""
            if mode != 0:
                raise mfusepy.FuseOSError(errno.EOPNOTSUPP)
            try:
                os.posix_fallocate(fh, offset, size)
                return 0
            except OSError as exc:
                raise oserror(exc) from None

        def fsyncdir(self, path: str, datasync: int, fh: int) -> int:
            fd = os.open(rel(path), os.O_RDONLY | os.O_DIRECTORY, dir_fd=root)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            return 0

        def flush(self, path: str, fh: int) -> int:
            return 0

        def release(self, path: str, fh: int) -> int:
            os.close(fh)
            return 0

        def truncate(self, path: str, length: int, fh: int | None = None) -> int:
            try:
                fd = fh if fh is not None else os.open(rel(path), os.O_WRONLY | os.O_CLOEXEC, dir_fd=root)
                try:
                    with state.lock:
                        os.ftruncate(fd, length)
                        entry = state.cache.get(os.fstat(fd).st_ino)
                        if entry is not None:
                            entry.truncate(length)
                finally:
                    if fh is None:
                        os.close(fd)
                return 0
            except OSError as exc:
                raise oserror(exc) from None

        def unlink(self, path: str) -> int:
            try:
                ino = os.stat(rel(path), dir_fd=root, follow_symlinks=False).st_ino
                os.unlink(rel(path), dir_fd=root)
                with state.lock:
                    state.cache.pop(ino, None)
                    fd = state.flush_fds.pop(ino, None)
                    if fd is not None:
                        os.close(fd)
                return 0
            except OSError as exc:
                raise oserror(exc) from None

        def rename(self, old: str, new: str) -> int:
            try:
                os.rename(rel(old), rel(new), src_dir_fd=root, dst_dir_fd=root)
                return 0
            except OSError as exc:
                raise oserror(exc) from None

        def mkdir(self, path: str, mode: int) -> int:
            try:
                os.mkdir(rel(path), mode, dir_fd=root)
                return 0
            except OSError as exc:
                raise oserror(exc) from None

        def rmdir(self, path: str) -> int:
            try:
                os.rmdir(rel(path), dir_fd=root)
                return 0
            except OSError as exc:
                raise oserror(exc) from None

        def chmod(self, path: str, mode: int) -> int:
            os.chmod(rel(path), mode, dir_fd=root)
            return 0

        def chown(self, path: str, uid: int, gid: int) -> int:
            os.chown(rel(path), uid, gid, dir_fd=root)
            return 0

        def utimens(self, path: str, times: tuple[int, int] | None = None) -> int:
            os.utime(rel(path), ns=times, dir_fd=root) if times else os.utime(rel(path), dir_fd=root)
            return 0

        def statfs(self, path: str) -> dict[str, int]:
            sv = os.statvfs(root)
            return {
                key: getattr(sv, key)
                for key in (
                    "f_bavail", "f_bfree", "f_blocks", "f_bsize", "f_favail",
                    "f_ffree", "f_files", "f_flag", "f_frsize", "f_namemax",
                )
            }  # fmt: skip

        def destroy(self, path: str) -> None:
            state.flush_all()

    return FaultFS()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m nemeses.disk.faultfs", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--mount", required=True, help="directory to mount over (its data stays in it)")
    parser.add_argument("--control", required=True, help="abstract unix socket name for control requests")
    parser.add_argument("--log", help="JSON lines: every injected fault with file, offset, length")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="faultfs %(levelname)s %(message)s")
    try:
        root_fd = os.open(args.mount, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        print(f"faultfs: error: cannot open --mount {args.mount!r}: {exc.strerror}", file=sys.stderr)
        return 3
    state = FaultState(root_fd, args.log)
    serve_control(state, args.control)
    import mfusepy

    try:
        mfusepy.FUSE(
            _operations(state),
            os.path.abspath(args.mount),
            foreground=True,
            direct_io=True,
            fsname="faultfs",
            subtype="faultfs",
            attr_timeout=0,
            entry_timeout=0,
        )
    except RuntimeError as exc:  # libfuse's loop returns non-zero when a signal ended it
        logger.info("fuse loop ended: %s", exc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
