"""The text of demo labs: vocabularies with Zipf weights, and titles, authors, categories, notes.

Every list of words (demo_words.py, demo_nouns.py) is drawn with Zipf weights, 1/(rank + q)^s,
so a few words are in many labs and most in few, as in text people write. The long tail is
carried by the keywords: nouns of titles and notes, real ones first, then generated compounds
of two English words, 10,000 in all. No other word of the demo text shares a lexeme with a
keyword, so the share of labs whose search_vector holds a keyword follows from its weight and
from how many keyword fields a lab has (`keyword_share`); `term_for_share` names the keyword
expected in a given share of a catalogue, for benchmarks:

    term_for_share(1 / 10)       # a very common term, about 100,000 labs in 1,000,000
    term_for_share(1 / 175)      # a medium one, about 5,700
    term_for_share(1 / 150_000)  # a rare one, a handful

Notes go from none (a null or an empty string) to more than a thousand words: the number of
sentences is log-normal (median 3, a few percent over 200 words), each sentence one of
NOTE_TEMPLATES with its fields filled.
"""

from __future__ import annotations

import math
import random
import re
from bisect import bisect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from itertools import accumulate

from scriptlabs.labs import demo_nouns as nouns
from scriptlabs.labs import demo_words as words

KEYWORD_COUNT = 10_000
# Zipf weights of the keywords, 1/(rank + 20)^1.7: 15 keywords in one lab in twenty or more
# (2 in one in ten), 113 in one in 175 or more, and 4,400 in one in 100,000 or fewer (1,600
# in at most five labs in a million).
KEYWORD_EXPONENT = 1.7
KEYWORD_OFFSET = 20

NOTES_NULL = 0.38  # share of labs without notes (null)
NOTES_EMPTY = 0.04  # and with an empty string, as a form sends it
NOTES_MEDIAN_SENTENCES = 3
NOTES_SIGMA = 1.0  # of the log-normal number of sentences
NOTES_MAX_SENTENCES = 160
NOTES_MAX_LENGTH = 10_000  # labs_notes_check
AUTHOR_POOL = 50_000  # distinct authors a catalogue draws from
CO_AUTHORED = 0.05
SERIES = 0.06

Zipf = tuple[Sequence[str], list[float]]  # words and their cumulative weights, ending in 1.0


def zipf_cumulative(n: int, exponent: float = 1.0, offset: float = 0.0) -> list[float]:
    """Cumulative Zipf weights 1/(rank + offset)^exponent of ranks 1..n, scaled to end in 1."""
    cum = list(accumulate((rank + offset) ** -exponent for rank in range(1, n + 1)))
    total = cum[-1]
    cum = [c / total for c in cum]
    cum[-1] = 1.0  # bisect(cum, random()) then never runs past the end
    return cum


def _zipf(population: Sequence[str], exponent: float = 1.0, offset: float = 0.0) -> Zipf:
    return population, zipf_cumulative(len(population), exponent, offset)


def capitalised(text: str) -> str:
    return text[:1].upper() + text[1:]


_IRREGULAR_PLURALS = {"ox": "oxen", "goose": "geese"}
_ES_AFTER_O = ("echo", "hero", "potato", "tomato", "volcano", "torpedo", "mosquito")


def plural(noun: str) -> str:
    """The English plural of a keyword noun (the keywords avoid the irregular ones)."""
    if noun in _IRREGULAR_PLURALS:
        return _IRREGULAR_PLURALS[noun]
    if noun.endswith("y") and noun[-2:-1] not in ("a", "e", "i", "o", "u"):
        return noun[:-1] + "ies"
    if noun.endswith(("s", "x", "z", "ch", "sh")) or noun.endswith(_ES_AFTER_O):
        return noun + "es"
    return noun + "s"


_AN_EXCEPTIONS = ("uni", "use", "usu", "uti", "ure", "eu", "one", "once")
_AN_SILENT_H = ("hour", "honest", "honour", "heir")


def with_article(word: str, capital: bool = False) -> str:
    """`word` after "a" or "an", whichever its first sound asks for."""
    lower = word.lower()
    vowel = lower[:1] in ("a", "e", "i", "o", "u") and not lower.startswith(_AN_EXCEPTIONS)
    article = "an" if vowel or lower.startswith(_AN_SILENT_H) else "a"
    return f"{capitalised(article) if capital else article} {word}"


def _compounds(real: set[str]) -> list[str]:
    found: dict[str, None] = {}
    for head in nouns.COMPOUND_HEADS:
        for tail in nouns.COMPOUND_TAILS:
            # no "stonestone", no "shelllight", none written as a real noun
            if head != tail and head[-1] != tail[0] and head + tail not in real:
                found[head + tail] = None
    compounds = list(found)
    random.Random("scriptlabs demo compounds").shuffle(compounds)
    return compounds


def _toponyms(keywords: set[str]) -> list[str]:
    names = [
        head + tail
        for head in words.TOPONYM_HEADS
        for tail in words.TOPONYM_TAILS
        if head[-1].lower() != tail[0] and (head + tail).lower() not in keywords  # "Garden"
    ]
    random.Random("scriptlabs demo toponyms").shuffle(names)
    return names


