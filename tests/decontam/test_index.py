"""The index that decides which images are compared: the sampled layout a large run uses finds the transformed
copies; its stated recall is what it finds; crowds of one picture are handled; samples of several images."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pyarrow.parquet as pq

from decontam import DecontamSettings, run_decontam
from decontam.context import DecontamContext
from decontam.index import band_rows
from decontam.keys import cost, keys, pair_recall, plan, sampled_masks
from decontam.match import _matches
from decontam.phash import distances
from pipelines.layout.removals import removals_path
from pipelines.layout.task_table import list_task_tables
from pipelines.storage import Storage
from tests.decontam.images import TRANSFORMS, encode, hashed_copies, picture
from tests.decontam.tables import sample, write


def _found_pairs(hashes: np.ndarray, ids: list[str], richness: list[int], images: int) -> set[frozenset]:
    """The pairs the match pass reports over ``hashes``, indexed as for a run of ``images`` images."""
    settings = DecontamSettings(near_duplicates={"index": "sampled"})
    ctx = DecontamContext("/unused", {}, "w", settings, 1, 1, (), images)
    n = len(hashes)
    rows = band_rows(ctx, [tuple(h) for h in hashes.tolist()], [0] * n, list(range(n)), ids, ["captioning"] * n, ["en"] * n, richness,
                     [0] * n, [0] * n, [1] * n)
    found = _matches(rows, ctx, Counter(), []).to_pylist()
    return {frozenset((f["id"], f["kept"])) for f in found}


def test_the_sampled_index_of_a_million_images_finds_the_transformed_copies():
    hashes, copies = hashed_copies()
    n = len(hashes)
    ids = [f"o{i}" for i in range(n)] + [f"c{t}-{i}" for t in range(len(TRANSFORMS)) for i in range(n)]
    # Originals richer than copies: each found pair names the copy as removed, the original as kept.
    found = _found_pairs(np.concatenate([hashes, copies.reshape(-1, 2)]), ids, [2] * n + [1] * (copies.size // 2),
                         1_000_000)
    expected = {frozenset((f"o{i}", f"c{t}-{i}")) for t in range(len(TRANSFORMS)) for i in range(n)}
    # Within the distances by brute force: 0.968 of the copies (bench/dedup); through the index as many less
    # the few pairs 8-10 bits apart its bands miss.
    assert len(found & expected) / len(expected) >= 0.95
    # Nothing else: every pair found is of one picture (an original and a copy, or two copies).
    def picture_of(key: str) -> str:
        return key[1:] if key.startswith("o") else key.split("-")[1]

    assert all(len({picture_of(key) for key in pair}) == 1 for pair in found)


def test_the_stated_recall_is_what_the_sampled_bands_find():
    rng = np.random.default_rng(5)
    masks = sampled_masks(14, 3)
    for distance in (6, 10):
        base = rng.integers(0, 2**63, 3000, dtype=np.uint64)
        bits = np.argsort(rng.random((len(base), 63)), axis=1)[:, :distance].astype(np.uint64)
        copy = base ^ np.bitwise_or.reduce(np.uint64(1) << bits, axis=1)
        assert (distances(base, copy) == distance).all()
        shared = (keys(base, masks) == keys(copy, masks)).any(axis=1).mean()
        assert abs(shared - pair_recall(distance, 14, 3)) < 0.03, (distance, shared)


def test_a_plan_that_ends_mid_ordering_finds_what_its_recall_says():
    """The planner may stop mid ordering (10 bands of 14 bits: two orderings of 4, then 2 of a third); the
    recall it counts on is what those bands find."""
    rng = np.random.default_rng(6)
    masks = sampled_masks(14, 0, bands=10)
    assert len(masks) == 10 and (masks[:8] == sampled_masks(14, 2)).all()
    base = rng.integers(0, 2**63, 4000, dtype=np.uint64)
    bits = np.argsort(rng.random((len(base), 63)), axis=1)[:, :10].astype(np.uint64)
    copy = base ^ np.bitwise_or.reduce(np.uint64(1) << bits, axis=1)
    shared = (keys(base, masks) == keys(copy, masks)).any(axis=1).mean()
    assert abs(shared - pair_recall(10, 14, bands=10)) < 0.03, shared


def test_the_plan_holds_the_recall_at_the_least_modelled_cost_and_grows_slower_than_n_to_the_1_4():
    for images in (10_000, 100_000, 1_000_000, 10_000_000, 100_000_000):
        bits, bands = plan(10, images, 0.8)
        assert pair_recall(10, bits, bands=bands) >= 0.8
        # No other width is cheaper in the model; the former rule (log2 N - 6 bits, whole orderings) costs more.
        assert all(cost(images, *plan(10, images, 0.8, other)) >= cost(images, bits, bands) for other in range(8, 32))
        former = max(8, round(np.log2(images)) - 6)
        orderings = next(p for p in range(1, 64) if pair_recall(10, former, p) >= 0.8)
        assert cost(images, former, orderings * (63 // former)) >= cost(images, bits, bands)
        if images < 100_000_000:
            ten = plan(10, 10 * images, 0.8)
            assert cost(10 * images, *ten) / cost(images, bits, bands) < 10 ** 1.4, images


def _removed(storage: Storage, dataset: str) -> dict[str, dict]:
    rows = []
    for path in list_task_tables(storage, [dataset])[dataset]:
        rows += pq.read_table(removals_path(storage, path), filesystem=storage.fs).to_pylist()
    return {row["id"]: row for row in rows}


def test_a_crowd_of_one_picture_keeps_only_the_richest(tmp_path):
    """40 copies of one picture share every key (more than the window of 16): all but the richest go, and
    the crowd is counted."""
    data = encode(picture(7))
    answers = np.random.default_rng(1).permutation(40)
    write(tmp_path, "web", [sample(tmp_path, "web", f"s{i}", data, "Describe.", "x" * (int(answers[i]) + 1))
                            for i in range(40)] + [sample(tmp_path, "web", "other", encode(picture(8)), "Describe.", "y")])
    summary = run_decontam(tmp_path, DecontamSettings(near_duplicates={"window": 16}))
    richest = f"web-s{int(np.argmax(answers))}"
    removed = _removed(Storage(str(tmp_path)), "web")
    assert set(removed) == {f"web-s{i}" for i in range(40)} - {richest}
    richness = {f"web-s{i}": int(answers[i]) for i in range(40)}
    assert all(richness[row["kept"]] > richness[key] for key, row in removed.items())
    assert summary["index"]["crowded_keys"] >= 1


def test_samples_of_several_images_are_near_duplicates_when_every_image_matches(tmp_path):
    """The rule: two samples with as many images each are near-duplicates when every image of each is within
    the distance of one of the other's, in any order; one image in common is not enough, nor is a
    single-image sample of one of the pictures."""
    one, two, three = picture(11), picture(12), picture(13)
    write(tmp_path, "web", [sample(tmp_path, "web", "pair", [encode(one), encode(two)], "Compare.", "Two scenes."),
                            sample(tmp_path, "web", "half", [encode(one), encode(three)], "Compare.", "Two scenes."),
                            sample(tmp_path, "web", "single", encode(one), "Compare.", "One scene.")])
    write(tmp_path, "coco", [sample(tmp_path, "coco", "swapped", [encode(two, quality=60), encode(one.resize((160, 120)))],
                                    "Compare.", "Two scenes.")])
    summary = run_decontam(tmp_path, DecontamSettings(), order=["web", "coco"])
    storage = Storage(str(tmp_path))
    coco, web = _removed(storage, "coco"), _removed(storage, "web")
    assert set(coco) == {"coco-swapped"} and coco["coco-swapped"]["kept"] == "web-pair"
    assert 0 <= coco["coco-swapped"]["distance"] <= 10 and web == {}
    assert summary["removed"] == {"coco": {"near_duplicate": 1}, "web": {}}
