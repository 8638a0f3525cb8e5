"""Run by tests/trainer/test_fsdp.py in each of two spawned processes (gloo on loopback).

The ranks meet through a file rather than a TCP port picked in advance, which another process
could take between the pick and the bind.
"""

import os
import sys

import torch
import torch.distributed as dist


def run(rank: int, world_size: int, rendezvous: str, payload_path: str, result_path: str) -> None:
    os.environ.update(GLOO_SOCKET_IFNAME="lo", RANK=str(rank), WORLD_SIZE=str(world_size))
    torch.set_num_threads(1)
    sys.path.insert(0, os.path.dirname(__file__))
    from trainer_steps import run_steps

    dist.init_process_group("gloo", init_method=f"file://{rendezvous}", rank=rank, world_size=world_size)
    try:
        payload = torch.load(payload_path, weights_only=False)
        steps = [[step[rank]] for step in payload["steps"]]  # this rank's micro-batch of each step
        losses = run_steps(payload["vocab_size"], payload["image_token_id"], steps)
        if rank == 0:
            torch.save(losses, result_path)
    finally:
        dist.destroy_process_group()
