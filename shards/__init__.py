"""WebDataset shards of a mixture: the writer, the manifest, verification, export, the report.

>>> from shards import ShardSettings, mix_and_write, verify  # doctest: +SKIP
"""

from shards.export import export_internvl
from shards.manifest import read_manifest
from shards.verify import VerifyResult, verify
from shards.write import ShardSettings, ShardWriteError, mix_and_write
from shards.writer import ShardInfo, ShardWriter

__all__ = [
    "ShardInfo",
    "ShardSettings",
    "ShardWriteError",
    "ShardWriter",
    "VerifyResult",
    "export_internvl",
    "mix_and_write",
    "read_manifest",
    "verify",
]
