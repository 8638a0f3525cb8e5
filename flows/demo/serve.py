"""Serving a config's demo sources for as long as a stage needs them."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

from flows.config import Config

log = logging.getLogger(__name__)


@contextlib.contextmanager
def serve_for_config(config: Config) -> Iterator[str | None]:
    """When the config has a ``demo`` section, generate and serve its sources; yield the base URL.

    A config without one (real sources), or whose sources include no URL list, yields None and serves
    nothing.
    """
    if config.demo is None or not any(source.kind == "url_list" for source in config.sources):
        yield None  # real sources, or a demo with no URL list (configs/demo-finetune.yaml): nothing to serve
        return
    from flows.demo.server import serving

    demo = config.demo
    with serving(demo.directory, seed=config.seed, scale=demo.scale, bad_url_share=demo.bad_url_share,
                 port=demo.port) as server:
        log.info("demo sources served at %s", server.base_url)
        yield server.base_url
