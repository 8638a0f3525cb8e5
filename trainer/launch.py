"""Launchers: torchrun and Ray Train run the same :func:`trainer.train.train` on every rank.

torchrun (one node, 8 GPUs)::

    torchrun --nproc-per-node 8 -m trainer.launch config.json

Ray Train (local Ray, or a cluster by its address)::

    from trainer.launch import launch_ray
    launch_ray(config, num_workers=16, use_gpu=True, ray_address="ray://head:10001")
"""

import json
import sys
from pathlib import Path

from pipelines._imports import require
from pipelines.runtime import ensure_ray

from .train import TrainConfig, train


def _train_from_dict(config: dict) -> None:
    """Ray Train's per-worker entry: it has already joined the process group."""
    train(TrainConfig.model_validate(config))


def launch_ray(config: TrainConfig, num_workers: int, use_gpu: bool = False, ray_address: str | None = None):
    """Train on ``num_workers`` Ray workers with Ray Train's ``TorchTrainer``; returns its result.

    ``config.out_dir`` must be storage every worker can reach (a shared file system).
    """
    ray_train = require("ray.train", "train")
    ray_torch = require("ray.train.torch", "train")
    ensure_ray(ray_address)  # local Ray on loopback, or the cluster at the address
    out_dir = Path(config.out_dir).resolve()
    config = config.model_copy(update={"out_dir": str(out_dir)})
    trainer = ray_torch.TorchTrainer(
        _train_from_dict,
        train_loop_config=config.model_dump(mode="json"),
        scaling_config=ray_train.ScalingConfig(num_workers=num_workers, use_gpu=use_gpu),
        run_config=ray_train.RunConfig(name=f"vlmix-{config.recipe}", storage_path=str(out_dir / "ray")),
    )
    return trainer.fit()


def main(argv: list[str] | None = None) -> None:
    """``torchrun ... -m trainer.launch CONFIG.json``: every rank reads the same config file."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        raise SystemExit("usage: torchrun [torchrun options] -m trainer.launch CONFIG.json")
    train(TrainConfig.model_validate(json.loads(Path(args[0]).read_text())))


if __name__ == "__main__":
    main()
