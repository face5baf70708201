"""Task text of the synthetic world: VQA questions, referring expressions, NLVR2 statements,
SNLI-VE hypotheses and video questions, each with its ground truth computed from the scene."""
from __future__ import annotations

import random

from mplug.data.world import (ALL_COMBOS, COLOURS, HELD_OUT, LOCATION, MATERIALS, NUMBER_WORDS,
                              PLURAL, SHAPES, SIZES, Obj, _dir_words)

ANSWER_SPACE = {"colour": sorted(COLOURS), "shape": list(SHAPES), "number": ["1", "2", "3"],
                "yes/no": ["yes", "no"], "direction": ["down", "left", "right", "up"]}

# ---------------------------------------------------------------------------------------------
# VQA: (question, answer, answer_type, space)


def _unique(objs: list[Obj], attr: str, value: str) -> bool:
    return sum(getattr(o, attr) == value for o in objs) == 1


def vqa_candidates(objs: list[Obj], rng: random.Random) -> list[tuple[str, str, str, str]]:
    """One candidate question of each kind that the scene supports, in a random order."""
    o = rng.choice(objs)
    out = [("how many shapes are there?", str(len(objs)), "number", "number"),
           (f"what shape is the {o.colour} object?", o.shape, "other", "shape"),
           (f"what colour is the shape {LOCATION[o.column]}?", o.colour, "other", "colour"),
           (f"is the {o.colour} {o.shape} big?", "yes" if o.size == "big" else "no", "yes/no",
            "yes/no")]
    if _unique(objs, "shape", o.shape):
        out.append((f"what colour is the {o.shape}?", o.colour, "other", "colour"))
    present = {x.combo for x in objs}
    if rng.random() < 0.5:
        c, s = o.combo
        out.append((f"is there a {c} {s}?", "yes", "yes/no", "yes/no"))
    else:
        c, s = rng.choice([k for k in ALL_COMBOS if k not in present and k not in HELD_OUT])
        out.append((f"is there a {c} {s}?", "no", "yes/no", "yes/no"))
    rng.shuffle(out)
    return out


def annotate(answer: str, space: str, rng: random.Random, n: int = 10) -> list[str]:
    """n annotator answers: mostly the truth, with a little disagreement (as in VQA v2)."""
    wrong = [a for a in ANSWER_SPACE[space] if a != answer]
    n_wrong = rng.choice([0, 0, 0, 1, 1, 2, 3])
    answers = [answer] * (n - n_wrong) + [rng.choice(wrong) for _ in range(n_wrong)]
    rng.shuffle(answers)
    return answers


# ---------------------------------------------------------------------------------------------
# Referring expressions, by dataset style (every expression resolves to exactly one object)


def expression(o: Obj, objs: list[Obj], style: str, rng: random.Random) -> str:
    loc = LOCATION[o.column]
    if style == "refcoco":  # short, location words allowed (as in RefCOCO)
        opts = [f"{o.column} {o.shape}" if _unique(objs, "shape", o.shape) else f"{o.colour} {o.shape}",
                f"the shape {loc}", f"{o.colour} one", f"the {o.colour} {o.shape} {loc}"]
    elif style == "refcoco+":  # no location words (as in RefCOCO+)
        opts = [f"{o.colour} {o.shape}", f"the {o.colour} one", f"{o.size} {o.colour} shape"]
        if _unique(objs, "shape", o.shape):
            opts.append(f"the {o.shape}")
    else:  # refcocog: longer, more descriptive
        opts = [f"the {o.size} {o.colour} {o.shape} {loc} of the picture",
                f"a {o.colour} {o.shape} that is {o.size}",
                f"the {o.shape} that is {o.colour} and {o.size}"]
    return rng.choice(opts)


# ---------------------------------------------------------------------------------------------
# NLVR2 statements over (left, right) scenes


def nlvr2_statement(left: list[Obj], right: list[Obj], rng: random.Random) -> tuple[str, bool]:
    side, objs = rng.choice([("left", left), ("right", right)])
    kind = rng.randrange(5)
    if kind == 0:
        c, s = rng.choice(ALL_COMBOS)
        return f"the {side} image contains a {c} {s}", (c, s) in {o.combo for o in objs}
    if kind == 1:
        n = rng.randint(1, 3)
        noun = "shape" if n == 1 else "shapes"
        return f"the {side} image contains {NUMBER_WORDS[n]} {noun}", len(objs) == n
    if kind == 2:
        c = rng.choice(sorted(COLOURS))
        both = any(o.colour == c for o in left) and any(o.colour == c for o in right)
        return f"both images contain a {c} shape", both
    if kind == 3:
        s = rng.choice(SHAPES)
        n = rng.randint(1, 3)
        total = sum(o.shape == s for o in left + right)
        noun = s if n == 1 else PLURAL[s]
        verb = "is" if n == 1 else "are"
        return f"there {verb} {NUMBER_WORDS[n]} {noun} in total", total == n
    return "the left image has more shapes than the right image", len(left) > len(right)


# ---------------------------------------------------------------------------------------------
# SNLI-VE hypotheses


def snli_hypothesis(objs: list[Obj], label: str, rng: random.Random) -> str:
    o = rng.choice(objs)
    if label == "neutral":  # unobservable property of a visible object
        m = rng.choice(MATERIALS)
        return rng.choice([f"the {o.colour} {o.shape} is made of {m}",
                           f"there is a {o.colour} {o.shape} made of {m}"])
    kind = rng.randrange(3)
    present = {x.combo for x in objs}
    if kind == 0:
        if label == "entailment":
            c, s = o.combo
        else:
            c, s = rng.choice([k for k in ALL_COMBOS if k not in present])
        return f"there is a {c} {s}"
    if kind == 1:
        n = len(objs) if label == "entailment" else rng.choice([k for k in (1, 2, 3) if k != len(objs)])
        return "there is one shape" if n == 1 else f"there are {NUMBER_WORDS[n]} shapes"
    size = o.size if label == "entailment" else [s for s in SIZES if s != o.size][0]
    return f"the {o.colour} {o.shape} is {size}"


# ---------------------------------------------------------------------------------------------
# Video questions: objects with a direction each


def video_questions(objs: list[Obj], dirs: list[str], rng: random.Random) -> list[tuple[str, str, str]]:
    """(question, answer, answer_type) candidates, in a random order."""
    i = rng.randrange(len(objs))
    o, d = objs[i], dirs[i]
    out = [(f"where does the {o.colour} {o.shape} move?", d, "where"),
           ("how many shapes are there?", str(len(objs)), "how")]
    if _unique(objs, "shape", o.shape):
        out.append((f"what colour is the {o.shape}?", o.colour, "what"))
    if dirs.count(d) == 1:
        out.append((f"what shape moves {_dir_words(d)}?", o.shape, "what"))
    rng.shuffle(out)
    return out


VIDEO_ANSWERS = sorted(set(ANSWER_SPACE["colour"] + ANSWER_SPACE["shape"] + ANSWER_SPACE["number"]
                           + ANSWER_SPACE["direction"]))
