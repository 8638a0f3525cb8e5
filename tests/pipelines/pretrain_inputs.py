"""A tiny copy of every source of ``configs/pretrain.yaml``, in each dataset's published format.

>>> with make_pretrain_inputs(tmp_path / "inputs", per_source=6, seed=0) as inputs:  # doctest: +SKIP
...     run(config, overrides=[f"paths.data={inputs.data_dir}", ...])

Laid out under ``data_dir`` exactly where the config's ``locations`` / ``image_root`` look, each in
the format of the copy named (columns, types and part-file names as published):

- laion_en: ``laion2b-en/part-00000-….snappy.parquet`` (laion/relaion2B-en-research-safe)
- laion_zh: ``laion2b-multi-zh/part-00000-….snappy.parquet`` (laion/laion2B-multi-joined:
  URL/TEXT/WIDTH/HEIGHT/LANGUAGE, with de and ja rows besides zh)
- coyo: ``coyo-700m/part-00000-….snappy.parquet`` (kakaobrain/coyo-700m)
- grit_caption (and grit_detection, which reads its images): ``grit-20m/coyo_0_snappy.parquet``
  (zzliang/GRIT; ``ref_exps`` rows are [start, end, x1, y1, x2, y2, score], corners as fractions)
- wukong_ocr: ``wukong/train-00000-of-00032.parquet`` (wanng/wukong100m: url, caption)
- laioncoco_ocr: ``laion-coco/part-00000-….snappy.parquet`` (laion/laion-coco)
- objects365: ``objects365/zhiyuan_objv2_train.json`` (Objects365 v2 COCO JSON); its file_name
  ``images/v1/patch8/objects365_v1_00420917.jpg`` is unpacked from ``train/patch8.tar.gz`` as
  ``images/train/patch8/objects365_v1_00420917.jpg``: image_root + the last two path parts
- coco_caption, textcaps and the OCR-small sets: the annotation files as their publishers ship them
  (``tests/tasks/pretrain_published.py``: Karpathy's dataset_coco.json, TextCaps JSON, LSVT/ArT
  labels, ReCTS and RCTW-17 files per image, CTW JSONL, COCO-Text/TextOCR, SynthDoG Parquet with
  embedded images, DocVQA/InfoVQA/ST-VQA/ChartQA/PlotQA questions, MMC-Inst JSONL), with illegible
  regions, several answers, a missing image and Chinese text among them
- all_seeing: ``all-seeing/as_pretrain_10m.json``, AS-V2's JSON array of grounded conversations
- common_crawl_pdf: PDF files under ``cc-pdf/`` (zips of Common Crawl PDFs unpacked): English and
  Chinese pages with a text layer, and a scanned page without one (it goes through the OCR stage)

The URL lists point at ``base_url``: a ThreadingHTTPServer on 127.0.0.1 serving ``_web/`` (real
JPEGs, plus one WebP, one RGBA PNG and one CMYK JPEG). A few rows are there to be dropped: listed
too small, ``punsafe`` 0.9, LAION-multi rows in other languages, OCR-source images with no text.
Captions, category names and conversation turns come from a closed vocabulary, so
``translations["zh"]`` holds real Chinese for every English text a translation could ask for.
"""

from __future__ import annotations

import contextlib
import functools
import json
import random
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "ocr"))  # ocr_synth: pages PP-OCR reads
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tasks"))  # the published annotation copies
from ocr_synth import EN_LINES, ZH_LINES, render_page  # noqa: E402
from pretrain_published import write as write_published  # noqa: E402

