"""A real multi-node Ray cluster on this machine: `ray start --head` plus two worker nodes.

The head has no CPUs, so every task must land on a worker node; one worker declares a GPU (a
resource label on this CPU machine). The demo's stages run on it through the config's
`ray.address`, exactly as on a real cluster: the download and OCR land on the worker nodes, OCR
actors that ask for GPUs land on the GPU node only (and wait while it has none free), OCR survives
losing a worker node mid-stage, and `vlmix run` builds and verifies the mixture on the cluster.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
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


def last_json(stdout: str):
    """The last line of a child's stdout that is JSON: Ray may print its own warnings after the
    child's result (e.g. "raylet has lagging heartbeats" on a loaded machine)."""
    for line in reversed(stdout.strip().splitlines()):
        try:
            return json.loads(line)
        except ValueError:
            continue
    raise ValueError(f"no JSON line in the child's output: {stdout[-2000:]!r}")


class LocalCluster:
    """Head + workers as separate `ray start` processes, each a node with its own raylet."""

    def __init__(self, temp_dir: Path):
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.client_port = free_port()  # not Ray's default 10001, which another cluster may hold
        self.temp_dir = temp_dir
        self.env = {**os.environ, **quiet_local_environment(single_node=False), "PYTHONPATH": str(REPO)}
        block_cloud_metadata_probe()

    def _ray(self, *args: str) -> str:
        result = subprocess.run([RAY, *args], env=self.env, capture_output=True, text=True, timeout=120)
        if result.returncode != 0:
            raise RuntimeError(f"ray {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
        return result.stdout

    def start(self, cpu_workers: int = 1, gpu_workers: int = 1) -> None:
        """The head (no CPUs), then worker nodes of one CPU each; a GPU worker also declares one GPU."""
        self._ray(
            "start",
            "--head",
            f"--port={self.port}",
            "--node-ip-address=127.0.0.1",
            "--num-cpus=0",
            "--include-dashboard=false",
            "--disable-usage-stats",
            f"--ray-client-server-port={self.client_port}",
            f"--temp-dir={self.temp_dir}",
        )
        for _ in range(cpu_workers):
            self.add_worker(cpus=1)
        for _ in range(gpu_workers):
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
        return last_json(out)

    def worker_ids(self, gpu: bool | None = None) -> set[str]:
        ids = set()
        for node in self.nodes():
            if not node["Alive"] or node["Resources"].get("CPU", 0) == 0:
                continue
            if gpu is None or (node["Resources"].get("GPU", 0) > 0) == gpu:
                ids.add(node["NodeID"])
        return ids

    def raylet_pids(self) -> dict[int, str]:
        """pid -> command line of this cluster's raylet processes (one per node; other Rays excluded)."""
        out = subprocess.run(["pgrep", "-a", "raylet"], capture_output=True, text=True).stdout
        lines = [line for line in out.splitlines() if "raylet" in line and str(self.temp_dir) in line]
        return {int(line.split()[0]): line for line in lines}

    def stop(self) -> None:
        """Stop this cluster's processes only (`ray stop` would stop every Ray on the machine)."""
        # Every process of the cluster names its temp dir, but the head's Ray client server, which
        # names its own port.
        patterns = [str(self.temp_dir), f"ray.util.client.server .*--port={self.client_port}( |$)"]
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for pattern in patterns:
                subprocess.run(["pkill", f"-{sig.name[3:]}", "-f", pattern], capture_output=True)
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
ray: {{address: {address}}}
mixture: {{total_samples: 400}}
shards: {{max_samples: 100}}
download: {{timeout_s: 1, samples_per_shard: 16, threads_per_worker: 8, retry_rounds: 1}}
ocr: {{concurrency: {ocr_actors}, batch_size: 4}}
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
        [sys.executable, "-m", "flows.cli", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.fixture(scope="module")
def downloaded(cluster, tmp_path_factory, demo_directory):
    """The demo's URL lists downloaded by the cluster; returns (config path, storage root)."""
    from flows.demo import DemoServer, write_url_lists

    tmp = tmp_path_factory.mktemp("cluster-run")
    config = tmp / "cluster.yaml"
    config.write_text(
        CONFIG.format(root=tmp / "root", address=f'"{cluster.address}"', demo=demo_directory, ocr_actors=1)
    )
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
    config, root = downloaded
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "flows.cli",
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

    keys = ocr_keys(out_dir)
    assert len(keys) == len(set(keys)), "a sample was OCRed into the corpus twice"
    assert sorted(keys) == sorted(raw_keys(root, "signs")), "samples were lost"


def ocr_keys(out_dir: Path) -> list[str]:
    import pyarrow.parquet as pq

    keys = []
    for part in sorted(out_dir.glob("*.parquet")):
        keys += pq.read_table(part, columns=["key"]).column("key").to_pylist()
    return keys


def copy_raw(root: Path, new_root: Path, sources: list[str]) -> None:
    """The module's downloads under a fresh root, so a test's stages start from them and nothing else."""
    for source in sources:
        shutil.copytree(root / "raw" / source, new_root / "raw" / source)


# Holds the cluster's only GPU with an actor until its stdin closes (another job on the cluster).
GPU_HOLDER = """
import sys, ray

@ray.remote(num_cpus=0, num_gpus=1)
class Holder:
    def node(self):
        return ray.get_runtime_context().get_node_id()

ray.init(address=sys.argv[1], log_to_driver=False)
holder = Holder.remote()
print(ray.get(holder.node.remote()), flush=True)
sys.stdin.read()
"""

# The OCR stage with actors that each reserve half a GPU. The GPU is a resource label on this CPU
# machine, so the engine stays on the CPU. model_copy skips the settings check that refuses GPUs
# reserved for a CPU engine: a mistake in a real config, here the only way to test placement.
GPU_OCR = """
import json, logging, sys
from ocr import run_ocr_stage
from ocr.settings import OcrSettings
logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(name)s: %(message)s")
from pipelines.runtime import ensure_ray
settings = OcrSettings(concurrency=2, cpus_per_actor=0.5, batch_size=4).model_copy(update={"gpus_per_actor": 0.5})
ensure_ray(sys.argv[2])
stats = run_ocr_stage(sys.argv[1], "signs", "en", settings)
print("STATS " + json.dumps(stats), flush=True)
"""


def test_gpu_ocr_actors_wait_for_and_land_on_the_gpu_node_only(cluster, downloaded, tmp_path):
    _, module_root = downloaded
    root = tmp_path / "root"
    copy_raw(module_root, root, ["signs"])
    gpu_nodes = cluster.worker_ids(gpu=True)
    assert len(gpu_nodes) == 1
    holder = subprocess.Popen(
        [sys.executable, "-c", GPU_HOLDER, cluster.address],
        env=cluster.env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    log_path = tmp_path / "ocr.log"
    ocr = None
    try:
        assert holder.stdout.readline().strip() in gpu_nodes
        with log_path.open("w") as log:
            ocr = subprocess.Popen(
                [sys.executable, "-c", GPU_OCR, str(root), cluster.address],
                cwd=REPO,
                env=cluster.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 120
        while (
            "Waiting for GPUs" not in log_path.read_text()
            and ocr.poll() is None
            and time.monotonic() < deadline
        ):
            time.sleep(0.2)
        assert "Waiting for GPUs" in log_path.read_text(), log_path.read_text()[-3000:]
        time.sleep(5)  # the CPU node is idle, yet no actor starts there: the stage waits for the GPU
        assert ocr.poll() is None, log_path.read_text()[-3000:]
        assert not list((root / "ocr" / "signs").glob("*.parquet"))
        holder.stdin.close()  # the holder's driver exits and its actor frees the GPU
        holder.wait(timeout=60)
        assert ocr.wait(timeout=300) == 0, log_path.read_text()[-3000:]
    finally:
        for process in (holder, ocr):
            if process is not None and process.poll() is None:
                process.kill()

    stats = json.loads(log_path.read_text().split("STATS ", 1)[1])
    assert set(stats["nodes"]) == gpu_nodes  # every OCR actor ran on the GPU-labelled node
    assert sum(stats["nodes"].values()) == stats["images"] > 0
    keys = ocr_keys(root / "ocr" / "signs")
    assert len(keys) == len(set(keys)) and sorted(keys) == sorted(raw_keys(root, "signs"))


def test_demo_flow_runs_end_to_end_on_the_cluster(cluster, downloaded, demo_directory, tmp_path):
    """`vlmix run` given the cluster's address: every stage, the mixture's shards verified."""
    import webdataset

    from shards import read_manifest, verify
    from shards.reader import shard_urls

    _, module_root = downloaded
    root = tmp_path / "root"
    copy_raw(module_root, root, ["scenes", "signs"])  # the download stage finds them done and keeps them
    config = tmp_path / "flow.yaml"  # no address in the file: it comes from the command line
    config.write_text(CONFIG.format(root=root, address="null", demo=demo_directory, ocr_actors=2))
    env = {
        **cluster.env,
        "PREFECT_HOME": str(tmp_path / "prefect"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_UI_ENABLED": "false",
    }
    env.pop("PREFECT_API_URL", None)  # Prefect's ephemeral mode, not a server someone else runs
    result = run_cli("run", "--config", str(config), "--set", f"ray.address={cluster.address}", env=env)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    # Every stage this config enables: no translate (no source translates), no train (no `train` section).
    for stage in ("download", "ocr", "tasks", "mix"):
        assert re.search(rf"^{stage}: done in", result.stdout, re.MULTILINE), result.stdout
    assert not re.search(r"^(translate|train):", result.stdout, re.MULTILINE), result.stdout

    workers = cluster.worker_ids()
    ocr_stats = json.loads((root / "ocr" / "signs" / "stats.json").read_text())
    assert set(ocr_stats["nodes"]) <= workers and sum(ocr_stats["nodes"].values()) == ocr_stats["images"] > 0
    checked = verify(root / "shards")
    assert checked.ok, checked.problems
    manifest = read_manifest(root / "shards")
    assert sum(shard["samples"] for shard in manifest["shards"]) == 400
    assert set(manifest["tasks"]) == {"captioning", "ocr_large"}
    for task in manifest["tasks"].values():  # the config's shares, 0.5 each, to one sample
        assert task["target_share"] == 0.5
        assert abs(task["samples"] - 200) <= 1, manifest["tasks"]
    read = Counter(
        json.loads(sample["json"])["task"]
        for sample in webdataset.WebDataset(shard_urls(str(root / "shards")), shardshuffle=False)
    )
    assert read == {task: entry["samples"] for task, entry in manifest["tasks"].items()}

    # One node instead of two: the same downloads and OCR results under another root; the OCR stage's
    # task tables, the task stage and the mix again on a local Ray of one CPU: every task table and
    # every shard (manifest included) is the same bytes.
    alone = tmp_path / "one-node"
    shutil.copytree(root, alone, ignore=shutil.ignore_patterns("tasks", "shards", "_mix", "_run", "ocr.json",
                                                                 "tasks.json", "mix.json"))
    config_alone = tmp_path / "one-node.yaml"
    config_alone.write_text(CONFIG.format(root=alone, address="null", demo=demo_directory, ocr_actors=1))
    local_env = {key: value for key, value in env.items() if key != "RAY_ADDRESS"}
    result = run_cli("run", "--config", str(config_alone), "--stage", "ocr", "--stage", "tasks", "--stage", "mix",
                     "--set", "ray.num_cpus=1", env=local_env)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    assert files_under(alone / "tasks") == files_under(root / "tasks")
    assert files_under(alone / "shards") == files_under(root / "shards")


def files_under(folder: Path) -> dict[str, bytes]:
    return {str(path.relative_to(folder)): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}
