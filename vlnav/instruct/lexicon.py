"""Words for things in a house: object categories, room types, colours, and their synonyms.

The template speaker draws its nouns from here and the validator uses the same tables to
find which objects and rooms a generated instruction mentions, so that a phrase the template
can write is always one the validator understands.

Example:
    >>> lex = Lexicon.default()
    >>> [(m.kind, sorted(m.targets)) for m in lex.mentions("Pass the couch, stop at the table.")]
    [('object', ['sofa']), ('object', ['coffee table', 'desk', 'dining table'])]
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass

# other names a speaker may use for a category (category -> synonyms)
OBJECT_SYNONYMS: dict[str, tuple[str, ...]] = {
    "sofa": ("couch",),
    "television": ("tv", "tv set"),
    "tv stand": ("tv cabinet", "tv unit"),
    "fridge": ("refrigerator",),
    "bookshelf": ("bookcase", "book shelf"),
    "trash can": ("trash bin", "garbage can", "bin", "wastebasket"),
    "painting": ("picture",),
    "plant": ("potted plant", "houseplant"),
    "kitchen counter": ("counter", "countertop"),
    "sink cabinet": ("kitchen sink",),
    "bathroom sink": ("basin", "wash basin"),
    "bathtub": ("tub", "bath tub"),
    "washing machine": ("washer",),
    "dining table": ("dinner table",),
    "office chair": ("desk chair",),
    "floor lamp": ("standing lamp",),
    "coat rack": ("coat stand",),
    "nightstand": ("night stand", "bedside table"),
    "wardrobe": ("closet",),
    "dresser": ("chest of drawers",),
}

# nouns that name any of several categories ("the table" may be the coffee or dining table)
HEAD_NOUNS: dict[str, tuple[str, ...]] = {
    "chair": ("office chair", "dining chair", "armchair"),
    "table": ("coffee table", "dining table", "desk"),
    "lamp": ("floor lamp", "table lamp"),
    "sink": ("sink cabinet", "bathroom sink"),
    "cabinet": ("cabinet", "filing cabinet", "sink cabinet"),
    "shelf": ("bookshelf",),
    "shelves": ("bookshelf",),
}

ROOM_SYNONYMS: dict[str, tuple[str, ...]] = {
    "living room": ("lounge", "sitting room", "family room"),
    "hallway": ("hall", "corridor"),
    "bathroom": ("restroom", "washroom"),
    "office": ("study",),
    "laundry room": ("utility room",),
    "dining room": (),
    "kitchen": (),
    "bedroom": (),
}

# used when assets/objects.yaml cannot be read (an installed package without assets)
FALLBACK_CATEGORIES = (
    "bed|nightstand|wardrobe|dresser|desk|office chair|bookshelf|filing cabinet|laptop|sofa|"
    "coffee table|armchair|tv stand|television|piano|floor lamp|plant|painting|dining table|"
    "dining chair|sideboard|vase|table lamp|fridge|stove|kitchen counter|sink cabinet|"
    "dishwasher|microwave|trash can|cabinet|toilet|bathroom sink|bathtub|shower|mirror|"
    "washing machine|dryer|laundry basket|ironing board|shoe rack|coat rack|bench"
)
FALLBACK_COLOURS = (
    "white|cream|beige|light grey|grey|dark grey|black|light brown|brown|dark brown|red|"
    "orange|yellow|green|dark green|olive|teal|light blue|blue|navy|purple|pink|silver"
)


@dataclass(frozen=True)
class Mention:
    """One object or room named in a text.

    ``targets`` are the categories (or room types) the phrase may refer to; ``colour`` is the
    colour word right before an object phrase, if any.
    """

    kind: str  # "object" | "room"
    phrase: str
    targets: frozenset[str]
    colour: str | None = None


class Lexicon:
    """Object categories, room types and colours, with a longest-match mention finder."""

    def __init__(
        self, categories: Iterable[str], rooms: Iterable[str], colours: Iterable[str]
    ) -> None:
        self.categories = sorted(set(categories))
        self.rooms = sorted(set(rooms) | set(ROOM_SYNONYMS))
        self.colours = sorted(set(colours), key=lambda c: (-len(c), c))
        phrases: dict[str, tuple[str, set[str]]] = {}

        def add(phrase: str, kind: str, target: str) -> None:
            k, targets = phrases.setdefault(phrase, (kind, set()))
            if k == kind:
                targets.add(target)

        for c in self.categories:
            add(c, "object", c)
            for s in OBJECT_SYNONYMS.get(c, ()):
                add(s, "object", c)
        for head, cats in HEAD_NOUNS.items():
            for c in cats:
                if c in self.categories:
                    add(head, "object", c)
        for r in self.rooms:
            add(r, "room", r)
            for s in ROOM_SYNONYMS.get(r, ()):
                add(s, "room", r)
        self._phrases = {p: (k, frozenset(t)) for p, (k, t) in phrases.items()}
        # longest phrases first, so "dining table" wins over "dining room" and "table"
        alternatives = "|".join(
            re.escape(p).replace(r"\ ", r"\s+")
            for p in sorted(self._phrases, key=lambda p: (-len(p), p))
        )
        colour = "|".join(re.escape(c).replace(r"\ ", r"\s+") for c in self.colours)
        self._re = re.compile(
            rf"\b(?:(?P<colour>{colour})\s+)?(?P<phrase>{alternatives})(?:e?s)?\b", re.IGNORECASE
        )

    @classmethod
    @functools.lru_cache(maxsize=1)
    def default(cls) -> Lexicon:
        """The generator's vocabulary (``assets/objects.yaml``, ``assets/rooms.yaml``)."""
        try:
            from vlnav.scenes.generator import load_vocabulary

            vocab = load_vocabulary()
            colours = {c for o in vocab.objects.values() for c, _ in o.colours}
            return cls(vocab.objects, vocab.rooms, colours)
        except Exception:  # no assets folder next to an installed package
            return cls(
                FALLBACK_CATEGORIES.split("|"),
                ROOM_SYNONYMS,
                FALLBACK_COLOURS.split("|"),
            )

    def with_categories(self, extra: Iterable[str]) -> Lexicon:
        """This lexicon plus categories found in a scene but not in the vocabulary."""
        extra = set(extra) - set(self.categories)
        if not extra:
            return self
        return Lexicon([*self.categories, *extra], self.rooms, self.colours)

    def mentions(self, text: str) -> list[Mention]:
        """Objects and rooms named in ``text``, in order (case-insensitive, plurals allowed)."""
        out = []
        for m in self._re.finditer(text):
            phrase = re.sub(r"\s+", " ", m.group("phrase").lower())
            kind, targets = self._phrases[phrase]
            colour = m.group("colour")
            out.append(
                Mention(
                    kind,
                    phrase,
                    targets,
                    re.sub(r"\s+", " ", colour.lower()) if colour and kind == "object" else None,
                )
            )
        return out

    @staticmethod
    def synonyms(category: str) -> tuple[str, ...]:
        """The category itself and the other names for it."""
        return (category, *OBJECT_SYNONYMS.get(category, ()))

    @staticmethod
    def room_names(room_type: str) -> tuple[str, ...]:
        return (room_type, *ROOM_SYNONYMS.get(room_type, ()))