# File names as the publishers name their parts (one part each here).
URL_LIST_FILES = {
    "laion_en": "laion2b-en/part-00000-339dc23d-0869-4dc0-9390-b4036fcc80c2-c000.snappy.parquet",
    "laion_zh": "laion2b-multi-zh/part-00000-fcd86c9b-36f4-49ff-bea1-8c9a0e029fb7-c000.snappy.parquet",
    "coyo": "coyo-700m/part-00000-17da4908-939c-46e5-91d0-15f256041956-c000.snappy.parquet",
    "grit_caption": "grit-20m/coyo_0_snappy.parquet",
    "wukong_ocr": "wukong/train-00000-of-00032.parquet",
    "laioncoco_ocr": "laion-coco/part-00000-2256f782-126f-4dc6-b9c6-e6757637749d-c000.snappy.parquet",
}
OBJECTS365_JSON = "objects365/zhiyuan_objv2_train.json"
OBJECTS365_IMAGES = "objects365/images/train"
CC_PDF_DIRS = ("cc-pdf/0000", "cc-pdf/0001")

COLOURS = {  # name -> (RGB, Chinese)
    "red": ((220, 40, 40), "红色"), "green": ((40, 170, 70), "绿色"), "blue": ((40, 80, 210), "蓝色"),
    "yellow": ((240, 210, 40), "黄色"), "orange": ((245, 140, 30), "橙色"), "purple": ((140, 60, 180), "紫色"),
    "black": ((20, 20, 20), "黑色"), "white": ((245, 245, 245), "白色"), "grey": ((128, 128, 128), "灰色"),
}
SHAPES = {"circle": "圆形", "square": "正方形", "triangle": "三角形"}
CAPTION_TEMPLATES = (  # {0} the listed objects, {1} the background colour, {2} the same with its article
    ("{0} on {2} background", "{1}背景上的{0}"),
    ("A photo of {0} over a plain {1} backdrop", "一张在纯{1}背景上有{0}的照片"),
    ("Simple drawing: {0}, {1} background", "简单的画：{0}，{1}背景"),
)
# Objects365 v2 category ids and names as published, with Chinese names.
O365_CATEGORIES = {
    1: ("Person", "人"), 3: ("Chair", "椅子"), 5: ("Hat", "帽子"), 6: ("Car", "汽车"), 7: ("Lamp", "灯"),
    9: ("Bottle", "瓶子"), 10: ("Desk", "书桌"), 11: ("Cup", "杯子"), 12: ("Street Lights", "路灯"),
    13: ("Cabinet/shelf", "柜子/架子"), 16: ("Plate", "盘子"), 19: ("Book", "书"), 22: ("Boat", "船"),
    24: ("Flower", "花"), 25: ("Bench", "长椅"),
}
OTHER_LANGUAGE_CAPTIONS = {"de": "Ein roter Kreis auf weißem Hintergrund", "ja": "白い背景の赤い丸"}
ALL_SEEING_JSON = "all-seeing/as_pretrain_10m.json"
PUBLISHED_SOURCES = {  # config source -> preset whose tiny published copy it reads (tests/tasks/pretrain_published.py)
    "coco_caption": "coco_karpathy", "textcaps": "textcaps", "mmc_inst": "mmc_inst", "lsvt": "lsvt",
    "st_vqa": "st_vqa", "rctw17": "rctw17", "rects": "rects", "art": "art", "synthdog": "synthdog",
    "coco_text": "coco_text", "chartqa": "chartqa", "ctw": "ctw", "docvqa": "docvqa", "textocr": "textocr",
    "plotqa": "plotqa", "infovqa": "infovqa",
}
@dataclass
class PretrainInputs:
    """What ``make_pretrain_inputs`` wrote; ``base_url`` serves the URL lists' images while open."""

    data_dir: Path
    base_url: str
    sources: dict[str, int] = field(default_factory=dict)
    translations: dict[str, dict[str, str]] = field(default_factory=lambda: {"zh": {}})


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - keep test output quiet
        pass


class _ImageServer(ThreadingHTTPServer):
    request_queue_size = 256  # img2dataset opens dozens of connections at once per worker
    daemon_threads = True


