"""Random training views of an emoji caption, for the augment stage and for on-the-fly fine-tuning.

A caption is a CLDR name and short names separated by `;` ("man police officer; male-police-officer").
Real users and other vendors name an emoji with some of those words, in some order, so a view keeps a
subset of the parts and words, never none. Views are a pure function of (text, strength, seed).
"""

from __future__ import annotations

import random
import re


def augment_text(text: str, strength: float, seed: int) -> str:
    """A random view of `text`: whitespace collapsed, parts joined by "; ", never empty if `text` has a word.

    `strength` in [0, 1] scales every op's probability; 0 returns `text` unchanged.
    """
    if not 0.0 <= strength <= 1.0:
        raise ValueError(f"augmentation strength must be in [0, 1], got {strength!r}")
    parts = [part.split() for part in text.split(";")]
    parts = [words for words in parts if words]
    if strength == 0 or not parts:
        return text
    rng = random.Random(seed)
    if rng.random() < 0.3 * strength:  # "male-police-officer" -> "male police officer", so its words can drop
        parts = [parts[0]] + [re.sub(r"[-_]+", " ", " ".join(words)).split() or words for words in parts[1:]]
    if len(parts) > 1 and rng.random() < 0.5 * strength:
        del parts[rng.randrange(len(parts))]
    # Token dropout; a part that would lose every word keeps one at random.
    parts = [[w for w in words if rng.random() >= 0.15 * strength] or [rng.choice(words)] for words in parts]
    swappable = [words for words in parts if len(words) > 1]
    if swappable and rng.random() < 0.3 * strength:
        words = rng.choice(swappable)
        i = rng.randrange(len(words) - 1)
        words[i], words[i + 1] = words[i + 1], words[i]
    return "; ".join(" ".join(words) for words in parts)
