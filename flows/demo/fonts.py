"""Fonts for the demo's text images: DejaVu for Latin text, WenQuanYi (Debian) for Chinese."""

from functools import cache
from pathlib import Path

_FONT_DIRS = (Path("/usr/share/fonts"), Path("/usr/local/share/fonts"), Path.home() / ".local/share/fonts")
_LATIN = ("DejaVuSans.ttf", "DejaVuSerif.ttf", "DejaVuSansMono.ttf", "DejaVuSans-Bold.ttf")
_CJK = ("wqy-microhei.ttc", "wqy-zenhei.ttc", "NotoSansCJK-Regular.ttc", "NotoSerifCJK-Regular.ttc")
_INSTALL_HINT = "install a CJK font, e.g. `apt-get install fonts-wqy-microhei` (scripts/setup.sh does)"


@cache
def _find(names: tuple[str, ...]) -> tuple[Path, ...]:
    found = []
    for name in names:
        for root in _FONT_DIRS:
            hits = sorted(root.rglob(name)) if root.is_dir() else []
            if hits:
                found.append(hits[0])
                break
    return tuple(found)


def latin() -> tuple[Path, ...]:
    fonts = _find(_LATIN) or _find(_CJK)  # CJK fonts carry Latin glyphs too
    if not fonts:
        raise FileNotFoundError(f"no TrueType font found under {[str(d) for d in _FONT_DIRS]}; {_INSTALL_HINT}")
    return fonts


def cjk() -> tuple[Path, ...]:
    fonts = _find(_CJK)
    if not fonts:
        raise FileNotFoundError(f"no Chinese font found; {_INSTALL_HINT}")
    return fonts
