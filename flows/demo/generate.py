"""Seeded generator of small but realistic demo sources, so the whole pipeline runs with no internet.

Each collection imitates one family of the report's datasets:

============  =================================================  ============
collection    looks like                                         annotations
============  =================================================  ============
scenes        LAION-EN / COYO: shapes on backgrounds             English caption
objects       Objects365: shapes with boxes                      COCO-style boxes
text_zh       Wukong: Chinese signs and posters                  alt text (OCR is run)
text_en       LAION-COCO: English signs and posters              alt text (OCR is run)
synth_text    SynthDoG: rendered lines with known text           the exact text
============  =================================================  ============

A share of every collection's rows is broken on purpose (404, a server that hangs, an HTML body,
a truncated JPEG, an oversized body, a decompression bomb, a 503 that recovers on retry), and the
LAION-style columns (punsafe, pwatermark, listed size) carry values the URL filters drop. The
``items/<collection>.parquet`` table records, for every row, what should happen to it.
"""

from __future__ import annotations

import hashlib
import io
import json
import random
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from flows.demo import fonts

# What a broken URL does, and the failure reason the download stage must report for it.
BAD_KINDS = {
    "missing": "http_404",
    "hang": "timeout",
    "html": "not_an_image",
    "truncated": "truncated_image",
    "oversized": "body_too_large",
    "bomb": "decompression_bomb",
    "flaky": "ok",  # 503 on the first request, the image after: the retry pass recovers it
}

# Rows per collection at scale 1.0: a few thousand samples in all.
BASE_COUNTS = {"scenes": 1400, "objects": 300, "text_zh": 500, "text_en": 500, "synth_text": 400}

COLOURS = {
    "red": (220, 40, 40), "green": (40, 170, 70), "blue": (40, 80, 210), "yellow": (240, 210, 40),
    "orange": (245, 140, 30), "purple": (140, 60, 180), "black": (20, 20, 20), "white": (245, 245, 245),
    "grey": (128, 128, 128), "pink": (240, 130, 180),
}
SHAPES = ("circle", "square", "triangle")
# The demo's translation memory: its captions come from a closed vocabulary, so reference
# translations can be written for every one (see `reference_translations`).
COLOUR_WORDS = {
    "zh": {"red": "红色", "green": "绿色", "blue": "蓝色", "yellow": "黄色", "orange": "橙色", "purple": "紫色",
           "black": "黑色", "white": "白色", "grey": "灰色", "pink": "粉色"},
    "ja": {"red": "赤", "green": "緑", "blue": "青", "yellow": "黄色", "orange": "オレンジ", "purple": "紫",
           "black": "黒", "white": "白", "grey": "灰色", "pink": "ピンク"},
}
SHAPE_WORDS = {"zh": {"circle": "圆形", "square": "正方形", "triangle": "三角形"},
               "ja": {"circle": "円", "square": "四角", "triangle": "三角"}}
SCENE_TEMPLATES = {  # {0} the listed shapes, {1} the background colour, {2} the same with its article
    "en": ("{0} on {2} background.", "A picture of {0} over a plain {1} backdrop.", "Simple drawing: {0}, {1} background."),
    "zh": ("{1}背景上的{0}。", "一张{0}在纯{1}背景上的图片。", "简单的画：{0}，{1}背景。"),
    "ja": ("{1}の背景に{0}。", "無地の{1}の背景に{0}が描かれた絵。", "シンプルな絵：{0}、{1}の背景。"),
}
OBJECTS_CAPTION = {"en": "Shapes on {0} background.", "zh": "{0}背景上的图形。", "ja": "{0}の背景の図形。"}
ENGLISH_WORDS = (
    "open daily coffee fresh bread market street north station platform exit sale today only book "
    "store garden city museum hotel welcome please keep quiet parking free wifi menu tea noodles "
    "river bridge park library school bank pharmacy bakery closed sunday monday east west gate "
    "ticket office entrance floor room number price special offer new old town hall square"
).split()
CHINESE_PHRASES = (
    "欢迎光临 营业时间 新鲜面包 火车站 出口 入口 停车场 免费无线网络 图书馆 博物馆 人民公园 北京路 "
    "上海大街 请保持安静 今日特价 咖啡馆 茶馆 面条 饺子 银行 药店 学校 医院 酒店 超市 电影院 "
    "地铁站 公交车站 小心地滑 禁止吸烟 开业大吉 生日快乐 天气晴朗 春节快乐 中华美食 长江大桥 西湖 "
    "东门 南门 售票处 服务台 洗手间 电梯 楼梯"
).split()


