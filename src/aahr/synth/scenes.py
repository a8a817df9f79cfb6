"""Scenes of the embedded `synth` dataset: sampling, one-edit variants, relations and rendering.

A scene is a list of shapes (shape, colour, size, centre, radius) on a noisy background with clutter
(thin lines and specks that are not objects). Near colours (red/pink, orange/brown, blue/purple,
green/cyan), free placement with partial overlaps, and variants that differ from an earlier scene
by one edit (soft negatives) make it hard on purpose.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
from PIL import Image, ImageDraw

from aahr.errors import AahrError

SHAPES = ("circle", "ring", "square", "triangle", "diamond", "hexagon", "star", "cross")
COLOURS = {
    "red": (205, 40, 40),
    "pink": (230, 115, 160),
    "orange": (235, 135, 35),
    "brown": (135, 85, 45),
    "yellow": (225, 210, 50),
    "green": (55, 160, 65),
    "cyan": (60, 190, 195),
    "blue": (45, 80, 210),
    "purple": (135, 65, 185),
    "white": (235, 235, 235),
}
NEAR_COLOUR = {"red": "pink", "pink": "red", "orange": "brown", "brown": "orange",
               "blue": "purple", "purple": "blue", "green": "cyan", "cyan": "green",
               "yellow": "white", "white": "yellow"}
SIZES = ("small", "medium", "large")
SIZE_RADIUS = {"small": 0.075, "medium": 0.115, "large": 0.165}  # fraction of the image side
RELATIONS = ("left", "right", "above", "below")  # "A <relation> B": A left of B, A above B, ...
EDITS = ("recolour", "reshape", "resize", "mirror", "swap")
SUPERSAMPLE = 2  # shapes are drawn at 2x and downsampled (anti-aliasing)


@dataclass(frozen=True)
class SceneObject:
    shape: str
    colour: str
    size: str
    x: float  # centre, pixels from the left
    y: float  # centre, pixels from the top
    r: float  # radius, pixels
    rgb: tuple[int, int, int]  # the jittered colour actually drawn

    def box(self) -> list[float]:
        return [self.x - self.r, self.y - self.r, self.x + self.r, self.y + self.r]

    def to_json(self) -> dict:
        return {"shape": self.shape, "colour": self.colour, "size": self.size,
                "x": round(self.x, 2), "y": round(self.y, 2), "r": round(self.r, 2),
                "box": [round(v, 2) for v in self.box()], "rgb": list(self.rgb)}


@dataclass
class Scene:
    objects: list[SceneObject]
    background: int  # base grey level
    clutter_seed: int  # clutter and pixel noise are drawn from this seed at render time
    n_clutter: int
    variant_of: int | None = None  # index (in the split) of the scene this one edits
    edit: str | None = None

    def to_json(self) -> dict:
        return {"objects": [o.to_json() for o in self.objects], "background": self.background,
                "n_clutter": self.n_clutter, "variant_of": self.variant_of, "edit": self.edit}


def relation_holds(ax, ay, bx, by, relation: str, margin_px: float):
    """The one definition of "A <relation> B" from the two centres (numbers or numpy arrays),
    used by the caption writer and by the extended positives alike."""
    if relation == "left":
        return bx - ax > margin_px
    if relation == "right":
        return ax - bx > margin_px
    if relation == "above":
        return by - ay > margin_px
    if relation == "below":
        return ay - by > margin_px
    raise ValueError(f"unknown relation {relation!r}")


class SceneSampler:
    """Draws scenes for one split from ``rng`` with the ``synth`` section of params.yaml."""

    def __init__(self, cfg: dict, rng: np.random.Generator):
        self.cfg = cfg
        self.rng = rng
        self.size = cfg["image_size"]

    def _rgb(self, colour: str) -> tuple[int, int, int]:
        j = self.cfg["colour_jitter"]
        base = np.array(COLOURS[colour])
        return tuple(int(v) for v in np.clip(base + self.rng.integers(-j, j + 1, 3), 0, 255))

    def _radius(self, size: str) -> float:
        return SIZE_RADIUS[size] * self.size * float(self.rng.uniform(0.92, 1.08))

    def _fits(self, x: float, y: float, r: float, others: list[SceneObject]) -> bool:
        k = self.cfg["overlap"]
        return all(math.hypot(x - o.x, y - o.y) >= k * (r + o.r) for o in others)

    def _place(self, shape: str, colour: str, size: str, others: list[SceneObject],
               tries: int = 60) -> SceneObject | None:
        r = self._radius(size)
        for _ in range(tries):
            x, y = self.rng.uniform(r, self.size - r, 2)
            if self._fits(x, y, r, others):
                return SceneObject(shape, colour, size, float(x), float(y), r, self._rgb(colour))
        return None

    def new_scene(self) -> Scene:
        n = int(self.rng.integers(self.cfg["objects_min"], self.cfg["objects_max"] + 1))
        objects: list[SceneObject] = []
        restarts = 0
        while len(objects) < n:
            obj = self._place(SHAPES[self.rng.integers(len(SHAPES))],
                              list(COLOURS)[self.rng.integers(len(COLOURS))],
                              SIZES[self.rng.integers(len(SIZES))], objects)
            if obj is None:  # crowded: start over rather than silently drop an object
                restarts += 1
                if restarts > 200:
                    raise AahrError(f"synth: cannot place {n} shapes on {self.size} x {self.size} pixels "
                                    f"with overlap {self.cfg['overlap']}: lower synth.objects_max or "
                                    "synth.overlap, or raise synth.image_size")
                objects = []
                continue
            objects.append(obj)
        return Scene(objects, background=int(self.rng.integers(55, 150)),
                     clutter_seed=int(self.rng.integers(2**31)),
                     n_clutter=int(self.rng.integers(0, self.cfg["clutter_max"] + 1)))

    def variant(self, base: Scene, base_index: int) -> Scene:
        """A copy of ``base`` with one edit: a soft negative that shares most of its content."""
        objs = list(base.objects)
        for _ in range(20):
            edit = EDITS[self.rng.integers(len(EDITS))]
            i = int(self.rng.integers(len(objs)))
            o = objs[i]
            new = list(objs)
            if edit == "recolour":
                colour = NEAR_COLOUR[o.colour] if self.rng.random() < 0.7 else \
                    [c for c in COLOURS if c != o.colour][self.rng.integers(len(COLOURS) - 1)]
                new[i] = replace(o, colour=colour, rgb=self._rgb(colour))
            elif edit == "reshape":
                new[i] = replace(o, shape=[s for s in SHAPES if s != o.shape][self.rng.integers(len(SHAPES) - 1)])
            elif edit == "resize":
                size = [s for s in SIZES if s != o.size][self.rng.integers(len(SIZES) - 1)]
                cand = replace(o, size=size, r=self._radius(size))
                cand = replace(cand, x=float(np.clip(cand.x, cand.r, self.size - cand.r)),
                               y=float(np.clip(cand.y, cand.r, self.size - cand.r)))
                if not self._fits(cand.x, cand.y, cand.r, objs[:i] + objs[i + 1:]):
                    continue
                new[i] = cand
            elif edit == "mirror":  # flips every left/right relation
                new = [replace(p, x=self.size - p.x) for p in objs]
            elif edit == "swap":  # two objects trade places: their relations flip
                if len(objs) < 2:
                    continue
                j = int(self.rng.choice([k for k in range(len(objs)) if k != i]))
                a, b = objs[i], objs[j]
                a2 = replace(a, x=b.x, y=b.y)
                b2 = replace(b, x=a.x, y=a.y)
                rest = [p for k, p in enumerate(objs) if k not in (i, j)]
                if not (self._fits(a2.x, a2.y, a2.r, rest) and self._fits(b2.x, b2.y, b2.r, rest + [a2])):
                    continue
                if (a.shape, a.colour, a.size) == (b.shape, b.colour, b.size):
                    continue  # swapping two equal shapes changes nothing
                new[i], new[j] = a2, b2
            return Scene(new, background=int(self.rng.integers(55, 150)),
                         clutter_seed=int(self.rng.integers(2**31)),
                         n_clutter=int(self.rng.integers(0, self.cfg["clutter_max"] + 1)),
                         variant_of=base_index, edit=edit)
        return self.new_scene()

    def sample(self, n: int) -> list[Scene]:
        scenes: list[Scene] = []
        for _ in range(n):
            if scenes and self.rng.random() < self.cfg["variant_rate"]:
                k = int(self.rng.integers(max(0, len(scenes) - 200), len(scenes)))
                scenes.append(self.variant(scenes[k], k))
            else:
                scenes.append(self.new_scene())
        return scenes


def _polygon(shape: str, x: float, y: float, r: float) -> list[tuple[float, float]] | None:
    if shape == "square":
        h = r * 0.85
        return [(x - h, y - h), (x + h, y - h), (x + h, y + h), (x - h, y + h)]
    if shape == "triangle":
        return [(x, y - r), (x + r * 0.95, y + r * 0.75), (x - r * 0.95, y + r * 0.75)]
    if shape == "diamond":
        return [(x, y - r), (x + r * 0.75, y), (x, y + r), (x - r * 0.75, y)]
    if shape == "hexagon":
        return [(x + r * math.cos(k * math.pi / 3), y + r * math.sin(k * math.pi / 3)) for k in range(6)]
    if shape == "star":
        pts = []
        for k in range(10):
            rad = r if k % 2 == 0 else r * 0.45
            a = -math.pi / 2 + k * math.pi / 5
            pts.append((x + rad * math.cos(a), y + rad * math.sin(a)))
        return pts
    if shape == "cross":
        w = r * 0.33
        return [(x - w, y - r), (x + w, y - r), (x + w, y - w), (x + r, y - w), (x + r, y + w),
                (x + w, y + w), (x + w, y + r), (x - w, y + r), (x - w, y + w), (x - r, y + w),
                (x - r, y - w), (x - w, y - w)]
    return None  # circle, ring


def _draw_object(draw: ImageDraw.ImageDraw, o: SceneObject, s: int) -> None:
    x, y, r = o.x * s, o.y * s, o.r * s
    poly = _polygon(o.shape, x, y, r)
    if o.shape == "ring":  # a circle outline: what lies beneath shows through its hole
        draw.ellipse([x - r, y - r, x + r, y + r], outline=o.rgb, width=max(2, round(r * 0.38)))
    elif poly is None:
        draw.ellipse([x - r, y - r, x + r, y + r], fill=o.rgb)
    else:
        draw.polygon(poly, fill=o.rgb)


def _draw_clutter(draw: ImageDraw.ImageDraw, rng: np.random.Generator, n: int, size: int, s: int) -> None:
    for _ in range(n):
        rgb = tuple(int(v) for v in rng.integers(30, 256, 3))
        if rng.random() < 0.5:
            x0, y0, x1, y1 = rng.uniform(0, size, 4) * s
            draw.line([x0, y0, x1, y1], fill=rgb, width=s)
        else:
            cx, cy = rng.uniform(0, size, 2) * s
            rr = rng.uniform(0.6, 1.4) * s
            draw.ellipse([cx - rr, cy - rr, cx + rr, cy + rr], fill=rgb)


def render(scene: Scene, size: int) -> Image.Image:
    """Draw ``scene`` as a size x size RGB image (deterministic given the scene)."""
    rng = np.random.default_rng(scene.clutter_seed)
    s = SUPERSAMPLE
    # Background: a grey gradient in a random direction.
    yy, xx = np.mgrid[0:size * s, 0:size * s] / (size * s)
    angle = rng.uniform(0, 2 * math.pi)
    grad = (np.cos(angle) * xx + np.sin(angle) * yy) * rng.uniform(-30, 30)
    tint = rng.integers(-8, 9, 3)
    bg = np.clip(scene.background + grad[..., None] + tint, 0, 255).astype(np.uint8)
    img = Image.fromarray(bg, "RGB")
    draw = ImageDraw.Draw(img)
    n_under = int(rng.integers(0, scene.n_clutter + 1))
    _draw_clutter(draw, rng, n_under, size, s)
    for o in scene.objects:  # later objects occlude earlier ones
        _draw_object(draw, o, s)
    _draw_clutter(draw, rng, scene.n_clutter - n_under, size, s)
    img = img.resize((size, size), Image.BOX)
    noise = rng.normal(0, 5, (size, size, 3))
    return Image.fromarray(np.clip(np.asarray(img) + noise, 0, 255).astype(np.uint8), "RGB")
