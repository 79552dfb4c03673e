"""What an action's name and a model's id may be, and when two names are the same action.

    check_action_name(name)     the name as it is kept (spaces collapsed, NFC), or TeachError
    name_key(name)              what names are compared by: two names with one key are one action
    model_id_for(name, stamp)   a taught model's id, made from its name
    valid_id(text)              whether `text` is an id (of a model, a clip or a job)

A name is kept as it was written first, for display; names are compared by their key: the name
after NFKC (fullwidth "ｗａｌｋ" is "walk"), case folded ("ß" is "ss", "SS" is "ss"), with the
Cyrillic and Greek letters that look like Latin ones taken as those ("wаlk" with a Cyrillic а is
"walk"). The look-alike table maps each letter of one alphabet to a different Latin letter, so two
names written in one alphabet have the same key only when they are the same name.

An id starts with a letter or digit and has only ASCII letters, digits and . _ - (at most 81): it
is a file name and a URL path segment on every system. Every route that takes an id, and every list
that shows one, uses `valid_id`.
"""

from __future__ import annotations

import re
import unicodedata

from actionrec.errors import ActionrecError

MAX_NAME = 40
NAME_PATTERN = re.compile(r"^[\w][\w .'&+-]*$")  # letters, digits, _, and spaces . ' & + - inside
ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,80}$")

# Lower-case Cyrillic and Greek letters (names are compared case folded) that look like a Latin
# letter, upper or lower case. One Latin letter per letter of each alphabet.
LOOK_ALIKES = str.maketrans({
    # Cyrillic
    "а": "a", "в": "b", "е": "e", "н": "h", "і": "i", "ј": "j", "к": "k", "м": "m", "о": "o",
    "р": "p", "с": "c", "ѕ": "s", "т": "t", "у": "y", "х": "x", "ԁ": "d", "ԛ": "q", "ԝ": "w", "ӏ": "l",
    # Greek
    "α": "a", "β": "b", "ε": "e", "ζ": "z", "η": "h", "ι": "i", "κ": "k", "μ": "m", "ν": "v", "ο": "o",
    "ρ": "p", "τ": "t", "υ": "u", "χ": "x",
})


class TeachError(ActionrecError, ValueError):
    """The examples cannot teach a model: too few, unreadable, badly named, or a base that cannot be taught."""

    reason = "cannot_teach"


def check_action_name(name: str) -> str:
    """`name`, its spaces collapsed and in NFC (as it looks), or TeachError saying what a name may be."""
    stripped = unicodedata.normalize("NFC", " ".join(str(name).split()))
    if not stripped:
        raise TeachError("An action's name is empty. Name it, e.g. 'squat' or 'waving'.")
    if len(stripped) > MAX_NAME:
        raise TeachError(f"The action name {stripped[:MAX_NAME]!r}... is {len(stripped)} characters long; "
                         f"keep it to {MAX_NAME}.")
    if not NAME_PATTERN.match(stripped):
        raise TeachError(f"The action name {stripped!r} has characters a name cannot have: use letters, digits, "
                         "spaces and _ . ' & + - (not starting with a sign).")
    return stripped


def name_key(name: str) -> str:
    """What action names are compared by: NFKC, case folded, look-alike letters taken as Latin ones."""
    folded = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", " ".join(name.split())).casefold())
    return folded.translate(LOOK_ALIKES)


def valid_id(text: str) -> bool:
    """Whether `text` is an id: a letter or digit, then ASCII letters, digits and . _ - (81 at most)."""
    return ID_PATTERN.match(text) is not None


def model_id_for(name: str, stamp: str) -> str:
    """The id of a model taught under `name` at `stamp`: the name in lower-case ASCII letters, digits
    and . _ - (its other characters made '-', 'taught' when none is left), then the stamp."""
    slug = re.sub(r"[^a-z0-9._-]+", "-", unicodedata.normalize("NFKC", name).casefold())
    slug = re.sub(r"^[^a-z0-9]+|[^a-z0-9]+$", "", slug)[:MAX_NAME]
    return f"{slug or 'taught'}-{stamp}"
