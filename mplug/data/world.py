"""The synthetic world: scenes of coloured shapes, their rendering, and a grammar over them.

Made to be learnable by a tiny model in a CPU smoke budget (docs/smoke-world.md): few, large,
well-separated objects; each object in its own column (left/middle/right); colours distinct
within an image, so a colour always resolves a reference.

Everything takes an explicit `random.Random`, so a seed fixes every byte.
"""
from __future__ import annotations

import random
from dataclasses import dataclass

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40), "green": (40, 170, 60), "blue": (50, 80, 230), "yellow": (235, 200, 30),
}
SHAPES = ("circle", "square", "triangle")
PLURAL = {"circle": "circles", "square": "squares", "triangle": "triangles"}
SIZES = ("small", "big")
COLUMNS = ("left", "middle", "right")
LOCATION = {"left": "on the left", "middle": "in the middle", "right": "on the right"}
NUMBER_WORDS = {1: "one", 2: "two", 3: "three"}
DIRECTIONS = ("left", "right", "up", "down")
MATERIALS = ("wood", "metal", "paper")
BACKGROUND = (200, 200, 200)
# Colour-shape combinations never drawn in training images: NoCaps-like "out-of-domain" objects.
HELD_OUT = frozenset({("green", "triangle"), ("yellow", "square")})
SIZE_FRACTION = {"small": 0.10, "big": 0.15}  # half-size as a fraction of the image side
CY_BAND = (0.45, 0.55)  # centre height range, as a fraction of the image side


@dataclass(frozen=True)
class Obj:
    shape: str
    colour: str
    size: str
    column: str
    cx: float  # centre, pixels
    cy: float
    r: float   # half-size, pixels

    @property
    def box(self) -> list[float]:
        """[x, y, w, h] in pixels (COCO style)."""
        return [round(self.cx - self.r, 2), round(self.cy - self.r, 2),
                round(2 * self.r, 2), round(2 * self.r, 2)]

    @property
    def combo(self) -> tuple[str, str]:
        return (self.colour, self.shape)


ALL_COMBOS = tuple((c, s) for c in sorted(COLOURS) for s in SHAPES)


def sample_scene(rng: random.Random, size: int, n_min: int = 1, n_max: int = 3,
                 allow: str = "seen") -> list[Obj]:
    """1-3 objects in distinct columns with distinct colours.

    allow: "seen" (no held-out combination), "unseen" (only held-out ones), "near" (at least one
    held-out and one seen combination) or "any".
    """
    if allow == "near":
        unseen = rng.choice(sorted(HELD_OUT))
        pool = [c for c in ALL_COMBOS if c not in HELD_OUT and c[0] != unseen[0]]
        n = rng.randint(max(n_min, 2), max(n_max, 2))
        combos = [unseen] + _distinct_colours(rng, pool, n - 1)
        rng.shuffle(combos)
        return scene_from_combos(rng, size, combos)
    pool = [c for c in ALL_COMBOS if _allowed(c, allow)]
    n = rng.randint(n_min, min(n_max, len({c for c, _ in pool})))
    return scene_from_combos(rng, size, _distinct_colours(rng, pool, n))


def _distinct_colours(rng: random.Random, pool: list, n: int) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for _ in range(n):
        out.append(rng.choice([c for c in pool if c[0] not in {x[0] for x in out}]))
    return out


def scene_from_combos(rng: random.Random, size: int, combos: list[tuple[str, str]]) -> list[Obj]:
    cols = sorted(rng.sample(range(3), len(combos)))
    return [_place(rng, size, shape, colour, rng.choice(SIZES), col)
            for col, (colour, shape) in zip(cols, combos)]


def _allowed(combo: tuple[str, str], allow: str) -> bool:
    if allow == "seen":
        return combo not in HELD_OUT
    if allow == "unseen":
        return combo in HELD_OUT
    return True


