"""Near-duplicate images across sources: found through the band index, one kept by the documented rule."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest

from decontam import DecontamSettings, run_decontam
from decontam.keys import exact_masks, keys
from decontam.phash import distances
from decontam.settings import NearDuplicates
from pipelines.layout.removals import removals_path
from pipelines.layout.task_table import list_task_tables
from pipelines.storage import Storage
from tests.decontam.images import TRANSFORMS, encode, hashed_copies, matched, picture
from tests.decontam.tables import sample, write


def _removed(storage: Storage, dataset: str) -> dict[str, dict]:
    rows = []
    for path in list_task_tables(storage, [dataset])[dataset]:
        rows += pq.read_table(removals_path(storage, path), filesystem=storage.fs).to_pylist()
    return {row["id"]: row for row in rows}


def test_transformed_copies_are_found_and_distinct_pictures_are_not():
    """Recall over resize, JPEG 60, 5% crop, brightness +-10% and a border; no false match among distinct pictures."""
    hashes, copies = hashed_copies()
    rule = NearDuplicates()
    found = {name: np.mean(matched(copies[number], hashes, rule.max_distance, rule.confirm_distance))
             for number, name in enumerate(TRANSFORMS)}
    # bench/dedup over 400 pictures: 0.968 in all, 0.945 for the weakest (5% crop).
    assert np.mean(list(found.values())) >= 0.95 and min(found.values()) >= 0.9, found
    pairs = np.triu_indices(len(hashes), 1)
    assert matched(hashes[pairs[0]], hashes[pairs[1]], rule.max_distance, rule.confirm_distance).mean() <= 0.001


def test_the_dhash_confirms_a_phash_match_and_refuses_a_false_one(tmp_path):
    """Two distinct pictures whose pHashes are close but dHashes far: a match by pHash alone
    (``confirm_distance: null``), none with the dHash's confirmation; a re-encoded copy stands either way."""
    hashes, _ = hashed_copies()
    pairs = np.triu_indices(len(hashes), 1)
    phash_apart = distances(hashes[pairs[0], 0], hashes[pairs[1], 0])
    closest = int(np.argmin(phash_apart))
    one, two = int(pairs[0][closest]), int(pairs[1][closest])
    limit = int(phash_apart[closest])  # the pHash distance at which these two distinct pictures would match
    assert distances(hashes[one, 1], hashes[two, 1]) > 16
    write(tmp_path, "web", [sample(tmp_path, "web", "one", encode(picture(one)), "Describe.", "Shapes one."),
                            sample(tmp_path, "web", "copy", encode(picture(one), quality=60), "Describe.", "Shapes."),
                            sample(tmp_path, "web", "two", encode(picture(two)), "Describe.", "Shapes two.")])
    removed = {}
    for confirm in (None, 16):
        settings = DecontamSettings(near_duplicates={"max_distance": limit, "confirm_distance": confirm})
        run_decontam(tmp_path, settings, order=["web"])
        removed[confirm] = set(_removed(Storage(str(tmp_path)), "web"))
    assert removed[16] == {"web-copy"}
    assert removed[None] == {"web-copy", "web-two"}


def test_pairs_within_the_distance_share_a_band():
    """Pigeonhole: with max_distance + 1 bands, every pair within max_distance agrees on a band key."""
    rng = np.random.default_rng(3)
    base = rng.integers(0, 2**63, 500, dtype=np.uint64)
    flipped = base.copy()
    for i in range(len(base)):
        for bit in rng.choice(64, 10, replace=False):
            flipped[i] ^= np.uint64(1 << int(bit))
    assert (distances(base, flipped) == 10).all()
    a, b = keys(base, exact_masks(11)), keys(flipped, exact_masks(11))
    assert (a == b).any(axis=1).all()


@pytest.mark.parametrize("index", ["auto", "sampled"])
def test_near_duplicate_across_two_sources_keeps_the_richer_then_the_first_listed(tmp_path, index):
    shared, other = picture(1), picture(2)
    # web (listed first) and coco hold the same pictures re-encoded; coco's caption of picture 2 is richer.
    write(tmp_path, "web", [sample(tmp_path, "web", "a", encode(shared), "Describe.", "A cat."),
                            sample(tmp_path, "web", "b", encode(other), "Describe.", "Shapes."),
                            sample(tmp_path, "web", "c", encode(picture(3)), "Describe.", "Alone.")])
    write(tmp_path, "coco", [
        sample(tmp_path, "coco", "a", encode(shared.resize((160, 120)), quality=70), "Describe.", "A dog."),
        sample(tmp_path, "coco", "b", encode(other, quality=60), "Describe.", "Red and blue shapes on green."),
        # The same picture in another task stays (scope image_task_language).
        sample(tmp_path, "coco", "ocr", encode(shared), "Read the text.", "none", task="ocr_large")])
    summary = run_decontam(tmp_path, DecontamSettings(near_duplicates={"index": index}), order=["web", "coco"])
    storage = Storage(str(tmp_path))
    web, coco = _removed(storage, "web"), _removed(storage, "coco")
    # Equal richness (6 characters each): the source listed first keeps its sample.
    assert set(coco) == {"coco-a"} and coco["coco-a"]["kept"] == "web-a"
    assert coco["coco-a"]["reason"] == "near_duplicate" and 0 <= coco["coco-a"]["distance"] <= 10
    # The richer annotation wins over the order of the sources.
    assert set(web) == {"web-b"} and web["web-b"]["kept"] == "coco-b"
    assert summary["removed"] == {"coco": {"near_duplicate": 1}, "web": {"near_duplicate": 1}}


def test_near_duplicates_can_be_turned_off(tmp_path):
    shared = picture(1)
    write(tmp_path, "web", [sample(tmp_path, "web", "a", encode(shared), "Describe.", "A cat.")])
    write(tmp_path, "coco", [sample(tmp_path, "coco", "a", encode(shared), "Describe.", "A dog.")])
    summary = run_decontam(tmp_path, DecontamSettings(near_duplicates={"enabled": False}))
    assert summary["removed"] == {"coco": {}, "web": {}}


@pytest.mark.parametrize("bands", [0, 65])
def test_bad_band_count_is_refused(bands):
    with pytest.raises(ValueError, match="bands"):
        NearDuplicates(bands=bands)


@pytest.mark.parametrize(("options", "named"), [({"index": "sampled", "bands": 5}, "bands"),
                                                ({"index": "exact", "partitions": 4}, "partitions"),
                                                ({"index": "fast"}, "index"), ({"recall": 1.0}, "recall")])
def test_options_of_the_other_index_layout_are_refused(options, named):
    with pytest.raises(ValueError, match=named):
        NearDuplicates(**options)


def test_an_image_that_does_not_decode_is_counted_and_its_sample_left_alone(tmp_path):
    from pipelines.layout.task_table import ImageRef, Picture, TaskSample, human_turn

    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "bad.jpg").write_bytes(b"not a picture at all")
    bad = TaskSample("web", "bad", "captioning", "en", [Picture(ImageRef("images/bad.jpg", 0, 20), "jpg", "x" * 64, 8, 8)],
                     [human_turn("Describe."), {"from": "gpt", "value": "?"}])
    write(tmp_path, "web", [bad, sample(tmp_path, "web", "good", encode(picture(1)), "Describe.", "Shapes.")])
    summary = run_decontam(tmp_path, DecontamSettings())
    assert summary["unreadable"]["training"] == {"image_unhashable": 1} and summary["removed"] == {"web": {}}
