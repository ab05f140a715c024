"""analyze_many on a local two-node Ray cluster (ray.cluster_utils.Cluster): the same rows as the
local engine bit for bit, a worker killed mid-task, a corrupt source, resume after an interrupted
run. Skipped where ray is not installed; every Ray process is gone when the module ends."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

# Loopback only: must be set before ray is imported (its node-address rule reads it at import).
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
# Ray's memory monitor kills workers when the machine is 95 % full, whoever uses the memory; on a
# shared machine that would add kills the tests did not ask for.
os.environ.setdefault("RAY_memory_monitor_refresh_ms", "0")
ray = pytest.importorskip("ray", reason="ray is not installed (pip install 'eigenscope[ray]')")

from eigenscope.analysis.tables import read_table  # noqa: E402
from eigenscope.engines import analyze_many  # noqa: E402
from eigenscope.engines import ray as ray_engine  # noqa: E402

from _fixtures_many import assert_same_bits, checkpoints, corrupt  # noqa: E402

NODE = dict(num_cpus=1, object_store_memory=80 * 2**20)     # small: the machine is shared
ROOT = Path(__file__).resolve().parents[1]


def _proc_children(parents: set[int]) -> dict[int, str]:
    """{pid: command line} of the live processes whose parent is in `parents`."""
    out = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            cmd = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
        except (OSError, IndexError):
            continue
        if int(stat[1]) in parents:
            out[int(entry)] = cmd
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.fixture(scope="module")
def cluster():
    from ray.cluster_utils import Cluster

    # Ray's sessions and sockets in a short folder of our own (socket paths have a length limit)
    temp = tempfile.mkdtemp(prefix="es-ray-")
    node = {**NODE, "temp_dir": temp}
    # Cluster also writes the head's address under Ray's default temp folder (/tmp/ray), which
    # a fresh machine does not have: point that folder into ours too
    env = pytest.MonkeyPatch()
    env.setenv("RAY_TMPDIR", temp)
    os.makedirs(os.path.join(temp, "ray"), exist_ok=True)
    c = Cluster(initialize_head=True, head_node_args={**node, "include_dashboard": False})
    c.add_node(**node)
    c.wait_for_nodes()
    ray.init(address=c.address, log_to_driver=False)
    nodes = [c.head_node, *c.worker_nodes]
    c.raylets = {p.process.pid for n in nodes for p in n.all_processes.get("raylet", [])}
    services = {p.process.pid for n in nodes for ps in n.all_processes.values() for p in ps}
    try:
        yield c
    finally:
        workers = set(_proc_children(c.raylets))
        ray.shutdown()
        c.shutdown()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and any(map(_alive, services | workers)):
            time.sleep(0.2)
        left = sorted(p for p in services | workers if _alive(p))
        shutil.rmtree(temp, ignore_errors=True)
        env.undo()
        assert not left, f"Ray processes still running after shutdown: {left}"


def test_two_nodes_give_the_local_rows_bit_for_bit(cluster, tmp_path):
    assert len([n for n in ray.nodes() if n["Alive"]]) == 2
    paths = checkpoints(tmp_path, [0, 40, 80])
    local = analyze_many(paths, split=2, workers=1)
    remote = analyze_many(paths, engine="ray", split=2, workers=1, out=tmp_path / "t.parquet")
    assert len(local) == 36 and (local["status"] == "ok").all()
    assert_same_bits(remote, local)
    assert_same_bits(read_table(tmp_path / "t.parquet"), local)


def test_requests_no_node_can_meet_fail_at_once(cluster, tmp_path):
    from eigenscope.errors import ArgumentError

    paths = checkpoints(tmp_path, [0])
    with pytest.raises(ArgumentError, match="workers: each task asks for 8 CPU"):
        analyze_many(paths, engine="ray", workers=8)
    with pytest.raises(ArgumentError, match="already connected"):
        analyze_many(paths, engine="ray", address="127.0.0.1:1")


def _kill_first_task(raylets: set[int], killed: list, stop: threading.Event) -> None:
    """SIGKILL the first worker process seen running a task (its title is ray::run_task)."""
    while not stop.is_set() and not killed:
        running = [p for p, cmd in _proc_children(raylets).items() if cmd.startswith("ray::run_task")]
        if running:
            time.sleep(0.02)   # inside the task (a longer wait let tasks finish before the kill)
            if _proc_children(raylets).get(running[0], "").startswith("ray::run_task"):
                os.kill(running[0], signal.SIGKILL)
                killed.append(running[0])
        time.sleep(0.01)


def test_a_worker_killed_mid_task_is_retried_no_row_lost_or_doubled(cluster, tmp_path):
    paths = checkpoints(tmp_path, [1, 2, 3], width=160)      # ~1-3 s per task, all metrics
    killed = []
    for _ in range(5):     # the killer polls process titles: on a busy machine it can miss a run
        stop = threading.Event()
        killer = threading.Thread(target=_kill_first_task, args=(cluster.raylets, killed, stop))
        killer.start()
        try:
            remote = analyze_many(paths, engine="ray", workers=1)
        finally:
            stop.set()
            killer.join()
        if killed:
            break
    assert killed, "no running task was found to kill"
    assert not _alive(killed[0])
    assert_same_bits(remote, analyze_many(paths, workers=1))
    assert not remote.duplicated(["source", "name"]).any()


def test_a_corrupt_source_fails_alone(cluster, tmp_path):
    good = checkpoints(tmp_path, [3, 4])
    garbage, cut = corrupt(tmp_path)
    remote = analyze_many([good[0], garbage, cut, good[1]], engine="ray", workers=1,
                          metrics="norms,powerlaw")
    status = remote.groupby("source", sort=False)["status"].agg(lambda s: sorted(set(s)))
    assert status.to_dict() == {str(good[0]): ["ok"], str(garbage): ["failed"],
                                str(cut): ["failed"], str(good[1]): ["ok"]}
    assert remote.loc[remote["source"] == str(garbage), "warning"].item().startswith(str(garbage))
    local = analyze_many(good, workers=1, metrics="norms,powerlaw")
    assert_same_bits(remote[remote["status"] == "ok"].reset_index(drop=True), local)


def test_resume_after_the_driver_was_killed(cluster, tmp_path, monkeypatch):
    paths = checkpoints(tmp_path, [0, 1, 2, 3, 4, 5], width=96)
    out = tmp_path / "t.parquet"
    cmd = [sys.executable, "-m", "eigenscope", "analyze", *map(str, paths), "--out", str(out),
           "--ray", cluster.address, "--workers", "1", "--rows", "0"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    driver = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not out.exists() and driver.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        driver.send_signal(signal.SIGKILL)          # the run dies with tasks still on the nodes
        driver.wait()
    before = read_table(out)
    done = before["source"].unique().tolist()
    assert 1 <= len(done) < len(paths), "the kill came too late to interrupt the run"
    submitted, real = [], ray_engine.run_ray
    monkeypatch.setattr(ray_engine, "run_ray", lambda tasks, **kw: real(
        [t for t in tasks if not submitted.append(t.label)], **kw))
    df = analyze_many(paths, engine="ray", workers=1, out=out, resume=True)
    assert sorted(submitted) == sorted(set(map(str, paths)) - set(done))
    assert not df.duplicated(["source", "name"]).any()
    assert_same_bits(df, analyze_many(paths, workers=1))
    assert_same_bits(read_table(out), df)
