"""A real multi-node Ray cluster on this machine: `ray start --head` plus two worker nodes.

The head has no CPUs, so every task must land on a worker node; one worker declares a GPU (a
resource label on this CPU machine). The demo's stages run on it through the config's
`ray.address`, exactly as on a real cluster, and survive losing a worker node mid-stage.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipelines.runtime import block_cloud_metadata_probe, quiet_local_environment

REPO = Path(__file__).resolve().parents[2]
RAY = str(Path(sys.executable).with_name("ray"))

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalCluster:
    """Head + workers as separate `ray start` processes, each a node with its own raylet."""

    def __init__(self, temp_dir: Path):
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.temp_dir = temp_dir
        self.env = {**os.environ, **quiet_local_environment(single_node=False), "PYTHONPATH": str(REPO)}
        block_cloud_metadata_probe()

    def _ray(self, *args: str) -> str:
        result = subprocess.run([RAY, *args], env=self.env, capture_output=True, text=True, timeout=120)
        if result.returncode != 0:
            raise RuntimeError(f"ray {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
        return result.stdout

    def start(self) -> None:
        self._ray(
            "start",
            "--head",
            f"--port={self.port}",
            "--node-ip-address=127.0.0.1",
            "--num-cpus=0",
            "--include-dashboard=false",
            "--disable-usage-stats",
            f"--temp-dir={self.temp_dir}",
        )
        self.add_worker(cpus=1)
        self.add_worker(cpus=1, gpus=1)

    def add_worker(self, cpus: int, gpus: int = 0) -> None:
        self._ray(
            "start",
            f"--address={self.address}",
            "--node-ip-address=127.0.0.1",
            f"--num-cpus={cpus}",
            f"--num-gpus={gpus}",
            "--disable-usage-stats",
        )

    def nodes(self) -> list[dict]:
        script = (
            "import json, ray; ray.init(address=%r, log_to_driver=False); "
            "print(json.dumps([{k: n[k] for k in ('NodeID', 'Alive', 'Resources')} for n in ray.nodes()]))"
        )
        out = subprocess.run(
            [sys.executable, "-c", script % self.address],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        ).stdout
        return json.loads(out.strip().splitlines()[-1])

    def worker_ids(self, gpu: bool | None = None) -> set[str]:
        ids = set()
        for node in self.nodes():
            if not node["Alive"] or node["Resources"].get("CPU", 0) == 0:
                continue
            if gpu is None or (node["Resources"].get("GPU", 0) > 0) == gpu:
                ids.add(node["NodeID"])
        return ids

    def raylet_pids(self) -> dict[int, str]:
        """pid -> command line of every raylet process (one per node)."""
        out = subprocess.run(["pgrep", "-a", "raylet"], capture_output=True, text=True).stdout
        return {int(line.split()[0]): line for line in out.splitlines() if "raylet" in line}

    def stop(self) -> None:
        """Stop this cluster's processes only (`ray stop` would stop every Ray on the machine)."""
        for sig in (signal.SIGTERM, signal.SIGKILL):
            subprocess.run(["pkill", f"-{sig.name[3:]}", "-f", str(self.temp_dir)], capture_output=True)
            time.sleep(2)


@pytest.fixture(scope="module")
def cluster():
    temp_dir = Path("/tmp") / f"vlmix-cluster-{os.getpid()}"  # short: Ray's socket paths have a length limit
    cluster = LocalCluster(temp_dir)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


CONFIG = """
seed: 0
storage: {{root: {root}}}
ray: {{address: "{address}"}}
download: {{timeout_s: 1, samples_per_shard: 16, threads_per_worker: 8, retry_rounds: 1}}
ocr: {{concurrency: 1, batch_size: 4}}
tasks: {{captioning: {{share: 0.5}}, ocr_large: {{share: 0.5}}}}
sources:
  - name: scenes
    kind: url_list
    task: captioning
    language: en
    locations: ["{demo}/urls/scenes.parquet"]
  - name: signs
    kind: url_list
    task: ocr_large
    language: en
    locations: ["{demo}/urls/text_en.parquet"]
    ocr: {{language: en}}
"""


def run_cli(*args: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pipelines.cli", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.fixture(scope="module")
def downloaded(cluster, tmp_path_factory, demo_directory):
    """The demo's URL lists downloaded by the cluster; returns (config path, storage root)."""
    from pipelines.demo import DemoServer, write_url_lists

    tmp = tmp_path_factory.mktemp("cluster-run")
    config = tmp / "cluster.yaml"
    config.write_text(CONFIG.format(root=tmp / "root", address=cluster.address, demo=demo_directory))
    with DemoServer(demo_directory, hang_s=10) as server:
        write_url_lists(demo_directory, server.base_url)
        result = run_cli("download", "--config", str(config), "--no-progress", env=cluster.env)
    assert result.returncode == 0, result.stderr[-3000:]
    return config, tmp / "root"


def test_download_runs_on_the_worker_nodes(cluster, downloaded):
    _, root = downloaded
    stats = json.loads((root / "raw" / "scenes" / "_vlmix_download.json").read_text())
    workers = cluster.worker_ids()
    assert len(workers) == 2
    assert set(stats["nodes"]) <= workers  # the CPU-less head ran none of it
    assert sum(stats["nodes"].values()) >= stats["shards"]
    assert stats["downloaded"] > 0


def raw_keys(root: Path, source: str) -> list[str]:
    import tarfile

    keys = []
    for tar_path in sorted((root / "raw" / source).glob("[0-9]*.tar")):
        with tarfile.open(tar_path) as tar:
            keys += [m.name[:-4] for m in tar.getmembers() if m.name.endswith(".jpg")]
    return keys


def test_ocr_survives_losing_a_worker_node(cluster, downloaded):
    import pyarrow.parquet as pq

    config, root = downloaded
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pipelines.cli",
            "ocr",
            "--root",
            str(root),
            "--source",
            "signs",
            "--language",
            "en",
            "--ray-address",
            cluster.address,
            "--concurrency",
            "1",
            "--batch-size",
            "2",
        ],
        cwd=REPO,
        env=cluster.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    out_dir = root / "ocr" / "signs"
    deadline = time.monotonic() + 300
    while not list(out_dir.glob("*.parquet")) and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.2)
    assert process.poll() is None, "OCR finished before a node could be lost: make the test slower"
    victims = [
        pid
        for pid, line in cluster.raylet_pids().items()
        if "__internal_head__" not in line and "GPU," not in line
    ]
    assert victims, cluster.raylet_pids()
    os.kill(victims[0], signal.SIGKILL)  # the CPU worker node dies with its raylet and workers
    cluster.add_worker(cpus=1)  # as an autoscaler would replace it
    output, _ = process.communicate(timeout=600)
    assert process.returncode == 0, output[-3000:]

    ocr_keys = []
    for part in sorted(out_dir.glob("*.parquet")):
        ocr_keys += pq.read_table(part, columns=["key"]).column("key").to_pylist()
    assert len(ocr_keys) == len(set(ocr_keys)), "a sample was OCRed into the corpus twice"
    assert sorted(ocr_keys) == sorted(raw_keys(root, "signs")), "samples were lost"
