"""What an OCR engine returns: lines of text with their quadrilaterals and scores.

These are plain dataclasses over numpy-free Python values, so a record crosses process
boundaries (Ray, a subprocess printing JSON) unchanged.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

Point = tuple[float, float]


@dataclass(frozen=True)
class OcrLine:
    """One detected line of text.

    ``quad`` is the line's quadrilateral in pixels of the original image, four (x, y) points
    clockwise from the top-left corner; ``score`` is the recogniser's confidence in 0..1.
    """

    text: str
    quad: tuple[Point, Point, Point, Point]
    score: float

    def bbox(self) -> tuple[float, float, float, float]:
        """Axis-aligned box (x1, y1, x2, y2) around the quadrilateral."""
        xs = [p[0] for p in self.quad]
        ys = [p[1] for p in self.quad]
        return min(xs), min(ys), max(xs), max(ys)


@dataclass(frozen=True)
class EngineInfo:
    """Which engine and models produced a result, with versions, for provenance in the corpus."""

    engine: str
    engine_version: str
    det_model: str
    rec_model: str
    runtime: str = ""

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


@dataclass(frozen=True)
class OcrResult:
    """All lines an engine read in one image, plus the image size and provenance."""

    width: int
    height: int
    lines: list[OcrLine] = field(default_factory=list)
    info: EngineInfo | None = None

    def to_json(self) -> dict:
        """A JSON-ready dict (quads as lists of [x, y])."""
        return {
            "width": self.width,
            "height": self.height,
            "lines": [
                {"text": ln.text, "quad": [list(p) for p in ln.quad], "score": ln.score} for ln in self.lines
            ],
            "info": self.info.as_dict() if self.info else None,
        }

    @classmethod
    def from_json(cls, data: dict) -> OcrResult:
        lines = [
            OcrLine(ln["text"], tuple((float(x), float(y)) for x, y in ln["quad"]), float(ln["score"]))
            for ln in data["lines"]
        ]
        info = EngineInfo(**data["info"]) if data.get("info") else None
        return cls(int(data["width"]), int(data["height"]), lines, info)


def quad_from_points(points) -> tuple[Point, Point, Point, Point]:
    """Normalise any 4x2 array-like of pixel points into a tuple of four float (x, y) pairs."""
    pts = [(float(p[0]), float(p[1])) for p in points]
    if len(pts) != 4:
        raise ValueError(f"a text quadrilateral has 4 points, got {len(pts)}")
    return tuple(pts)  # type: ignore[return-value]
