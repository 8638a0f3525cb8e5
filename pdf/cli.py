"""``vlmix pdf``: what the PDF stage made of a source's pages, over every unit it finished.

    vlmix pdf --root /data/mix                        # every pdf source under the root
    vlmix pdf --root s3://bucket/mix --source common_crawl_pdf --json

Pages from the text layer and to OCR, why each OCR page's text layer was not its text, what was
dropped and why, the text-layer pages' languages, and the rendering time (:mod:`pdf.stats`).
"""

from __future__ import annotations

import argparse
import json
import sys

from pipelines.storage import Storage

from .stats import STATS_DIR, lines, pdf_sources, read_stats


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="vlmix pdf", description=__doc__.splitlines()[0].split(": ", 1)[1])
    p.add_argument("--root", required=True, help="storage root: a local path or an fsspec URI (s3://...)")
    p.add_argument("--source", action="append", help="only this source (repeatable); default every pdf source")
    p.add_argument("--storage-options", type=json.loads, default={}, metavar="JSON",
                   help='fsspec options for the root, e.g. \'{"endpoint_url": "http://127.0.0.1:9000"}\'')
    p.add_argument("--json", action="store_true", help="print the stats as JSON")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    storage = Storage(args.root, args.storage_options)
    names = args.source or pdf_sources(storage)
    if not names:
        print(f"vlmix pdf: no PDF stage unit has finished under {storage.path(STATS_DIR)}", file=sys.stderr)
        return 1
    try:
        stats = {name: read_stats(storage, name) for name in names}
    except FileNotFoundError as err:
        print(f"vlmix pdf: {err}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(stats, indent=2, ensure_ascii=False))
    else:
        for name, s in stats.items():
            print("\n".join(lines(name, s)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
