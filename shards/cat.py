"""``python shards/cat.py URI``: stream one file from any fsspec location to stdout.

The command behind :func:`shards.reader.shard_urls`' ``pipe:`` URLs, so ``webdataset`` reads
shards on object storage without a handler of its own. It imports only fsspec (run it by path,
not with ``-m``, which would import the whole ``shards`` package first). ``--options JSON``
passes fsspec storage options; the endpoint and credentials otherwise come from the environment.

Filesystems that can stream (s3fs) are read with one request, chunk by chunk; others through
ranged reads of ``BLOCK`` bytes. Either way memory stays flat whatever the file's size.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys

import fsspec
from fsspec.asyn import AsyncFileSystem

CHUNK = 1 << 20
BLOCK = 8 << 20  # bytes per ranged read where the filesystem cannot stream
SIGPIPE_STATUS = 141  # what a shell reports for a reader that went away; webdataset ignores it


def copy_to(out, uri: str, options: dict) -> None:
    protocol = fsspec.utils.get_protocol(uri)
    if issubclass(fsspec.get_filesystem_class(protocol), AsyncFileSystem):
        try:
            asyncio.run(_stream(out, uri, options))
            return
        except NotImplementedError:  # an async filesystem without open_async
            pass
    fs, path = fsspec.core.url_to_fs(uri, **options)
    with fs.open(path, "rb", block_size=BLOCK) as source:
        while block := source.read(CHUNK):
            out.write(block)


async def _stream(out, uri: str, options: dict) -> None:
    fs, path = fsspec.core.url_to_fs(uri, asynchronous=True, **options)
    if hasattr(fs, "set_session"):
        await fs.set_session()
    source = await fs.open_async(path, "rb")
    try:
        while block := await source.read(CHUNK):
            out.write(block)
    finally:
        await source.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="shards/cat.py", description=__doc__.splitlines()[0])
    parser.add_argument("uri")
    parser.add_argument("--options", default="{}", help="fsspec storage options as a JSON object")
    args = parser.parse_args(argv)
    out = sys.stdout.buffer
    try:
        copy_to(out, args.uri, json.loads(args.options))
        out.flush()
    except (FileNotFoundError, PermissionError) as err:
        print(f"shards/cat.py: {args.uri}: {type(err).__name__}: {err}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # the reader stopped early (a trainer that has its steps): not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), out.fileno())  # no second error when Python exits
        return SIGPIPE_STATUS
    return 0


if __name__ == "__main__":
    sys.exit(main())
