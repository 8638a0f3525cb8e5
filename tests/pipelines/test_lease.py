"""One run per storage root: a second run is refused with the holder's name; a stale lease is taken
over with a notice. On local disk and on a real S3 API (moto's server on loopback)."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys

import pytest

from pipelines.lease import LEASE, Lease, LeaseHeld
from pipelines.storage import Storage


def _check_refusal_and_takeover(storage: Storage) -> None:
    first = Lease(storage, run_id="first-run", heartbeat_s=0.2, stale_after_s=5).acquire()
    try:
        with pytest.raises(LeaseHeld) as refused:
            Lease(storage, run_id="second-run").acquire()
        message = str(refused.value)
        assert "first-run" in message and f"pid {os.getpid()}" in message and storage.root_uri() in message
        holder = json.loads(storage.fs.cat(storage.path(LEASE)))
        assert holder["run_id"] == "first-run" and holder["host"] and holder["heartbeat"] > holder["started"] - 1
    finally:
        first.release()
    assert not storage.exists(storage.path(LEASE))
    with Lease(storage, run_id="third-run") as third:  # given back: the next run gets it
        assert third.notice is None


def test_a_second_run_on_a_local_root_is_refused_naming_the_holder(tmp_path):
    _check_refusal_and_takeover(Storage(str(tmp_path / "root")))


def test_a_lease_whose_process_is_gone_is_taken_over_with_a_notice(tmp_path, caplog):
    storage = Storage(str(tmp_path))
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    killed = Lease(storage, run_id="killed-run")
    killed.holder.pid = int(gone.stdout)  # a run on this host whose process exited without giving it back
    assert killed._create()
    with caplog.at_level(logging.WARNING, logger="pipelines.lease"), Lease(storage, run_id="next-run") as lease:
        assert "killed-run" in lease.notice and "took over" in caplog.text
        assert json.loads(storage.fs.cat(storage.path(LEASE)))["run_id"] == "next-run"


def test_a_lease_without_heartbeat_is_stale_on_another_host(tmp_path):
    storage = Storage(str(tmp_path))
    other = Lease(storage, run_id="elsewhere", heartbeat_s=1, stale_after_s=2)
    other.holder.host = "another-host"
    assert other._create()
    with pytest.raises(LeaseHeld, match="elsewhere"):  # its heartbeat is fresh
        Lease(storage, heartbeat_s=1, stale_after_s=2).acquire()
    record = json.loads(storage.fs.cat(storage.path(LEASE)))
    storage.write_bytes(storage.path(LEASE), json.dumps({**record, "heartbeat": record["heartbeat"] - 3}).encode())
    with Lease(storage, heartbeat_s=1, stale_after_s=2) as lease:
        assert "elsewhere" in lease.notice


def test_the_lease_works_on_s3(loopback_s3):
    from s3fs import S3FileSystem

    S3FileSystem().mkdir("leases")
    _check_refusal_and_takeover(Storage("s3://leases/run"))


def _race_for_a_stale_lease(storage: Storage, contenders: int = 6) -> None:
    """Runs that find one stale lease at the same moment: exactly one of them gets the root."""
    import threading

    gone = Lease(storage, run_id="gone", heartbeat_s=1, stale_after_s=2)
    gone.holder.host = "another-host"
    assert gone._create()
    record = json.loads(storage.fs.cat(storage.path(LEASE)))
    storage.write_bytes(storage.path(LEASE), json.dumps({**record, "heartbeat": record["heartbeat"] - 60}).encode())
    start, won, refused = threading.Barrier(contenders), [], []

    def contend(i: int) -> None:
        lease = Lease(storage, run_id=f"run-{i}", heartbeat_s=1, stale_after_s=2)
        start.wait()
        try:
            won.append(lease.acquire())
        except LeaseHeld as err:
            refused.append(str(err))

    threads = [threading.Thread(target=contend, args=(i,)) for i in range(contenders)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        assert len(won) == 1 and len(refused) == contenders - 1, (won, refused)
        assert json.loads(storage.fs.cat(storage.path(LEASE)))["run_id"] == won[0].holder.run_id
        assert all(won[0].holder.run_id in message for message in refused)
    finally:
        for lease in won:
            lease.release()
    assert storage.glob(storage.path("_run", "takeover-*")) == []  # no marker left behind


@pytest.mark.parametrize("round_", range(3))
def test_runs_racing_for_a_stale_local_lease_one_wins(tmp_path, round_):
    _race_for_a_stale_lease(Storage(str(tmp_path / "root")))


def test_runs_racing_for_a_stale_s3_lease_one_wins(loopback_s3):
    from s3fs import S3FileSystem

    S3FileSystem().mkdir("race")
    _race_for_a_stale_lease(Storage("s3://race/run"))
