"""Caption text: word tokens, a word vocabulary, parsing mentions back out of free text, and
caption scores (object-mention precision / recall / F1, room accuracy, corpus BLEU-4).

Pixel captioners produce free text; ``parse_caption`` recovers the structured
:class:`~vlnav.perception.base.Caption` (room, objects with colour and side, doorway) with the
house generator's vocabulary (``assets/objects.yaml``, ``assets/rooms.yaml``), so candidate
details and the scores work the same for every captioner.

Example:
    >>> parse_caption("A kitchen with a white fridge on the right, a doorway ahead.").room
    'kitchen'
"""

from __future__ import annotations

import functools
import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from vlnav.perception.base import Caption, Mention

PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"
SPECIALS = (PAD, BOS, EOS, UNK)
_TOKEN = re.compile(r"[a-z0-9]+|[.,;:!?]")


def words(text: str) -> list[str]:
    """Lower-case word and punctuation tokens: "A sofa, ahead." -> [a, sofa, ",", ahead, "."]."""
    return _TOKEN.findall(text.lower())


def detokenize(tokens: Iterable[str]) -> str:
    """The inverse of :func:`words` up to case: punctuation attaches, the first letter is capital."""
    out = ""
    for t in tokens:
        if t in SPECIALS:
            continue
        out += t if (t in ".,;:!?" or not out) else " " + t
    return out[:1].upper() + out[1:]


class WordVocab:
    """A word-level vocabulary: ids 0..3 are <pad> <bos> <eos> <unk>, then words by frequency."""

    def __init__(self, itos: Sequence[str]):
        if tuple(itos[:4]) != SPECIALS:
            raise ValueError(f"a vocabulary starts with {SPECIALS}")
        self.itos = list(itos)
        self.stoi = {w: i for i, w in enumerate(self.itos)}

    @classmethod
    def build(cls, texts: Iterable[str], min_count: int = 1) -> WordVocab:
        counts = Counter(w for t in texts for w in words(t))
        kept = sorted(
            (w for w, c in counts.items() if c >= min_count), key=lambda w: (-counts[w], w)
        )
        return cls([*SPECIALS, *kept])

    def __len__(self) -> int:
        return len(self.itos)

    @property
    def pad(self) -> int:
        return 0

    @property
    def bos(self) -> int:
        return 1

    @property
    def eos(self) -> int:
        return 2

    def encode(self, text: str, max_len: int | None = None) -> list[int]:
        """<bos> w1 ... wn <eos> (truncated to ``max_len`` ids, keeping <eos>)."""
        ids = [self.bos, *(self.stoi.get(w, 3) for w in words(text)), self.eos]
        if max_len is not None and len(ids) > max_len:
            ids = [*ids[: max_len - 1], self.eos]
        return ids

    def decode(self, ids: Iterable[int]) -> str:
        toks = []
        for i in ids:
            if i == self.eos:
                break
            if i in (self.pad, self.bos):
                continue
            toks.append(self.itos[i] if 0 <= i < len(self.itos) else UNK)
        return detokenize(toks)


# ----------------------------------------------------------------------------- parsing
@dataclass(frozen=True)
class TextVocabulary:
    """Multi-word phrases of the house vocabulary, longest first (for greedy matching)."""

    categories: tuple[tuple[str, ...], ...]
    colours: tuple[tuple[str, ...], ...]
    rooms: tuple[tuple[str, ...], ...]


@functools.lru_cache(maxsize=4)
def text_vocabulary(assets_dir: str | None = None) -> TextVocabulary:
    from vlnav.scenes.generator import load_vocabulary

    voc = load_vocabulary(assets_dir)
    cats = set(voc.objects)
    colours = {c for o in voc.objects.values() for c, _ in o.colours}
    rooms = set(voc.rooms)

    def phrases(names: Iterable[str]) -> tuple[tuple[str, ...], ...]:
        return tuple(sorted((tuple(words(n)) for n in names), key=lambda p: (-len(p), p)))

    return TextVocabulary(phrases(cats), phrases(colours), phrases(rooms))


def _match(toks: list[str], i: int, phrases: Sequence[tuple[str, ...]]) -> tuple[str, ...] | None:
    for p in phrases:
        if tuple(toks[i : i + len(p)]) == p:
            return p
    return None


_SIDES = {"left": "left", "right": "right", "ahead": "ahead"}