def _shuffled(items: Sequence[str], seed: str) -> list[str]:
    out = list(items)
    random.Random(seed).shuffle(out)
    return out


KEYWORDS: tuple[str, ...] = (
    *nouns.REAL_NOUNS,
    *_compounds(set(nouns.REAL_NOUNS))[: KEYWORD_COUNT - len(nouns.REAL_NOUNS)],
)
KEYWORD_CUM = zipf_cumulative(len(KEYWORDS), KEYWORD_EXPONENT, KEYWORD_OFFSET)
TOPONYMS: tuple[str, ...] = tuple(_toponyms(set(KEYWORDS)))
# generated toponyms after the real names, for surnames as for places
SURNAMES: tuple[str, ...] = tuple(
    dict.fromkeys((*words.LAST_NAMES, *TOPONYMS[: len(TOPONYMS) // 2]))
)
PLACE_NAMES: tuple[str, ...] = tuple(
    dict.fromkeys((*words.PLACES, *TOPONYMS[len(TOPONYMS) // 2 :]))
)

_keyword_forms = {
    "n": KEYWORDS,
    "ns": tuple(plural(w) for w in KEYWORDS),
    "an": tuple(with_article(w) for w in KEYWORDS),
    "An": tuple(with_article(w, capital=True) for w in KEYWORDS),
    "N": tuple(capitalised(w) for w in KEYWORDS),
    "Ns": tuple(capitalised(plural(w)) for w in KEYWORDS),
    "AN": tuple(with_article(capitalised(w), capital=True) for w in KEYWORDS),
}
KEYWORD_FIELDS = frozenset(_keyword_forms)
_first_names = _shuffled(words.FIRST_NAMES, "scriptlabs demo first names")
_FIELDS: dict[str, Zipf] = {
    **{kind: (forms, KEYWORD_CUM) for kind, forms in _keyword_forms.items()},
    "a": _zipf(words.NOTE_ADJECTIVES, offset=2),
    "aa": _zipf([with_article(w) for w in words.NOTE_ADJECTIVES], offset=2),
    "Aa": _zipf([with_article(w, capital=True) for w in words.NOTE_ADJECTIVES], offset=2),
    "r": _zipf(words.REVIEW_NOUNS, offset=2),
    "v": _zipf(words.NOTE_VERBS, offset=2),
    "p": _zipf(PLACE_NAMES, offset=5),
    "P": _zipf(PLACE_NAMES, offset=5),
    "f": _zipf(_first_names, offset=10),
    "F": _zipf(_first_names, offset=10),
    "T": _zipf(words.TITLE_ADJECTIVES, offset=2),
}

_FIELD = re.compile(r"\{(\w+)\}")


@dataclass(frozen=True, slots=True)
class Template:
    """A sentence or title with `{field}`s: the format string and what fills each field."""

    text: str  # with "{}" for each field
    fields: tuple[Zipf, ...]
    keywords: int  # how many of the fields are keywords


def compile_template(template: str, extra: dict[str, Zipf] | None = None) -> Template:
    kinds = _FIELD.findall(template)
    table = _FIELDS | (extra or {})
    return Template(
        text=_FIELD.sub("{}", template),
        fields=tuple(table[kind] for kind in kinds),
        keywords=sum(kind in KEYWORD_FIELDS for kind in kinds),
    )


_CATEGORY_NAMES = [name for name, _ in words.CATEGORIES]
_CATEGORY_KINDS = [kind for _, kind in words.CATEGORIES]
_CATEGORY_CUM = zipf_cumulative(len(_CATEGORY_NAMES))
_FICTION = tuple(compile_template(t) for t in words.FICTION_TITLES)
_NONFICTION = {
    kind: tuple(
        compile_template(
            t,
            {
                "t": _zipf(topics),
                "Tt": _zipf([capitalised(topic) for topic in topics]),
            },
        )
        for t in words.NONFICTION_TITLES
    )
    for kind, topics in words.TOPICS.items()
}
_NOTES = tuple(compile_template(t) for t in words.NOTE_TEMPLATES)


def _sentence_cumulative() -> list[float]:
    """P(S <= s) of the number of sentences S of a lab's notes, s = 0..NOTES_MAX_SENTENCES."""

    def below(x: float) -> float:  # P(log-normal < x)
        z = (math.log(x) - math.log(NOTES_MEDIAN_SENTENCES)) / NOTES_SIGMA
        return 0.5 * (1 + math.erf(z / math.sqrt(2)))

    none = NOTES_NULL + NOTES_EMPTY
    cum = [none]
    for s in range(1, NOTES_MAX_SENTENCES + 1):
        upper = 1.0 if s == NOTES_MAX_SENTENCES else below(s + 0.5)
        cum.append(none + (1 - none) * upper)  # 0.5 .. 1.5 rounds to one sentence, and so on
    cum[-1] = 1.0
    return cum


_SENTENCES_CUM = _sentence_cumulative()
_AUTHOR_SHAPES = ("{} {}", "{} {}", "{} {}", "{} {}", "{} {}", "{} {}", "{} {}", "{} {}. {}")


@cache
def _authors() -> tuple[tuple[str, ...], list[float]]:
    """A fixed pool of authors, drawn from with Zipf weights: a few in many labs, most in few."""
    rng = random.Random("scriptlabs demo authors")
    rand = rng.random
    firsts, first_cum = _FIELDS["f"]
    surnames_cum = zipf_cumulative(len(SURNAMES), offset=10)
    pool = []
    for _ in range(AUTHOR_POOL):
        first = firsts[bisect(first_cum, rand())]
        last = SURNAMES[bisect(surnames_cum, rand())]
        if rand() < 0.1:
            pool.append(f"{first} {chr(65 + int(rand() * 26))}. {last}")
        else:
            pool.append(f"{first} {last}")
    return tuple(pool), zipf_cumulative(AUTHOR_POOL, offset=25)


TextFields = tuple[str, str, str | None, str | None]  # title, author, category, notes


def text_writer(rand: Callable[[], float]) -> Callable[[], TextFields]:
    """A function that makes the title, author, category and notes of one lab from `rand`."""
    authors, author_cum = _authors()
    fiction = _FICTION
    nonfiction = _NONFICTION
    notes_templates = _NOTES
    sentences_cum = _SENTENCES_CUM
    null_share = NOTES_NULL / (NOTES_NULL + NOTES_EMPTY)

    def fill(template: Template) -> str:
        return template.text.format(*[f[bisect(c, rand())] for f, c in template.fields])

    def write() -> TextFields:
        # a category, then a title that suits it
        n = bisect(_CATEGORY_CUM, rand())
        kind = _CATEGORY_KINDS[n]
        category = None if rand() < 0.10 else _CATEGORY_NAMES[n]
        templates = fiction if kind == "fiction" else nonfiction[kind]
        title = fill(templates[int(rand() * len(templates))])
        if rand() < SERIES:
            title += words.SERIES_SUFFIXES[int(rand() * len(words.SERIES_SUFFIXES))]

        author = authors[bisect(author_cum, rand())]
        if rand() < CO_AUTHORED:
            author = f"{author} and {authors[bisect(author_cum, rand())]}"

        notes: str | None
        count = bisect(sentences_cum, rand())
        if count == 0:
            notes = None if rand() < null_share else ""
        else:
            chosen = [notes_templates[int(rand() * len(notes_templates))] for _ in range(count)]
            notes = " ".join([t.text for t in chosen]).format(
                *[f[bisect(c, rand())] for t in chosen for f, c in t.fields]
            )
            if len(notes) > NOTES_MAX_LENGTH:
                notes = notes[: notes.rindex(". ", 0, NOTES_MAX_LENGTH) + 1]
        return title, author, category, notes

    return write


def _fiction_share() -> float:
    weights = [b - a for a, b in zip([0.0, *_CATEGORY_CUM], _CATEGORY_CUM, strict=False)]
    return sum(w for w, kind in zip(weights, _CATEGORY_KINDS, strict=True) if kind == "fiction")


def keyword_share(rank: int) -> float:
    """The expected share of labs whose search_vector holds the keyword of `rank` (1 first).

    A keyword of probability p per keyword field is missing from a lab with probability
    E[(1 - p)^K], K the lab's number of keyword fields: those of its title (fiction only) and
    of its notes' sentences.
    """
    p = KEYWORD_CUM[rank - 1] - (KEYWORD_CUM[rank - 2] if rank > 1 else 0.0)
    x = 1.0 - p
    fiction = _fiction_share()
    title = (1 - fiction) + fiction * sum(x**t.keywords for t in _FICTION) / len(_FICTION)
    per_sentence = sum(x**t.keywords for t in _NOTES) / len(_NOTES)
    cum = _SENTENCES_CUM
    notes = cum[0] + sum((cum[s] - cum[s - 1]) * per_sentence**s for s in range(1, len(cum)))
    return 1.0 - title * notes


def keyword(rank: int) -> str:
    """The keyword of frequency `rank`, 1 the most common."""
    return KEYWORDS[rank - 1]


def term_for_share(share: float) -> str:
    """The keyword expected in the share of labs nearest to `share` (on a log scale).

    The same in every demo catalogue: it matches about `share` of any demo user's labs, e.g.
    term_for_share(1 / 175) about 5,700 of 1,000,000.
    """
    if not 0 < share < 1:
        raise ValueError("share must be between 0 and 1")
    low, high = 1, len(KEYWORDS)
    while low < high:  # the first rank whose share is at most `share`
        mid = (low + high) // 2
        if keyword_share(mid) > share:
            low = mid + 1
        else:
            high = mid
    candidates = [r for r in (low - 1, low) if r >= 1]
    best = min(candidates, key=lambda r: abs(math.log(keyword_share(r) / share)))
    return keyword(best)
