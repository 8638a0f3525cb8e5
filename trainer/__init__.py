"""The bundled InternVL-1.5 trainer: reads vlmix shards, trains stage 1 or stage 2.

What users call (imported lazily, so ``import trainer`` needs no torch):

- :func:`trainer.tiling.plan_grid`, :func:`trainer.tiling.tile_image`: dynamic high resolution
- :func:`trainer.model.build_model`, ``PRESETS``: ``internvl-1.5-26b``, ``mini-internvl-2b``, ``tiny``
- :func:`trainer.recipes.stage1`, :func:`trainer.recipes.stage2`: the public recipes as configs
- :func:`trainer.train.train`: run (or resume) training on every rank
- :func:`trainer.launch.launch_ray`: the same on a Ray cluster; ``torchrun -m trainer.launch``
- :func:`trainer.cli.main`: ``vlmix train ...``

>>> from trainer import stage2, train  # doctest: +SKIP
>>> train(stage2("data/shards", "tokenizers/internlm2", steps=5000))  # doctest: +SKIP
"""

from pipelines._imports import lazy_exports

_LAZY = {
    "plan_grid": "trainer.tiling",
    "tile_image": "trainer.tiling",
    "build_model": "trainer.model",
    "PRESETS": "trainer.model",
    "stage1": "trainer.recipes",
    "stage2": "trainer.recipes",
    "TrainConfig": "trainer.train",
    "train": "trainer.train",
    "launch_ray": "trainer.launch",
}
__getattr__ = lazy_exports(__name__, _LAZY, extra="train")
__all__ = sorted(_LAZY)
