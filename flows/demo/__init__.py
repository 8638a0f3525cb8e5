"""Demo sources: generated images served on loopback, so the real download path runs offline."""

from flows.demo.generate import BAD_KINDS, BASE_COUNTS, generate
from flows.demo.server import DemoServer, serving, write_url_lists

__all__ = ["BAD_KINDS", "BASE_COUNTS", "DemoServer", "generate", "serving", "write_url_lists"]
