"""Captions of `synth`: what a caption means (its semantics), how it is worded, and which images
satisfy it (its exact extended positives).

A caption means: optionally "exactly N shapes", plus zero, one or two object descriptions (each a
partial shape / colour / size spec), plus optionally a spatial relation between the two objects.
An image satisfies it when distinct shapes of the image match the descriptions and the relation
holds (``scenes.relation_holds``). Underspecified captions ("there is a star") therefore have many
positives: the soft positives the paper is about.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from aahr.synth.scenes import COLOURS, RELATIONS, SHAPES, SIZES, Scene, relation_holds

KINDS = ("count", "shape", "colour_shape", "full_object", "two_objects", "relation", "three_objects")

SHAPE_WORDS = {
    "circle": ["circle", "disk", "disc", "round shape"],
    "ring": ["ring", "hoop", "circle outline"],
    "square": ["square", "box", "block"],
    "triangle": ["triangle", "triangular shape"],
    "diamond": ["diamond", "rhombus", "lozenge"],
    "hexagon": ["hexagon", "six-sided shape"],
    "star": ["star", "five-pointed star"],
    "cross": ["cross", "plus sign", "plus"],
}
COLOUR_WORDS = {c: [c] for c in COLOURS} | {"purple": ["purple", "violet"], "cyan": ["cyan", "turquoise"]}
SIZE_WORDS = {"small": ["small", "little", "tiny"], "medium": ["medium-sized", "mid-sized", "medium"],
              "large": ["large", "big", "huge"]}
RELATION_WORDS = {
    "left": ["to the left of", "left of", "on the left of"],
    "right": ["to the right of", "right of", "on the right of"],
    "above": ["above", "over", "higher than"],
    "below": ["below", "under", "beneath", "lower than"],
}
NUMBER_WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight"]
THING_WORDS = ["shapes", "objects", "figures"]
PREFIXES = ["", "", "there is ", "a picture of ", "an image showing ", "this image contains ",
            "we can see "]
CONJUNCTIONS = [" and ", " and also ", " as well as ", " together with "]


@dataclass(frozen=True)
class ObjectSpec:
    shape: str | None = None
    colour: str | None = None
    size: str | None = None


@dataclass(frozen=True)
class Semantics:
    """What a caption claims about an image; hashable so equal meanings share one positive set."""
    kind: str
    count: int | None = None
    objects: tuple[ObjectSpec, ...] = ()
    relation: str | None = None  # objects[0] <relation> objects[1] (a third object stands alone)

    def to_json(self) -> dict:
        return {"kind": self.kind, "count": self.count, "relation": self.relation,
                "objects": [{k: v for k, v in vars(o).items() if v is not None} for o in self.objects]}

    @staticmethod
    def from_json(d: dict) -> "Semantics":
        return Semantics(d["kind"], d["count"], tuple(ObjectSpec(**o) for o in d["objects"]), d["relation"])


class CaptionWriter:
    """Draws caption meanings from a scene and words them with synonyms and varied templates."""

    def __init__(self, cfg: dict, rng: np.random.Generator):
        self.cfg = cfg
        self.rng = rng
        weights = np.array([cfg["detail"][k] for k in KINDS], dtype=float)
        self.kind_p = weights / weights.sum()
        self.margin_px = cfg["relation_margin"] * cfg["image_size"]

    def _pick(self, options):
        return options[self.rng.integers(len(options))]

    def _spec(self, o, detail: str) -> ObjectSpec:
        if detail == "shape":
            return ObjectSpec(o.shape)
        if detail == "colour_shape":
            return ObjectSpec(o.shape, o.colour)
        return ObjectSpec(o.shape, o.colour, o.size)

    def _pair_detail(self) -> str:
        return self._pick(["colour_shape", "full_object"])

    def meaning(self, scene: Scene) -> Semantics:
        objs = scene.objects
        kind = KINDS[self.rng.choice(len(KINDS), p=self.kind_p)]
        if kind == "three_objects" and len(objs) < 3:
            kind = "relation"
        if kind in ("two_objects", "relation") and len(objs) < 2:
            kind = "full_object"
        if kind == "count":
            with_object = self.rng.random() < 0.5
            spec = (self._spec(self._pick(objs), "colour_shape"),) if with_object else ()
            return Semantics(kind, len(objs), spec)
        if kind in ("shape", "colour_shape", "full_object"):
            return Semantics(kind, None, (self._spec(self._pick(objs), kind),))
        n = 3 if kind == "three_objects" else 2
        chosen = [objs[i] for i in self.rng.choice(len(objs), n, replace=False)]
        specs = tuple(self._spec(o, self._pair_detail()) for o in chosen)
        if kind == "two_objects":
            return Semantics(kind, None, specs)
        a, b = chosen[:2]
        true = [r for r in RELATIONS if relation_holds(a.x, a.y, b.x, b.y, r, self.margin_px)]
        if not true:  # the two shapes are too close to say where one is: describe them only
            return Semantics("two_objects" if n == 2 else kind, None, specs)
        return Semantics(kind, None, specs, self._pick(true))

    def corrupt(self, sem: Semantics) -> Semantics:
        """A noisy pretraining caption: one attribute word is wrong (or the relation flipped)."""
        if sem.relation is not None and self.rng.random() < 0.3:
            flip = {"left": "right", "right": "left", "above": "below", "below": "above"}
            return Semantics(sem.kind, sem.count, sem.objects, flip[sem.relation])
        if not sem.objects:
            return Semantics(sem.kind, max(1, (sem.count or 1) + self._pick([-1, 1])), sem.objects)
        k = int(self.rng.integers(len(sem.objects)))
        o = sem.objects[k]
        field = self._pick([f for f in ("shape", "colour", "size") if getattr(o, f) is not None])
        pool = {"shape": SHAPES, "colour": tuple(COLOURS), "size": SIZES}[field]
        wrong = self._pick([v for v in pool if v != getattr(o, field)])
        objs = list(sem.objects)
        objs[k] = ObjectSpec(**(vars(o) | {field: wrong}))
        return Semantics(sem.kind, sem.count, tuple(objs), sem.relation)

    def _noun_phrase(self, spec: ObjectSpec) -> str:
        words = []
        if spec.size:
            words.append(self._pick(SIZE_WORDS[spec.size]))
        if spec.colour:
            words.append(self._pick(COLOUR_WORDS[spec.colour]))
        words.append(self._pick(SHAPE_WORDS[spec.shape]))
        phrase = " ".join(words)
        return ("an " if phrase[0] in "aeiou" else "a ") + phrase

    def words(self, sem: Semantics) -> str:
        if sem.kind == "count":
            n = str(sem.count) if self.rng.random() < 0.2 else NUMBER_WORDS[sem.count]
            text = f"{n} {self._pick(THING_WORDS)}" if sem.count != 1 else f"one {self._pick(THING_WORDS)[:-1]}"
            text = self._pick(["a picture of ", "an image with ", "", "exactly "]) + text
            if sem.objects:
                text += self._pick([", one of them ", " including ", ", among them "]) + \
                    self._noun_phrase(sem.objects[0])
        elif len(sem.objects) == 1:
            text = self._pick(PREFIXES) + self._noun_phrase(sem.objects[0])
        else:
            prefix = self._pick(PREFIXES)
            first = self._noun_phrase(sem.objects[0])
            if sem.relation is None:
                text = prefix + first + self._pick(CONJUNCTIONS) + self._noun_phrase(sem.objects[1])
            else:  # a finite verb only where no prefix precedes ("there is a star is ..." is wrong)
                verb = self._pick([" ", " placed ", " positioned "] if prefix else [" ", " is ", " sits "])
                text = prefix + first + verb + self._pick(RELATION_WORDS[sem.relation]) + " " + \
                    self._noun_phrase(sem.objects[1])
            if len(sem.objects) == 3:
                text += self._pick([", and ", " and ", ", plus ", ", with "]) + self._noun_phrase(sem.objects[2])
        text = " ".join(text.split())
        return text + "." if self.rng.random() < 0.5 else text


class SceneTable:
    """The scenes of one split as padded arrays, for vectorised satisfaction checks."""

    def __init__(self, scenes: list[Scene], margin_px: float):
        n = len(scenes)
        m = max(len(s.objects) for s in scenes)
        self.n_objects = np.array([len(s.objects) for s in scenes])
        self.shape = np.full((n, m), -1, np.int8)  # (N, M), -1 = no object
        self.colour = np.full((n, m), -1, np.int8)
        self.size = np.full((n, m), -1, np.int8)
        x = np.full((n, m), np.nan)
        y = np.full((n, m), np.nan)
        colours = list(COLOURS)
        for i, s in enumerate(scenes):
            for a, o in enumerate(s.objects):
                self.shape[i, a] = SHAPES.index(o.shape)
                self.colour[i, a] = colours.index(o.colour)
                self.size[i, a] = SIZES.index(o.size)
                x[i, a], y[i, a] = o.x, o.y
        # rel[r, i, a, b]: relation r holds between shapes a and b of scene i.  (R, N, M, M)
        # (NaN centres of padding compare False.)
        self.rel = np.stack([relation_holds(x[:, :, None], y[:, :, None], x[:, None, :], y[:, None, :],
                                            name, margin_px) for name in RELATIONS])
        self.distinct = ~np.eye(m, dtype=bool)[None]  # (1, M, M)
        self._matches: dict[ObjectSpec, tuple[np.ndarray, np.ndarray]] = {}

    def matches(self, spec: ObjectSpec) -> np.ndarray:
        """(N, M) bool: shape a of scene i fits the description (cached per description)."""
        if spec not in self._matches:
            ok = self.shape >= 0
            if spec.shape is not None:
                ok &= self.shape == SHAPES.index(spec.shape)
            if spec.colour is not None:
                ok &= self.colour == list(COLOURS).index(spec.colour)
            if spec.size is not None:
                ok &= self.size == SIZES.index(spec.size)
            self._matches[spec] = (ok, ok.any(1))
        return self._matches[spec][0]

    def present(self, spec: ObjectSpec) -> np.ndarray:
        """(N,) bool: some shape of scene i fits the description."""
        self.matches(spec)
        return self._matches[spec][1]

    def satisfied(self, sem: Semantics) -> np.ndarray:
        """(N,) bool: which scenes the caption is true of.

        Every description must fit some shape (a cheap cached test); only the scenes that pass it
        get the exact test of distinct shapes and the relation, so a split costs O(N) per caption
        only once per distinct description."""
        ok = np.ones(len(self.n_objects), bool)
        if sem.count is not None:
            ok &= self.n_objects == sem.count
        for spec in sem.objects:
            ok &= self.present(spec)
        if len(sem.objects) < 2:
            return ok
        rows = np.flatnonzero(ok)
        a, b = (self.matches(s)[rows] for s in sem.objects[:2])
        distinct = self.distinct
        pair = a[:, :, None] & b[:, None, :]  # (n, M, M): shapes p, q fit descriptions 0, 1
        pair &= self.rel[RELATIONS.index(sem.relation)][rows] if sem.relation else distinct
        if len(sem.objects) == 3:  # a third shape, distinct from both, fits description 2
            c = self.matches(sem.objects[2])[rows]
            pair = (pair[:, :, :, None] & c[:, None, None, :]
                    & distinct[:, :, None, :] & distinct[:, None, :, :])
        ok[rows] = pair.any(axis=tuple(range(1, pair.ndim)))
        return ok


def extended_positives(table: SceneTable, meanings: list[Semantics]) -> tuple[np.ndarray, np.ndarray]:
    """For every caption, the images (row indices of the split) that truly satisfy it, as CSR.

    Returns ``indptr`` (n_captions + 1,) and ``indices`` (nnz,), int64 / int32:
    caption j's positives are ``indices[indptr[j]:indptr[j + 1]]`` (sorted).
    """
    cache: dict[Semantics, np.ndarray] = {}
    rows = []
    for sem in meanings:
        if sem not in cache:
            cache[sem] = np.flatnonzero(table.satisfied(sem)).astype(np.int32)
        rows.append(cache[sem])
    indptr = np.zeros(len(rows) + 1, np.int64)
    indptr[1:] = np.cumsum([len(r) for r in rows])
    return indptr, np.concatenate(rows) if rows else np.zeros(0, np.int32)
