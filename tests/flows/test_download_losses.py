"""The mixer's kept-share floor sees the URLs a source failed to download, as the download stage
counted them, for the source and each of its translations; rows the user's filters removed are not losses."""

from __future__ import annotations

from collections import Counter

from download.context import STATS_FILE
from download.stats import DownloadStats
from flows.assemble import download_losses, mix_settings
from flows.config import load_config
from pipelines.layout.raw import RAW_DIR
from pipelines.storage import Storage


def test_failed_downloads_reach_the_floor_check(tmp_path):
    config_file = tmp_path / "config.yaml"
    config_file.write_text(f"""
storage: {{root: "{tmp_path / 'root'}"}}
tasks: {{captioning: {{share: 1.0}}}}
languages: {{zh: {{name: Chinese, scripts: [Han]}}}}
mixture: {{total_samples: 10}}
sources:
  - {{name: pictures, kind: url_list, task: captioning, language: en, translate_to: [zh], locations: ["{tmp_path}/u.parquet"]}}
  - {{name: others, kind: url_list, task: captioning, language: en, locations: ["{tmp_path}/v.parquet"]}}
""")
    config = load_config(config_file)
    assert download_losses(config) == {}  # nothing downloaded yet
    storage = Storage(str(tmp_path / "root"))
    stats = DownloadStats("pictures", urls=10, filtered=Counter(too_small=2), downloaded=5,
                          failed=Counter(http_404=2, timeout=1))
    stats.check_balance()
    storage.write_json(storage.path(RAW_DIR, "pictures", STATS_FILE), stats.to_json())
    clean = DownloadStats("others", urls=4, downloaded=4)
    storage.write_json(storage.path(RAW_DIR, "others", STATS_FILE), clean.to_json())
    losses = {"download:http_404": 2, "download:timeout": 1}
    assert download_losses(config) == {"pictures": losses, "pictures-zh": losses}
    assert mix_settings(config, download_losses(config)).upstream_losses == download_losses(config)
