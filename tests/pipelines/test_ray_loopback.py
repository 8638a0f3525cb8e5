"""Starting local Ray through vlmix sends nothing beyond this machine (checked with strace), even with a
cluster's address in the environment."""

from __future__ import annotations

import ipaddress
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

_ADDRESS = re.compile(r'sin6?_addr=inet_addr\("([^"]+)"\)|inet_pton\(AF_INET6, "([^"]+)"')


def own_addresses() -> set[str]:
    out = subprocess.run(["ip", "-o", "addr"], capture_output=True, text=True, check=False).stdout
    return {m.group(1) for m in re.finditer(r"inet6? ([0-9a-f.:]+)/", out)}


def outbound(strace_lines: list[str], allowed: set[str]) -> list[str]:
    """Syscalls that send, or open a TCP connection, to an address that is not this machine's.

    A UDP ``connect`` sends no packet (Ray's C++ core uses one to read the routing table), so only
    TCP connects and datagrams actually sent count.
    """
    found = []
    for line in strace_lines:
        if not any(call in line for call in ("connect(", "sendto(", "sendmsg(", "sendmmsg(")):
            continue
        for match in _ADDRESS.finditer(line):
            text = match.group(1) or match.group(2)
            address = ipaddress.ip_address(text)
            mapped = getattr(address, "ipv4_mapped", None)
            address = mapped or address
            if address.is_loopback or str(address) in allowed:
                continue
            if "connect(" in line and "<UDP" in line:
                continue
            found.append(line.strip())
    return found


def test_classifier_flags_tcp_and_datagrams_but_not_udp_route_probes():
    lines = [
        '12 connect(5<TCP:[1]>, {sa_family=AF_INET, sin_port=htons(80), sin_addr=inet_addr("169.254.169.254")}, 16) = -1',
        '12 sendto(6<UDP:[2]>, "x", 1, 0, {sa_family=AF_INET, sin_port=htons(53), sin_addr=inet_addr("10.0.0.53")}, 16) = 1',
        '12 connect(7<UDP:[3]>, {sa_family=AF_INET, sin_port=htons(53), sin_addr=inet_addr("8.8.8.8")}, 16) = 0',
        '12 connect(8<TCP:[4]>, {sa_family=AF_INET, sin_port=htons(6379), sin_addr=inet_addr("127.0.0.1")}, 16) = 0',
    ]
    flagged = outbound(lines, allowed=set())
    assert len(flagged) == 2 and "169.254.169.254" in flagged[0] and "10.0.0.53" in flagged[1]


@pytest.mark.skipif(shutil.which("strace") is None, reason="needs strace (scripts/setup.sh installs it)")
def test_local_ray_started_by_vlmix_stays_on_this_machine(tmp_path):
    script = textwrap.dedent(
        """
        import time, ray
        from pipelines.runtime import ensure_ray
        ensure_ray(None, num_cpus=1)
        assert ray.get(ray.remote(lambda: 41 + 1).remote()) == 42
        time.sleep(8)  # the head's usage-stats module runs its checks shortly after start
        ray.shutdown()
        """
    )
    trace = tmp_path / "trace.txt"
    env = {**os.environ, "HOME": str(tmp_path), "PYTHONPATH": str(REPO),  # a home with no bootstrap file yet
           # A cluster address in the environment (a `ray start` node's, or left from another job): a local
           # run (ray.address null) must start its own Ray, not join that one (nor try to, off this machine).
           "RAY_ADDRESS": "10.255.255.1:6379"}
    subprocess.run(
        ["strace", "-f", "-qq", "-yy", "-e", "trace=connect,sendto,sendmsg,sendmmsg", "-o", str(trace),
         sys.executable, "-c", script],
        env=env, cwd=REPO, check=True, timeout=180, capture_output=True,
    )
    lines = trace.read_text().splitlines()
    assert any("127.0.0.1" in line or "192." in line for line in lines)  # the trace saw Ray's own traffic
    assert outbound(lines, own_addresses()) == []
    assert (tmp_path / "ray_bootstrap_config.yaml").exists()
