"""The claim on a run folder: one live owner at a time, and a dead owner's claim is taken over."""
import json
import os
import subprocess
import sys
import time

import pytest

from lomix_core.studies.run_lock import CLAIM, RunLock


def test_one_owner_at_a_time(tmp_path):
    first, second = RunLock(tmp_path), RunLock(tmp_path)
    assert first.acquire()
    assert not second.acquire()  # the first is alive (this very process) and fresh
    assert second.holder()["token"] == first.owner["token"]
    first.release()
    assert not (tmp_path / CLAIM).exists() and second.acquire()
    second.release()


def test_a_dead_owners_claim_is_taken_over(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    lock = RunLock(tmp_path)
    (tmp_path / CLAIM).write_text(json.dumps({**lock.owner, "pid": int(dead.stdout), "token": "dead"}))
    assert lock.is_stale() and lock.acquire()
    assert lock.holder()["token"] == lock.owner["token"]
    lock.release()


def test_a_claim_not_touched_for_too_long_is_stale_even_from_another_host(tmp_path):
    lock = RunLock(tmp_path, stale_after=60, heartbeat=1)
    claim = tmp_path / CLAIM
    claim.write_text(json.dumps({"host": "elsewhere", "pid": 1, "token": "other"}))
    assert not lock.is_stale() and not lock.acquire()  # another host's process cannot be checked: trust it
    os.utime(claim, (time.time() - 120, time.time() - 120))
    assert lock.is_stale() and lock.acquire()
    lock.release()


def test_the_owner_keeps_its_claim_fresh(tmp_path):
    lock = RunLock(tmp_path, stale_after=2, heartbeat=0.2)
    assert lock.acquire()
    os.utime(tmp_path / CLAIM, (time.time() - 10, time.time() - 10))
    time.sleep(0.6)
    assert time.time() - (tmp_path / CLAIM).stat().st_mtime < 1  # touched by the heartbeat
    lock.release()


def test_a_fresh_claim_made_during_a_take_over_is_put_back(tmp_path, monkeypatch):
    """Two workers saw the same stale claim; the second must not take the first's new claim away."""
    taker = RunLock(tmp_path)
    (tmp_path / CLAIM).write_text(json.dumps({"host": "elsewhere", "pid": 1, "token": "fresh"}))
    judged = []
    monkeypatch.setattr(RunLock, "is_stale", lambda self: not judged.append(1) and len(judged) == 1)  # the old one
    real_stat = type(tmp_path).stat
    calls = []

    def stat(path, *args, **kwargs):  # the claim's inode it saw first belonged to the old claim
        result = real_stat(path, *args, **kwargs)
        if path.name == CLAIM:
            calls.append(path)
        first = path.name == CLAIM and len(calls) == 1
        return os.stat_result((result.st_mode, result.st_ino + first) + tuple(result)[2:])

    monkeypatch.setattr(type(tmp_path), "stat", stat)
    assert not taker.acquire()
    assert json.loads((tmp_path / CLAIM).read_text())["token"] == "fresh"


def test_bad_timings_are_refused(tmp_path):
    with pytest.raises(ValueError, match="heartbeat < stale_after"):
        RunLock(tmp_path, stale_after=1, heartbeat=5)