def _place(rng: random.Random, size: int, shape: str, colour: str, sz: str, col: int) -> Obj:
    r = SIZE_FRACTION[sz] * size
    cx = (col + 0.5) * size / 3 + rng.uniform(-0.03, 0.03) * size
    # objects sit on one horizontal band: nothing in the grammar names a vertical position, and a
    # narrow band keeps grounding about WHICH object (column, size), learnable in a smoke budget
    cy = rng.uniform(*CY_BAND) * size
    cx = min(max(cx, r + 1), size - r - 1)
    cy = min(max(cy, r + 1), size - r - 1)
    return Obj(shape, colour, sz, COLUMNS[col], round(cx, 2), round(cy, 2), round(r, 2))


def render(objs: list[Obj], size: int):
    """Draw a scene (PIL RGB image). No anti-aliasing: the pixels depend only on the scene."""
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (size, size), BACKGROUND)
    draw = ImageDraw.Draw(img)
    for o in objs:
        x0, y0, x1, y1 = o.cx - o.r, o.cy - o.r, o.cx + o.r, o.cy + o.r
        fill = COLOURS[o.colour]
        if o.shape == "circle":
            draw.ellipse([x0, y0, x1, y1], fill=fill)
        elif o.shape == "square":
            draw.rectangle([x0, y0, x1, y1], fill=fill)
        else:
            draw.polygon([(o.cx, y0), (x1, y1), (x0, y1)], fill=fill)
    return img


def moved(o: Obj, dx: float, dy: float, size: int) -> Obj:
    cx = min(max(o.cx + dx, o.r + 1), size - o.r - 1)
    cy = min(max(o.cy + dy, o.r + 1), size - o.r - 1)
    return Obj(o.shape, o.colour, o.size, o.column, round(cx, 2), round(cy, 2), o.r)


# ---------------------------------------------------------------------------------------------
# Grammar


def phrase(o: Obj, rng: random.Random, size_p: float = 0.5, loc_p: float = 0.0) -> str:
    words = ["a"]
    if rng.random() < size_p:
        words.append(o.size)
    words += [o.colour, o.shape]
    if rng.random() < loc_p:
        words.append(LOCATION[o.column])
    return " ".join(words)


def caption(objs: list[Obj], rng: random.Random) -> str:
    """One caption of a scene; different draws give different references."""
    objs = list(objs)
    t = rng.randrange(5)
    if t == 0:
        rng.shuffle(objs)
        return " and ".join(phrase(o, rng) for o in objs)
    if t == 1:
        return " and ".join(phrase(o, rng, loc_p=1.0) for o in objs)
    if t == 2:
        n = len(objs)
        head = "there is" if n == 1 else f"there are {NUMBER_WORDS[n]} shapes :"
        rng.shuffle(objs)
        return f"{head} " + " and ".join(phrase(o, rng, size_p=0.3) for o in objs)
    if t == 3:
        rng.shuffle(objs)
        return "an image of " + " and ".join(phrase(o, rng) for o in objs)
    n = len(objs)
    return (f"{NUMBER_WORDS[n]} {'shape' if n == 1 else 'shapes'} on a grey background : "
            + " , ".join(f"{o.colour} {o.shape}" for o in objs))


def video_caption(objs: list[Obj], dirs: list[str], rng: random.Random) -> str:
    parts = [f"{phrase(o, rng)} moves {_dir_words(d)}" for o, d in zip(objs, dirs)]
    if rng.random() < 0.5:
        return " and ".join(parts)
    return "a video of " + " and ".join(parts)


def _dir_words(d: str) -> str:
    return {"left": "to the left", "right": "to the right", "up": "up", "down": "down"}[d]


def world_words() -> list[str]:
    """Every word the grammar can produce (for the vocabulary)."""
    words = set(COLOURS) | set(SHAPES) | set(PLURAL.values()) | set(SIZES) | set(COLUMNS)
    words |= set(NUMBER_WORDS.values()) | set(DIRECTIONS) | set(MATERIALS)
    for text in list(LOCATION.values()) + [
        "a an the and there is are shapes shape on of grey background image video moves to",
        "what colour is how many object where does which yes no in total contains contain",
        "both images image has have more than made picture any one side that move moving",
        "at least same number as",
    ]:
        words |= set(text.split())
    return sorted(words)
