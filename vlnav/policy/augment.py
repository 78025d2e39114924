"""Word-permutation augmentation of training sequences.

A policy trained on a few dozen houses can memorise them: in this house, the kitchen is
behind ``<E>``. Matching the instruction's landmarks to the candidates' words is what
transfers to unseen houses. ``data.augment: p`` rewrites a fraction ``p`` of the training
sequences with the object words, the room words and the colour words each permuted at
random, one permutation for the whole sequence (instruction, every candidate line, every
step): "walk to the red sofa" with ``... red sofa right 2 <C>`` becomes "walk to the green
piano" with ``... green piano right 2 <C>``. Which candidate matches the instruction, and so
the expert's answer, is unchanged; what a word means in one house no longer helps.

The permutation acts on token ids (the default tokenizer is word-level), so a sequence is
tokenised once and augmented for free. With a sub-word tokenizer (``policy.pretrained``)
only the words that are single tokens are permuted.
"""

from __future__ import annotations

import numpy as np

from vlnav.policy.prompt import words

# words inside object and room names that are not the thing's identity
_KEEP = frozenset(["room", "of", "set", "the", "a"])


def word_classes() -> list[list[str]]:
    """[object and room words, colour words], from the generator's vocabulary and the
    speaker's synonyms."""
    from vlnav.instruct.lexicon import HEAD_NOUNS, OBJECT_SYNONYMS, ROOM_SYNONYMS, Lexicon

    lex = Lexicon.default()
    nouns: set[str] = set()
    for phrase in [
        *lex.categories,
        *lex.rooms,
        *HEAD_NOUNS,
        *(s for v in OBJECT_SYNONYMS.values() for s in v),
        *(s for v in ROOM_SYNONYMS.values() for s in v),
    ]:
        nouns.update(words(phrase))
    colours: set[str] = set()
    for c in lex.colours:
        colours.update(words(c))
    colours -= {"light", "dark"}  # shade modifiers stay put
    nouns -= _KEEP | colours
    return [sorted(nouns), sorted(colours)]


class WordPermuter:
    """Draws a token-id remapping table that permutes each word class within itself."""

    def __init__(self, tokenizer, classes: list[list[str]] | None = None) -> None:
        vocab = tokenizer.get_vocab()
        self.size = max(len(tokenizer), max(vocab.values()) + 1)
        self.classes = []
        for cls in classes if classes is not None else word_classes():
            ids = sorted({vocab[w] for w in cls if w in vocab})
            if len(ids) > 1:
                self.classes.append(np.asarray(ids, np.int64))

    def table(self, rng: np.random.Generator) -> np.ndarray:
        """A (vocab,) int64 map: ``table[ids]`` is the augmented sequence."""
        t = np.arange(self.size, dtype=np.int64)
        for ids in self.classes:
            t[ids] = ids[rng.permutation(len(ids))]
        return t