@dataclass(frozen=True)
class Row:
    """One URL-list row before the server's address is known."""

    path: str  # image path relative to the demo directory ("" for rows whose URL is broken)
    bad: str  # "" or one of BAD_KINDS
    caption: str
    language: str
    width: int
    height: int
    punsafe: float
    pwatermark: float
    objects: str  # JSON list of {"name", "bbox": [x, y, w, h]}, COCO-style pixels; "[]" if none
    caption_zh: str  # reference translations of the caption ("" where there is none)
    caption_ja: str


def generate(directory: str | Path, seed: int = 0, scale: float = 1.0, bad_url_share: float = 0.06) -> Path:
    """Write the demo collections under ``directory`` and return it; a no-op when already there.

    The output depends only on (seed, scale, bad_url_share): the same arguments give the same bytes.
    """
    directory = Path(directory)
    stamp = {"seed": seed, "scale": scale, "bad_url_share": bad_url_share, "version": 3}
    done_marker = directory / "items" / "_GENERATED.json"
    if done_marker.exists() and json.loads(done_marker.read_text()) == stamp:
        return directory
    (directory / "items").mkdir(parents=True, exist_ok=True)
    for index, (collection, base_count) in enumerate(BASE_COUNTS.items()):
        rng = random.Random(seed * 1000 + index)
        count = max(8, round(base_count * scale))
        rows = [_make_row(collection, i, rng, directory, bad_url_share) for i in range(count)]
        _write_items(rows, directory / "items" / f"{collection}.parquet")
    (directory / "bad").mkdir(exist_ok=True)
    _write_bomb(directory / "bad" / "bomb.png")
    done_marker.write_text(json.dumps(stamp))
    return directory


def _make_row(collection: str, index: int, rng: random.Random, directory: Path, bad_share: float) -> Row:
    draw_fn = {
        "scenes": _draw_scene,
        "objects": _draw_objects,
        "text_zh": lambda r: _draw_text(r, "zh"),
        "text_en": lambda r: _draw_text(r, "en"),
        "synth_text": lambda r: _draw_text(r, r.choice(("en", "zh")), synthetic=True),
    }[collection]
    image, caption, language, objects = draw_fn(rng)
    references = {}
    if isinstance(caption, dict):  # parallel captions: English plus the translation memory's entries
        references = {f"caption_{lang}": text for lang, text in caption.items() if lang != "en"}
        caption = caption["en"]
    bad = rng.choice(tuple(BAD_KINDS)) if rng.random() < bad_share else ""
    relative = f"images/{collection}/{index:06d}.jpg"
    target = directory / relative
    target.parent.mkdir(parents=True, exist_ok=True)
    image.save(target, format="JPEG", quality=rng.randint(80, 95))
    # LAION-style columns: a few rows are unsafe, watermarked or listed too small, for the filters.
    punsafe = rng.random() * 0.3 if rng.random() > 0.04 else 0.6 + rng.random() * 0.4
    pwatermark = rng.random() * 0.5 if rng.random() > 0.04 else 0.85 + rng.random() * 0.15
    listed_width = image.width if rng.random() > 0.03 else rng.randint(16, 60)
    return Row(relative, bad, caption, language, listed_width, image.height, round(punsafe, 4),
               round(pwatermark, 4), json.dumps(objects, ensure_ascii=False),
               references.get("caption_zh", ""), references.get("caption_ja", ""))


