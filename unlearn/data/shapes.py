"""Captioned shapes: a generated text-to-image data set (16×16 RGB, pixel space), nothing downloaded.

Each image draws one or two shapes of one colour on a plain background, and its caption says so
in a small, closed vocabulary: "a red circle on a white background", "two blue squares",
"a green triangle on a black background". The background phrase is left out of about half the
captions, so the model also learns to fill it in. Everything follows from `seed`.

Labels: `y` is the shape (an index into `SHAPES`: the class a concept request or the judge
addresses); `colours` is the colour index; `captions` the text. Split 70/15/15 train / holdout /
test, about 5 samples per synthetic subject, like the digits.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from unlearn.data.tabular import TabularDataset, random_splits

SIZE = 16
SHAPES = ("circle", "square", "triangle")
COLOURS = ("red", "green", "blue", "yellow")
BACKGROUNDS = ("white", "black")
RGB = {"red": (0.9, 0.1, 0.1), "green": (0.1, 0.75, 0.15), "blue": (0.1, 0.2, 0.9), "yellow": (0.95, 0.85, 0.1),
       "white": (1.0, 1.0, 1.0), "black": (0.0, 0.0, 0.0)}
COUNT_WORDS = {1: "a", 2: "two"}
PLURAL = {"circle": "circles", "square": "squares", "triangle": "triangles"}


@dataclass(frozen=True)
class CaptionParts:
    """What a caption says; None where it is silent (the background, often)."""

    shape: str | None
    colour: str | None
    count: int | None
    background: str | None


def caption(shape: str, colour: str, count: int, background: str | None) -> str:
    """The caption of one image, e.g. caption("circle", "red", 2, None) == "two red circles"."""
    text = f"{COUNT_WORDS[count]} {colour} {shape if count == 1 else PLURAL[shape]}"
    return text + (f" on a {background} background" if background else "")


def parse(text: str) -> CaptionParts:
    """Read a caption of this vocabulary back into its parts (words outside it are ignored)."""
    words = re.findall(r"[a-z]+", text.lower())
    singular = {**{s: s for s in SHAPES}, **{p: s for s, p in PLURAL.items()}}
    shape = next((singular[w] for w in words if w in singular), None)
    colour = next((w for w in words if w in COLOURS), None)
    count = 2 if "two" in words else (1 if any(w in SHAPES for w in words) else None)
    bg = next((w for i, w in enumerate(words) if w in BACKGROUNDS and words[i + 1:i + 2] == ["background"]), None)
    return CaptionParts(shape, colour, count, bg)


def vocabulary() -> list[str]:
    """Every word a caption may use, sorted (the tokenizer's word list)."""
    words = {"a", "two", "on", "background", *SHAPES, *PLURAL.values(), *COLOURS, *BACKGROUNDS}
    return sorted(words)


def mask(shape: str, cy: float, cx: float, r: float) -> np.ndarray:
    """(SIZE, SIZE) bool: pixels inside a shape of half-size `r` centred at (cy, cx), in pixel units."""
    yy, xx = np.mgrid[0:SIZE, 0:SIZE] + 0.5
    dy, dx = yy - cy, xx - cx
    if shape == "circle":
        return dy ** 2 + dx ** 2 <= r ** 2
    if shape == "square":
        return (np.abs(dy) <= r * 0.85) & (np.abs(dx) <= r * 0.85)
    # an upward triangle: apex at the top, base at the bottom, the half-width growing linearly downward
    return (dy >= -r) & (dy <= r) & (np.abs(dx) <= (dy + r) / 2)


def render(shape: str, colour: str, count: int, background: str, rng: np.random.Generator) -> np.ndarray:
    """One image, (3, SIZE, SIZE) float32 in [0, 1]; positions and sizes jittered by `rng`."""
    img = np.broadcast_to(np.array(RGB[background], np.float32)[:, None, None], (3, SIZE, SIZE)).copy()
    if count == 1:
        spots = [(8 + rng.uniform(-1.5, 1.5), 8 + rng.uniform(-1.5, 1.5), rng.uniform(4.5, 6.0))]
    else:
        r = rng.uniform(2.8, 3.5)
        spots = [(8 + rng.uniform(-3, 3), 4 + rng.uniform(-0.5, 0.5), r),
                 (8 + rng.uniform(-3, 3), 12 + rng.uniform(-0.5, 0.5), r)]
    for cy, cx, r in spots:
        img[:, mask(shape, cy, cx, r)] = np.array(RGB[colour], np.float32)[:, None]
    return np.clip(img + rng.normal(0, 0.02, img.shape).astype(np.float32), 0, 1)


def load(seed: int = 0, n: int = 6000, samples_per_subject: int = 5) -> TabularDataset:
    """`n` captioned images: X (n, 3·16·16) in [0, 1], y the shape, `captions` and `extra["colours"]`."""
    rng = np.random.default_rng(seed)
    shape_i = rng.integers(len(SHAPES), size=n)
    colour_i = rng.integers(len(COLOURS), size=n)
    count = rng.integers(1, 3, size=n)
    bg_i = rng.integers(len(BACKGROUNDS), size=n)
    said = rng.random(n) < 0.5  # whether the caption names the background
    X = np.stack([render(SHAPES[s], COLOURS[c], int(k), BACKGROUNDS[b], rng).ravel()
                  for s, c, k, b in zip(shape_i, colour_i, count, bg_i, strict=True)])
    captions = [caption(SHAPES[s], COLOURS[c], int(k), BACKGROUNDS[b] if m else None)
                for s, c, k, b, m in zip(shape_i, colour_i, count, bg_i, said, strict=True)]
    split, owner = random_splits(rng, n, int(0.7 * n), int(0.15 * n), samples_per_subject)
    return TabularDataset(ids=[f"shapes-{i:05d}" for i in range(n)], X=X.astype(np.float32),
                          y=shape_i.astype(np.int64), subjects=[f"subject-{o:04d}" for o in owner], split=split,
                          num_classes=len(SHAPES), image_shape=(3, SIZE, SIZE), captions=captions,
                          extra={"name": "shapes", "seed": seed, "n": n, "colours": colour_i.tolist()})