@contextlib.contextmanager
def make_pretrain_inputs(data_dir: str | Path, per_source: int = 6, seed: int = 0) -> Iterator[PretrainInputs]:
    """Write every source of configs/pretrain.yaml under ``data_dir``; serve the images until exit."""
    data_dir = Path(data_dir).resolve()
    web = data_dir / "_web"
    web.mkdir(parents=True, exist_ok=True)
    handler = functools.partial(_QuietHandler, directory=str(web))
    server = _ImageServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, name="pretrain-inputs-http", daemon=True)
    thread.start()
    try:
        inputs = PretrainInputs(data_dir, f"http://127.0.0.1:{server.server_address[1]}")
        _Writer(inputs, per_source, seed).write_all()
        yield inputs
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


# ---- images --------------------------------------------------------------------------------------


@dataclass
class Scene:
    image: Image.Image
    background: str
    objects: list[tuple[str, tuple[int, int, int, int]]]  # ("red circle", pixel box x1, y1, x2, y2)


def draw_scene(rng: random.Random, min_objects: int = 1, max_objects: int = 3, size=None) -> Scene:
    width, height = size or (rng.randint(320, 640), rng.randint(280, 480))
    background = rng.choice(tuple(COLOURS))
    image = Image.new("RGB", (width, height), COLOURS[background][0])
    draw = ImageDraw.Draw(image)
    objects = []
    for _ in range(rng.randint(min_objects, max_objects)):
        colour = rng.choice([c for c in COLOURS if c != background])
        shape = rng.choice(tuple(SHAPES))
        side = rng.randint(min(width, height) // 6, min(width, height) // 3)
        x, y = rng.randint(0, width - side), rng.randint(0, height - side)
        box = (x, y, x + side, y + side)
        fill = COLOURS[colour][0]
        if shape == "circle":
            draw.ellipse(box, fill=fill)
        elif shape == "square":
            draw.rectangle(box, fill=fill)
        else:
            draw.polygon([(x + side // 2, y), (x + side, y + side), (x, y + side)], fill=fill)
        objects.append((f"{colour} {shape}", box))
    return Scene(image, background, objects)


def with_article(words: str) -> str:
    return ("an " if words[0] in "aeiou" else "a ") + words


def phrase(name: str, language: str) -> str:
    """'red circle' -> 'a red circle' / '一个红色圆形'."""
    colour, shape = name.split()
    return "一个" + COLOURS[colour][1] + SHAPES[shape] if language == "zh" else with_article(name)


def caption(scene: Scene, template: int, language: str) -> tuple[str, list[tuple[int, int]]]:
    """A caption of ``scene`` and the character span of each object phrase in it."""
    items = [phrase(name, language) for name, _ in scene.objects]
    joiner, last = (("、", "和") if language == "zh" else (", ", " and "))
    bg = COLOURS[scene.background][1] if language == "zh" else scene.background
    parts = CAPTION_TEMPLATES[template][language == "zh"].split("{0}")
    head, tail = (part.format("", bg, with_article(bg)) for part in parts)
    spans, out = [], head
    for i, item in enumerate(items):
        if i:
            out += last if i == len(items) - 1 else joiner
        spans.append((len(out), len(out) + len(item)))
        out += item
    return out + tail, spans


def text_image(lines: list[str], language: str, seed: int, min_side: int = 256) -> tuple[Image.Image, list]:
    """Clean printed text (ocr_synth's renderer), padded to at least ``min_side`` each way."""
    page = render_page(lines, language, seed=seed, condition="clean")
    image = page.image
    if image.height < min_side or image.width < min_side:
        canvas = Image.new("RGB", (max(image.width, min_side), max(image.height, min_side)), image.getpixel((0, 0)))
        canvas.paste(image, (0, 0))
        image = canvas
    return image, page.boxes


def save(image: Image.Image, path: Path, fmt: str = "JPEG", **options) -> Image.Image:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, format=fmt, **options)
    return image


def box_1000(box, width: int, height: int) -> list[int]:
    x1, y1, x2, y2 = box
    return [round(1000 * x1 / width), round(1000 * y1 / height), round(1000 * x2 / width), round(1000 * y2 / height)]


# ---- the writer ----------------------------------------------------------------------------------


class _Writer:
    def __init__(self, inputs: PretrainInputs, per_source: int, seed: int):
        self.inputs, self.n, self.seed = inputs, per_source, seed
        self.root = inputs.data_dir
        self.zh = inputs.translations["zh"]

    def rng(self, name: str) -> random.Random:
        return random.Random(f"{self.seed}:{name}")

    def translate(self, en: str, zh: str) -> str:
        self.zh[en] = zh
        return en

    def write_all(self) -> None:
        self.laion_en()
        self.laion_zh()
        self.coyo()
        self.grit()
        self.wukong()
        self.laion_coco()
        self.published()
        self.objects365()
        self.all_seeing()
        self.cc_pdf()

    # -- URL lists --

    def web_image(self, source: str, index: int, image: Image.Image, fmt: str = "jpg") -> str:
        name = f"{source}/{index:06d}.{fmt}"
        options = {"jpg": ("JPEG", {"quality": 90}), "webp": ("WEBP", {"quality": 85}), "png": ("PNG", {})}[fmt]
        save(image, self.root / "_web" / name, options[0], **options[1])
        return f"{self.inputs.base_url}/{name}"

    def scene_rows(self, source: str, language: str, special: dict[int, str], small: int | None) -> list[dict]:
        """Captioned scenes: ``special`` index -> 'webp' | 'png_rgba' | 'cmyk'; ``small`` index listed tiny."""
        rng, rows = self.rng(source), []
        for i in range(self.n + 1 + (small is not None)):
            scene = draw_scene(rng, size=(rng.randint(140, 200), rng.randint(120, 180)) if i == small else None)
            en, spans = caption(scene, i % len(CAPTION_TEMPLATES), "en")
            zh, _ = caption(scene, i % len(CAPTION_TEMPLATES), "zh")
            kind, image, fmt = special.get(i, ""), scene.image, "jpg"
            if kind == "webp":
                fmt = "webp"
            elif kind == "png_rgba":
                image, fmt = scene.image.convert("RGBA"), "png"
                image.putalpha(Image.new("L", image.size, 200))
            elif kind == "cmyk":
                image = scene.image.convert("CMYK")
            url = self.web_image(source, i, image, fmt)
            rows.append({"url": url, "en": en, "zh": zh, "spans": spans, "scene": scene, "index": i,
                         "width": scene.image.width, "height": scene.image.height, "unsafe": i == self.n})
        return rows

    def write_table(self, source: str, columns: dict[str, list], schema: pa.Schema) -> None:
        path = self.root / URL_LIST_FILES[source]
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.table(columns, schema=schema), path, compression="snappy")
        self.inputs.sources[source] = len(next(iter(columns.values())))

    def laion_en(self) -> None:
        rows = self.scene_rows("laion_en", "en", {1: "webp"}, small=self.n + 1)
        rng = self.rng("laion_en:scores")
        self.write_table("laion_en", {
            "url": [r["url"] for r in rows], "caption": [r["en"] for r in rows],
            "key": [f"{r['index']:09d}" for r in rows],
            "similarity": [round(rng.uniform(0.28, 0.4), 6) for _ in rows],
            "punsafe": [0.9 if r["unsafe"] else round(rng.uniform(0, 0.2), 6) for r in rows],
            "pwatermark": [round(rng.uniform(0, 0.4), 6) for _ in rows],
            "width": [r["width"] for r in rows], "height": [r["height"] for r in rows],
        }, pa.schema([("url", pa.string()), ("caption", pa.string()), ("key", pa.string()),
                      ("similarity", pa.float64()), ("punsafe", pa.float64()), ("pwatermark", pa.float64()),
                      ("width", pa.int64()), ("height", pa.int64())]))

    def laion_zh(self) -> None:
        rows = self.scene_rows("laion_zh", "zh", {2: "cmyk"}, small=self.n + 1)
        languages = ["zh"] * len(rows)
        for lang, text in OTHER_LANGUAGE_CAPTIONS.items():  # LAION-2B-multi: other languages, to be filtered
            rows.append({**rows[0], "zh": text, "unsafe": False})
            languages.append(lang)
        rng = self.rng("laion_zh:scores")
        self.write_table("laion_zh", {
            "URL": [r["url"] for r in rows], "TEXT": [r["zh"] for r in rows],
            "WIDTH": [float(r["width"]) for r in rows], "HEIGHT": [float(r["height"]) for r in rows],
            "similarity": [round(rng.uniform(0.28, 0.4), 6) for _ in rows], "LANGUAGE": languages,
            "hash": [rng.getrandbits(62) for _ in rows],
            "pwatermark": [round(rng.uniform(0, 0.4), 4) for _ in rows],
            "punsafe": [0.9 if r["unsafe"] else round(rng.uniform(0, 0.2), 4) for r in rows],
        }, pa.schema([("URL", pa.string()), ("TEXT", pa.string()), ("WIDTH", pa.float64()),
                      ("HEIGHT", pa.float64()), ("similarity", pa.float64()), ("LANGUAGE", pa.string()),
                      ("hash", pa.int64()), ("pwatermark", pa.float32()), ("punsafe", pa.float32())]))

    def coyo(self) -> None:
        rows = self.scene_rows("coyo", "en", {0: "png_rgba"}, small=None)
        rows = [r for r in rows if not r["unsafe"]]  # COYO dropped NSFW >= 0.5 itself: no such rows
        rng, small = self.rng("coyo:small"), draw_scene(self.rng("coyo:small"), size=(240, 200))
        en, _ = caption(small, 0, "en")
        rows.append({"url": self.web_image("coyo", 99, small.image), "en": en, "zh": caption(small, 0, "zh")[0],
                     "width": 240, "height": 200, "index": 99})
        for r in rows:
            self.translate(r["en"], r["zh"])
        f32 = pa.float32()
        self.write_table("coyo", {
            "id": [4_000_000_000 + r["index"] for r in rows], "url": [r["url"] for r in rows],
            "text": [r["en"] for r in rows], "width": [r["width"] for r in rows], "height": [r["height"] for r in rows],
            "image_phash": [f"{rng.getrandbits(64):016x}" for _ in rows],
            "text_length": [len(r["en"]) for r in rows], "word_count": [len(r["en"].split()) for r in rows],
            "num_tokens_bert": [len(r["en"].split()) + 2 for r in rows],
            "num_tokens_gpt": [len(r["en"].split()) + 1 for r in rows], "num_faces": [0 for _ in rows],
            **{name: [round(rng.uniform(lo, hi), 5) for _ in rows] for name, lo, hi in (
                ("clip_similarity_vitb32", 0.25, 0.35), ("clip_similarity_vitl14", 0.2, 0.3),
                ("nsfw_score_opennsfw2", 0.0, 0.02), ("nsfw_score_gantman", 0.0, 0.05),
                ("watermark_score", 0.0, 0.3), ("aesthetic_score_laion_v2", 4.0, 6.5))},
        }, pa.schema([("id", pa.int64()), ("url", pa.string()), ("text", pa.string()), ("width", pa.int32()),
                      ("height", pa.int32()), ("image_phash", pa.string()), ("text_length", pa.int32()),
                      ("word_count", pa.int32()), ("num_tokens_bert", pa.int32()), ("num_tokens_gpt", pa.int32()),
                      ("num_faces", pa.int32()), ("clip_similarity_vitb32", f32), ("clip_similarity_vitl14", f32),
                      ("nsfw_score_opennsfw2", f32), ("nsfw_score_gantman", f32), ("watermark_score", f32),
                      ("aesthetic_score_laion_v2", f32)]))

    def grit(self) -> None:
        rows = [r for r in self.scene_rows("grit_caption", "en", {}, small=self.n + 1) if not r["unsafe"]]
        rng, refs = self.rng("grit:scores"), []
        for r in rows:
            self.translate(r["en"], r["zh"])
            w, h = r["width"], r["height"]
            entries = []
            for (start, end), (name, (x1, y1, x2, y2)) in zip(r["spans"], r["scene"].objects, strict=True):
                self.translate(r["en"][start:end], phrase(name, "zh"))
                entries.append([float(start), float(end), round(x1 / w, 4), round(y1 / h, 4), round(x2 / w, 4),
                                round(y2 / h, 4), round(rng.uniform(0.6, 0.9), 4)])
            refs.append(entries)
        nested = pa.list_(pa.list_(pa.float64()))
        self.write_table("grit_caption", {
            "key": [f"{r['index']:09d}" for r in rows],
            "clip_similarity_vitb32": [round(rng.uniform(0.3, 0.4), 6) for _ in rows],
            "clip_similarity_vitl14": [round(rng.uniform(0.25, 0.35), 6) for _ in rows],
            "id": [1_795_296_605_919 + r["index"] for r in rows], "url": [r["url"] for r in rows],
            "caption": [r["en"] for r in rows], "width": [r["width"] for r in rows],
            "height": [r["height"] for r in rows], "noun_chunks": refs, "ref_exps": refs,
        }, pa.schema([("key", pa.string()), ("clip_similarity_vitb32", pa.float64()),
                      ("clip_similarity_vitl14", pa.float64()), ("id", pa.int64()), ("url", pa.string()),
                      ("caption", pa.string()), ("width", pa.int64()), ("height", pa.int64()),
                      ("noun_chunks", nested), ("ref_exps", nested)]))
        self.inputs.sources["grit_detection"] = self.inputs.sources["grit_caption"]  # images_from grit_caption

    def text_rows(self, source: str, language: str) -> list[dict]:
        """Printed-text images (OCR sources), then one scene with no text for OCR to find nothing in."""
        rng, pool, rows = self.rng(source), (ZH_LINES if language == "zh" else EN_LINES), []
        for i in range(self.n):
            lines = rng.sample(pool, 2)
            image, _ = text_image(lines, language, seed=rng.randrange(10**6))
            alt = f"写着“{lines[0]}”的招牌" if language == "zh" else f"A sign that reads {lines[0]}"
            rows.append({"url": self.web_image(source, i, image), "alt": alt, "lines": lines,
                         "width": image.width, "height": image.height, "unsafe": False})
        scene = draw_scene(rng)
        alt = caption(scene, 0, language)[0]
        rows.append({"url": self.web_image(source, self.n, scene.image), "alt": alt, "lines": [],
                     "width": scene.image.width, "height": scene.image.height, "unsafe": False})
        return rows

    def wukong(self) -> None:
        rows = self.text_rows("wukong_ocr", "zh")
        self.write_table("wukong_ocr", {"url": [r["url"] for r in rows], "caption": [r["alt"] for r in rows]},
                         pa.schema([("url", pa.string()), ("caption", pa.string())]))

    def laion_coco(self) -> None:
        rows = self.text_rows("laioncoco_ocr", "en")
        rows.append({**rows[0], "unsafe": True})
        tiny = draw_scene(self.rng("laioncoco_ocr:small"), size=(180, 150))
        rows.append({"url": self.web_image("laioncoco_ocr", 99, tiny.image), "alt": caption(tiny, 0, "en")[0],
                     "lines": [], "width": 180, "height": 150, "unsafe": False})
        rng = self.rng("laioncoco_ocr:scores")
        top = [f"a sign with the words {' '.join(r['lines'][:1]).lower()}" if r["lines"] else r["alt"] for r in rows]
        self.write_table("laioncoco_ocr", {
            "URL": [r["url"] for r in rows], "TEXT": [r["alt"] for r in rows], "top_caption": top,
            "all_captions": [[t, t.replace("a sign", "a white sign")] for t in top],
            "all_similarities": [[0.31, 0.29] for _ in rows],
            "WIDTH": [float(r["width"]) for r in rows], "HEIGHT": [float(r["height"]) for r in rows],
            "similarity": [round(rng.uniform(0.28, 0.4), 6) for _ in rows],
            "hash": [rng.getrandbits(62) for _ in rows],
            "pwatermark": [round(rng.uniform(0, 0.4), 4) for _ in rows],
            "punsafe": [0.9 if r["unsafe"] else round(rng.uniform(0, 0.2), 4) for r in rows],
        }, pa.schema([("URL", pa.string()), ("TEXT", pa.string()), ("top_caption", pa.string()),
                      ("all_captions", pa.list_(pa.string())), ("all_similarities", pa.list_(pa.float64())),
                      ("WIDTH", pa.float64()), ("HEIGHT", pa.float64()), ("similarity", pa.float64()),
                      ("hash", pa.int64()), ("pwatermark", pa.float32()), ("punsafe", pa.float32())]))

    # -- annotation files --

    def write_jsonl(self, relative: str, records: list[dict], source: str | None = None) -> None:
        path = self.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
        if source:
            self.inputs.sources[source] = self.inputs.sources.get(source, 0) + len(records)

    def published(self) -> None:
        """The annotation datasets read through presets, as their publishers ship them."""
        for source, preset in PUBLISHED_SOURCES.items():
            written = write_published(preset, self.root, self.n, self.seed)
            self.inputs.sources[source] = written.records

    def objects365(self) -> None:
        rng, images, annotations = self.rng("objects365"), [], []
        for i in range(self.n):
            patch = rng.choice((0, 8, 16, 33))
            number = 420_000 * (patch < 16) + 900_000 * (patch >= 16) + i * 37 + 17
            file_name = f"images/v{1 + (patch >= 16)}/patch{patch}/objects365_v{1 + (patch >= 16)}_{number:08d}.jpg"
            scene = draw_scene(rng, 2, 4)
            save(scene.image, self.root / OBJECTS365_IMAGES / f"patch{patch}" / Path(file_name).name, quality=90)
            images.append({"height": scene.image.height, "id": number, "license": 5, "width": scene.image.width,
                           "file_name": file_name, "url": ""})
            for j, (_, (x1, y1, x2, y2)) in enumerate(scene.objects):
                category = rng.choice(tuple(O365_CATEGORIES))
                w, h = x2 - x1 - 1 - rng.random(), y2 - y1 - 1 - rng.random()
                annotations.append({"id": len(annotations) + 51, "iscrowd": int(i == 1 and j == 0), "isfake": 0,
                                    "area": round(w * h, 6), "isreflected": 0,
                                    "bbox": [x1 + 0.3955078011, y1 + 0.1856689664, round(w, 10), round(h, 10)],
                                    "image_id": number, "category_id": category})
        categories = [{"name": en, "id": cid} for cid, (en, zh) in O365_CATEGORIES.items()]
        for en, zh in O365_CATEGORIES.values():
            self.translate(en, zh)
        document = {"images": images, "annotations": annotations, "categories": categories,
                    "licenses": [{"name": "Attribution 4.0 International", "url": "", "id": 5}]}
        path = self.root / OBJECTS365_JSON
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(document), encoding="utf-8")
        self.inputs.sources["objects365"] = len(images)

    def _grounded_turns(self, scene, kind: int, w: int, h: int, lang: str) -> list[str]:
        """One All-Seeing conversation's turns in English or in its reference Chinese (same markup)."""
        def t(en: str, zh: str) -> str:
            return en if lang == "en" else zh

        first, first_box = scene.objects[0]
        ref = t(f"the {first}", COLOURS[first.split()[0]][1] + SHAPES[first.split()[1]])
        box = f"<box>[{box_1000(first_box, w, h)}]</box>"
        if kind == 0:
            return [f"<image>\n{t('Locate the object described as:', '找出下面描述的物体：')} <ref>{ref}</ref>",
                    f"<ref>{ref}</ref>{box}"]
        if kind == 1:
            count = len(scene.objects)
            return [f"<image>\n{t('What object is inside', '以下框内是什么物体')} {box}?",
                    t(phrase(first, "en").capitalize() + ".", phrase(first, "zh") + "。"),
                    t("How many shapes are there in the image?", "图中有多少个图形？"),
                    t(f"There are {count} shapes in the image.", f"图中有{count}个图形。")]
        parts = []
        for j, (obj, obj_box) in enumerate(scene.objects):
            sep = "" if j == 0 else (f" {t('and', '和')} " if j == len(scene.objects) - 1 else t(", ", "，"))
            parts.append(f"{sep}<ref>{t(phrase(obj, 'en'), phrase(obj, 'zh'))}</ref><box>[{box_1000(obj_box, w, h)}]</box>")
        background = t(f"on {with_article(scene.background)} background.", f"，背景是{COLOURS[scene.background][1]}的。")
        return [f"<image>\n{t('Describe the image and ground every object you mention.', '描述这张图片，并标出你提到的每个物体。')}",
                f"{t('The image shows', '图中有')} {''.join(parts)} {background}"]

    def all_seeing(self) -> None:
        from translate.segment import plan_turn

        rng, records = self.rng("all_seeing"), []
        for i in range(self.n):
            scene = draw_scene(rng, 2, 3)
            w, h = scene.image.size
            name = f"sa_{223750 + i}.jpg"
            save(scene.image, self.root / "all-seeing/images" / name, quality=90)
            english, chinese = (self._grounded_turns(scene, i % 3, w, h, lang) for lang in ("en", "zh"))
            # The cache holds what a translation run asks: each turn's pieces, markup as placeholders.
            for en_turn, zh_turn in zip(english, chinese, strict=True):
                en_pieces, zh_pieces = plan_turn(en_turn, 1500)[1], plan_turn(zh_turn, 1500)[1]
                assert len(en_pieces) == len(zh_pieces), (en_turn, zh_turn)
                self.zh.update({en.text: zh.text for en, zh in zip(en_pieces, zh_pieces, strict=True)})
            conversations = [{"from": "human" if j % 2 == 0 else "gpt", "value": turn} for j, turn in enumerate(english)]
            records.append({"id": f"as_{i}", "image": name, "conversations": conversations})
        path = self.root / ALL_SEEING_JSON  # AS-V2's as_pretrain_10m.json: one JSON array
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(records, ensure_ascii=False), encoding="utf-8")
        self.inputs.sources["all_seeing"] = len(records)

    def cc_pdf(self) -> None:
        """One-page PDFs: English and Chinese text layers, and the last one a scan (no text layer)."""
        from pdf import generate

        rng, count = self.rng("common_crawl_pdf"), 0
        for folder in CC_PDF_DIRS:
            (self.root / folder).mkdir(parents=True, exist_ok=True)
            for i in range((self.n + 1) // 2):
                language = "zh" if i % 2 else "en"
                lines = rng.sample(ZH_LINES if language == "zh" else EN_LINES, 4)
                if folder == CC_PDF_DIRS[-1] and i == (self.n + 1) // 2 - 1:
                    data = generate.scanned(rng.sample(EN_LINES, 4))
                else:
                    data, _ = generate.text_pages([lines], font="cjk" if language == "zh" else "Helvetica")
                (self.root / folder / f"{i:04d}.pdf").write_bytes(data)
                count += 1
        self.inputs.sources["common_crawl_pdf"] = count