def _background(rng: random.Random, size: tuple[int, int]) -> tuple[Image.Image, str]:
    name = rng.choice(tuple(COLOURS))
    base = COLOURS[name]
    image = Image.new("RGB", size, base)
    draw = ImageDraw.Draw(image)
    for _ in range(rng.randint(0, 6)):  # faint texture so JPEG sizes vary like photos do
        x, y = rng.randrange(size[0]), rng.randrange(size[1])
        shade = tuple(max(0, min(255, c + rng.randint(-25, 25))) for c in base)
        draw.ellipse((x, y, x + rng.randint(10, 120), y + rng.randint(10, 120)), fill=shade)
    return image, name


def _shape(draw: ImageDraw.ImageDraw, shape: str, box: tuple[int, int, int, int], fill) -> None:
    x0, y0, x1, y1 = box
    if shape == "circle":
        draw.ellipse(box, fill=fill)
    elif shape == "square":
        draw.rectangle(box, fill=fill)
    else:
        draw.polygon([((x0 + x1) // 2, y0), (x1, y1), (x0, y1)], fill=fill)


def _draw_shapes(rng: random.Random, min_n: int, max_n: int):
    size = (rng.randint(256, 640), rng.randint(200, 480))
    image, background = _background(rng, size)
    draw = ImageDraw.Draw(image)
    objects = []
    for _ in range(rng.randint(min_n, max_n)):
        colour = rng.choice([c for c in COLOURS if c != background])
        shape = rng.choice(SHAPES)
        side = rng.randint(min(size) // 8, min(size) // 3)
        x, y = rng.randint(0, size[0] - side), rng.randint(0, size[1] - side)
        _shape(draw, shape, (x, y, x + side, y + side), COLOURS[colour])
        objects.append({"name": f"{colour} {shape}", "bbox": [x, y, side, side]})
    return image, background, objects


def _article(word: str) -> str:
    return f"an {word}" if word[0] in "aeiou" else f"a {word}"


def object_name(name: str, language: str) -> str:
    """'red circle' in ``language`` ('en', 'zh' or 'ja')."""
    if language == "en":
        return name
    colour, shape = name.split()
    joiner = "の" if language == "ja" and colour not in ("red", "blue", "black", "white") else ""
    adjective = {"red": "赤い", "blue": "青い", "black": "黒い", "white": "白い"}
    if language == "ja" and colour in adjective:
        return adjective[colour] + SHAPE_WORDS["ja"][shape]
    return COLOUR_WORDS[language][colour] + joiner + SHAPE_WORDS[language][shape]


def scene_caption(template: int, names: list[str], background: str, language: str) -> str:
    if language == "en":
        items = [_article(name) for name in names]
        listed = ", ".join(items[:-1]) + f" and {items[-1]}" if len(items) > 1 else items[0]
        text = SCENE_TEMPLATES["en"][template].format(listed, background, _article(background))
        return text[0].upper() + text[1:]
    items = [("一个" if language == "zh" else "") + object_name(name, language) for name in names]
    listed = ("和" if language == "zh" else "と").join(items)
    return SCENE_TEMPLATES[language][template].format(listed, COLOUR_WORDS[language][background])


def _draw_scene(rng: random.Random):
    image, background, objects = _draw_shapes(rng, 1, 4)
    names = [obj["name"] for obj in objects]
    template = rng.randrange(len(SCENE_TEMPLATES["en"]))
    captions = {lang: scene_caption(template, names, background, lang) for lang in SCENE_TEMPLATES}
    return image, captions, "en", []


def _draw_objects(rng: random.Random):
    image, background, objects = _draw_shapes(rng, 2, 5)
    captions = {"en": OBJECTS_CAPTION["en"].format(_article(background)),
                **{lang: OBJECTS_CAPTION[lang].format(COLOUR_WORDS[lang][background]) for lang in ("zh", "ja")}}
    return image, captions, "en", objects


def _text_line(rng: random.Random, language: str) -> str:
    if language == "zh":
        return "".join(rng.choice(CHINESE_PHRASES) for _ in range(rng.randint(1, 3)))
    words = [rng.choice(ENGLISH_WORDS) for _ in range(rng.randint(2, 4))]
    line = " ".join(words)
    return line.upper() if rng.random() < 0.3 else line.capitalize()


def _draw_text(rng: random.Random, language: str, synthetic: bool = False):
    lines = [_text_line(rng, language) for _ in range(rng.randint(1, 3))]
    font_path = rng.choice(fonts.cjk() if language == "zh" else fonts.latin())
    size_px = rng.randint(26, 44)
    font = ImageFont.truetype(str(font_path), size_px)
    widths = [int(font.getlength(line)) for line in lines]
    width = max(widths) + rng.randint(40, 120)
    height = len(lines) * int(size_px * 1.5) + rng.randint(40, 100)
    paper = rng.choice(((250, 250, 245), (235, 240, 250), (30, 30, 40), (250, 235, 200)))
    ink = (20, 20, 20) if sum(paper) > 300 else (240, 240, 240)
    image = Image.new("RGB", (width, height), paper)
    draw = ImageDraw.Draw(image)
    y = rng.randint(15, 40)
    for line in lines:
        draw.text((rng.randint(15, 40), y), line, font=font, fill=ink)
        y += int(size_px * 1.5)
    angle = rng.uniform(-3, 3)
    image = image.rotate(angle, expand=True, fillcolor=paper, resample=Image.Resampling.BICUBIC)
    if rng.random() < 0.2:
        image = image.filter(ImageFilter.GaussianBlur(0.6))
    if synthetic:
        caption = "\n".join(lines)  # SynthDoG-style: the annotation is the exact text
    else:
        caption = (f"A sign that reads {lines[0]}" if language == "en" else f"写着“{lines[0]}”的招牌")
    return image, caption, language, []


# The share of the demo's captions its translation memory leaves out on purpose, so that the
# translation stage sends them to the model it serves: a user sees requests, the model's answers
# and their validation flags (the tiny random model's answers are noise: `wrong_script` and kin).
HELD_OUT_SHARE = 0.05


def held_out(text: str, share: float = HELD_OUT_SHARE) -> bool:
    """Whether the translation memory leaves ``text`` out: a stable hash of the text, not a draw."""
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < share


def reference_translations(directory: str | Path, language: str,
                           held_out_share: float = HELD_OUT_SHARE) -> dict[str, str]:
    """English text -> reference translation, for the demo's captions and every object name.

    The demo's LLM is a random tiny model whose answers are noise; these entries, loaded into the
    translation cache, stand in for what a real model would answer, for ``zh`` and ``ja``.
    ``held_out_share`` of the captions (chosen by :func:`held_out`, the same every run) are left
    out, so the model is asked for them; object names (a closed vocabulary of 30) are all in.
    """
    if language not in COLOUR_WORDS:
        return {}
    memory = {}
    for items_path in sorted((Path(directory) / "items").glob("*.parquet")):
        table = pq.read_table(items_path).to_pylist()
        for row in table:
            if row.get(f"caption_{language}") and not held_out(row["caption"], held_out_share):
                memory[row["caption"]] = row[f"caption_{language}"]
            for obj in json.loads(row["objects"]):
                memory[obj["name"]] = object_name(obj["name"], language)
    return memory


def _write_items(rows: list[Row], path: Path) -> None:
    columns = {field: [getattr(row, field) for row in rows] for field in Row.__dataclass_fields__}
    pq.write_table(pa.table(columns), path)


def _write_bomb(path: Path) -> None:
    """A 20000x20000 PNG (400 million pixels) of a few hundred kilobytes: a decompression bomb."""
    if path.exists():
        return
    buffer = io.BytesIO()
    Image.new("1", (20000, 20000)).save(buffer, format="PNG", optimize=False)
    path.write_bytes(buffer.getvalue())