def parse_caption(text: str, vocab: TextVocabulary | None = None) -> Caption:
    """Recover a Caption (room, object mentions with colour and side, doorway) from free text.

    Categories are found by greedy longest match; a colour directly before a category is its
    colour; the first of left / right / ahead within the next four words is its side. The
    room is the first room type named before any object (``A kitchen with ...``).
    """
    vocab = vocab or text_vocabulary()
    toks = words(text)
    mentions: list[Mention] = []
    room: str | None = None
    doorway = False
    i = 0
    while i < len(toks):
        if toks[i] in ("doorway", "door"):
            doorway = True
            i += 1
            continue
        r = _match(toks, i, vocab.rooms)
        here = _match(toks, i, vocab.categories)  # "kitchen counter" is not the room "kitchen"
        if r is not None and room is None and not mentions and len(r) >= len(here or ()):
            room = " ".join(r)
            i += len(r)
            continue
        col = _match(toks, i, vocab.colours)
        j = i + (len(col) if col else 0)
        cat = _match(toks, j, vocab.categories)
        if cat is None:
            i += 1
            continue
        k = j + len(cat)
        side = next((_SIDES[t] for t in toks[k : k + 4] if t in _SIDES), None)
        mentions.append(Mention(" ".join(cat), " ".join(col) if col else None, None, side))
        i = k
    return Caption(text=text, mentions=mentions, room=room, doorway=doorway)


# ----------------------------------------------------------------------------- scores
def mention_scores(predictions: Sequence[Caption], references: Sequence[Caption]) -> dict[str, Any]:
    """Micro-averaged object-mention precision / recall / F1 over categories (a multiset per
    caption), the same with colour ("blue sofa"), and room-type accuracy (None must match None).
    """
    tp = fp = fn = 0
    ctp = cfp = cfn = 0
    room_ok = 0
    for p, r in zip(predictions, references, strict=True):
        pc, rc = Counter(m.category for m in p.mentions), Counter(m.category for m in r.mentions)
        hit = sum((pc & rc).values())
        tp, fp, fn = tp + hit, fp + sum(pc.values()) - hit, fn + sum(rc.values()) - hit
        pn, rn = Counter(m.name for m in p.mentions), Counter(m.name for m in r.mentions)
        chit = sum((pn & rn).values())
        ctp, cfp, cfn = ctp + chit, cfp + sum(pn.values()) - chit, cfn + sum(rn.values()) - chit
        room_ok += int(p.room == r.room)

    def prf(tp: int, fp: int, fn: int) -> tuple[float, float, float]:
        prec = tp / (tp + fp) if tp + fp else 0.0
        rec = tp / (tp + fn) if tp + fn else 0.0
        f1 = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
        return prec, rec, f1

    prec, rec, f1 = prf(tp, fp, fn)
    _, _, cf1 = prf(ctp, cfp, cfn)
    n = max(1, len(references))
    return {
        "object_precision": prec,
        "object_recall": rec,
        "object_f1": f1,
        "object_colour_f1": cf1,
        "room_accuracy": room_ok / n,
        "captions": len(references),
    }


def bleu4(hypotheses: Sequence[str], references: Sequence[str]) -> float:
    """Corpus BLEU-4 (Papineni et al. 2002), one reference per hypothesis, on :func:`words`
    tokens: the geometric mean of clipped 1..4-gram precisions times the brevity penalty."""
    matches = [0] * 4
    totals = [0] * 4
    hyp_len = ref_len = 0
    for h, r in zip(hypotheses, references, strict=True):
        ht, rt = words(h), words(r)
        hyp_len += len(ht)
        ref_len += len(rt)
        for n in range(1, 5):
            hc = Counter(tuple(ht[i : i + n]) for i in range(len(ht) - n + 1))
            rc = Counter(tuple(rt[i : i + n]) for i in range(len(rt) - n + 1))
            matches[n - 1] += sum((hc & rc).values())
            totals[n - 1] += max(0, len(ht) - n + 1)
    if hyp_len == 0 or min(matches) == 0:
        return 0.0
    log_p = sum(math.log(m / t) for m, t in zip(matches, totals)) / 4
    bp = 1.0 if hyp_len > ref_len else math.exp(1 - ref_len / hyp_len)
    return bp * math.exp(log_p)


def caption_scores(hypotheses: Sequence[str], references: Sequence[Caption]) -> dict[str, Any]:
    """All scores of generated texts against reference (semantic) captions."""
    vocab = text_vocabulary()
    preds = [parse_caption(h, vocab) for h in hypotheses]
    out = mention_scores(preds, list(references))
    out["bleu4"] = bleu4(hypotheses, [r.text for r in references])
    return out
