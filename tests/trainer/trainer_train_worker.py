"""Run by tests/trainer/test_world_size.py in each spawned process: ``train()`` on gloo, loopback.

The ranks meet through a file rather than a TCP port picked in advance.
"""

import json
import os

import torch
import torch.distributed as dist


def run(rank: int, world_size: int, rendezvous: str, config_path: str, result_path: str) -> None:
    os.environ.update(GLOO_SOCKET_IFNAME="lo", RANK=str(rank), WORLD_SIZE=str(world_size))
    torch.set_num_threads(1)
    from trainer.train import TrainConfig, train

    dist.init_process_group("gloo", init_method=f"file://{rendezvous}", rank=rank, world_size=world_size)
    try:
        with open(config_path) as source:
            history = train(TrainConfig.model_validate(json.load(source)))
        if rank == 0:
            with open(result_path, "w") as out:
                json.dump(history, out)
    finally:
        dist.destroy_process_group()
