"""An exclusive claim on a run folder, so that no run trains twice at the same time.

A sweep may hand the same run to several workers: a SLURM job requeued while its first attempt
still runs, a Ray task retried, two notebooks sharing one output folder. Each worker claims the
run folder before training it. The claim is a file, ``claim.json``, created with ``O_EXCL`` (atomic
on local and NFS filesystems), naming its owner (host, process, time). The owner touches it every
``heartbeat`` seconds while it trains. A claim whose file has not been touched for ``stale_after``
seconds, or whose owner process on this same host is gone, belongs to a dead worker: the next
worker takes it over, and the run resumes from its ``last.pt``.
"""
from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from pathlib import Path

CLAIM = "claim.json"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: it exists
        return True
    return True


class RunLock:
    """``with RunLock(run_dir) as lock:`` claims ``run_dir``; ``lock.acquire()`` returns False while a
    live worker holds it."""

    def __init__(self, run_dir: str | os.PathLike, stale_after: float = 600.0, heartbeat: float = 30.0):
        if not 0 < heartbeat < stale_after:
            raise ValueError(f"need 0 < heartbeat < stale_after, got {heartbeat} and {stale_after}")
        self.path = Path(run_dir) / CLAIM
        self.stale_after, self.heartbeat = stale_after, heartbeat
        self.owner = {"host": socket.gethostname(), "pid": os.getpid(), "token": uuid.uuid4().hex,
                      "since": time.time()}
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None

    def holder(self) -> dict | None:
        """The current claim's owner, or None when the run is not claimed (or the claim is unreadable)."""
        try:
            return json.loads(self.path.read_text())
        except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError):
            return None

    def is_stale(self) -> bool:
        """Whether the existing claim belongs to a worker that is gone."""
        try:
            age = time.time() - self.path.stat().st_mtime
        except FileNotFoundError:
            return False
        holder = self.holder()
        same_host_dead = (holder is not None and holder.get("host") == self.owner["host"]
                          and not _alive(int(holder.get("pid", -1))))
        return age > self.stale_after or same_host_dead

    def acquire(self) -> bool:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(2):  # a stale claim is taken over once, then the create is tried again
            try:
                descriptor = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                if not (self.is_stale() and self._take_over()):
                    return False
                continue
            with os.fdopen(descriptor, "w") as file:
                json.dump(self.owner, file)
            self._start_heartbeat()
            return True
        return False

    def _take_over(self) -> bool:
        """Move a stale claim aside; only one of several workers that saw it stale succeeds."""
        before = self.path.stat().st_ino
        aside = self.path.with_name(f"{CLAIM}.stale-{self.owner['token']}")
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:  # another worker moved it first
            return True
        if aside.stat().st_ino != before:  # it was a fresh claim made in between: put it back
            try:
                os.link(aside, self.path)
            except FileExistsError:
                pass
            aside.unlink(missing_ok=True)
            return False
        aside.unlink(missing_ok=True)
        return True

    def _start_heartbeat(self) -> None:
        def beat():
            while not self._stop.wait(self.heartbeat):
                try:
                    os.utime(self.path)
                except FileNotFoundError:
                    return

        self._stop.clear()
        self._beat = threading.Thread(target=beat, daemon=True)
        self._beat.start()

    def release(self) -> None:
        self._stop.set()
        if self._beat is not None:
            self._beat.join()
        holder = self.holder()
        if holder is not None and holder.get("token") == self.owner["token"]:
            self.path.unlink(missing_ok=True)

    def __enter__(self) -> "RunLock":
        if not self.acquire():
            raise RuntimeError(f"{self.path.parent} is being trained by {self.holder()}")
        return self

    def __exit__(self, *exc) -> None:
        self.release()
