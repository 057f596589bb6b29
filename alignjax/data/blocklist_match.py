"""The AI-discourse blocklist of the ``filtered`` condition: its term file, compiled and matched.

A document is flagged in one of two stages (Tice et al. 2026, alignment pretraining):

- **instant**: it contains any term of an ``instant`` category: fictional AIs (HAL 9000,
  Skynet), AI-safety organisations, AI labs, AI systems and AI-safety jargon, AI figures;
- **two_stage**: it contains an intelligent-entity term (AI, artificial intelligence, robot,
  ...) *and*, anywhere in the same document, a negative term (deceive, rogue, take over, ...)
  or an existential-risk term (extinction, misaligned, power-seeking, ...).

The terms live in an editable JSON file, ``blocklist_terms.json`` next to this module (its
``_about`` explains the syntax and its ``_comment`` entries the choices on ambiguous terms);
``Blocklist.load(path)`` reads another one instead. Matching is case-insensitive on whole
words, except the few ``case_sensitive`` entries (``AI`` is one: lower-case "ai" and "Ai" are
common words and names, and the biblical city of Ai).

Speed: one big case-insensitive alternation in Python's ``re`` runs at ~1 MB/s, because the
engine tries every alternative at every word start. Each group of terms is therefore matched
in two steps: a *trigger* regex, a character trie of every alternative's lower-case literal
prefix ("skynet", "hal", "kill"), run case-sensitively over ``text.lower()`` where ``re`` can
skip non-matching branches on their first character; then the full regex with ``match`` at
each trigger position only. A term can only match where its prefix does, so nothing is
missed, and typical text triggers rarely. Terms of the two-stage modifier categories are only
searched in documents that have an entity term.

Categories mirror the study's Table 10 (instant: scifi_agents, ai_safety_orgs, ai_labs,
general_ai_terms, plus alignjax's ai_people; two_stage: entity, negative_verbs,
negative_adjectives, negative_nouns, xrisk). ``alignjax-data filter`` (:mod:`alignjax.data.blocklist`)
applies it to files and scores it on labelled documents.

In the training pipeline ``is_flagged`` is a Grain filter predicate on raw text: it is pure,
returns at the first hit, and a ``Blocklist`` pickles as its term spec (recompiled on load).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from pathlib import Path
from typing import Any

try:
    from re import _parser as _sre_parse  # Python >= 3.11
except ImportError:  # pragma: no cover
    import sre_parse as _sre_parse  # type: ignore[no-redef]

DEFAULT_TERMS = Path(__file__).with_name("blocklist_terms.json")
FORMAT = "alignjax-blocklist/1"
STAGES = ("instant", "two_stage")
ENTITY = "entity"  # the reserved two_stage category
_ENTRY_KEYS = ("terms", "case_sensitive", "regex")
_SEP = r"[\s\-]+"  # a space in a term: whitespace or hyphens
_JOIN = r"[\s\-]?"  # a hyphen inside a word: optional hyphen or space
_APOS = "['\u2019]"


class BlocklistError(ValueError):
    """A term file that cannot be used (unreadable, wrong shape, bad regex)."""


@dataclasses.dataclass(frozen=True)
class Flag:
    """Why a document was flagged.

    ``stage``: "instant" when any instant term matched, else "two_stage". ``category``: the
    category of the first instant match in the text, or for two-stage flags the modifier
    category (e.g. "negative_verbs", "xrisk") of the first modifier match. ``terms``: every distinct
    term that contributed, as written in the term file (a regex entry: the text it matched,
    lower-cased), in order of first occurrence: the instant terms, then the entity and
    modifier terms when the two-stage condition also holds.
    ``categories``: every category that contributed (entity never appears: it is only half).
    """

    stage: str
    category: str
    terms: tuple[str, ...]
    categories: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"stage": self.stage, "category": self.category, "terms": list(self.terms),
                "categories": list(self.categories)}


@dataclasses.dataclass(frozen=True)
class Match:
    """One term occurrence: ``part`` is "instant", "entity" or "modifier"."""

    part: str
    category: str
    term: str
    start: int
    end: int


# ----------------------------------------------------------------------------- compiling


# Trigger tokens: a lower-case character, or one of these separators (regex, as in term bodies).
_TOKENS = {"SEP": _SEP, "JOIN": _JOIN, "APOS": _APOS}
# How a trigger path ends: the term is over (a word boundary follows, optionally after a plural
# "s"), or only a prefix of it is literal (a stem "*", or a regex that goes on).
_END_PLAIN, _END_WORD, _END_OPEN = "(?!\\w)", "s?(?!\\w)", ""


def _plain_regex(term: str) -> tuple[str, tuple]:
    """A plain term -> (regex body, trigger path: (tokens, end))."""
    stem = term.endswith("*")
    core = term[:-1] if stem else term
    if not core.strip() or "*" in core:
        raise BlocklistError(f"bad term {term!r}: empty, or '*' not at the end")
    core = core.replace("\u2019", "'")
    words, tokens, end = [], [], None
    for i, word in enumerate(core.split()):
        pieces = [p for p in word.split("-") if p]
        words.append(_JOIN.join(re.escape(p).replace("'", _APOS) for p in pieces))
        for j, piece in enumerate(pieces):
            if end is None and (i or j):
                tokens.append("SEP" if j == 0 else "JOIN")
            for ch in piece:
                if end is not None:
                    break
                if ch == "'":
                    tokens.append("APOS")
                elif len(ch.lower()) == 1:
                    tokens.append(ch.lower())
                else:  # a character whose lower case is two characters: the trigger stops here
                    end = _END_OPEN
    body = _SEP.join(w for w in words if w)
    if stem:
        body += r"\w*"
    elif core[-1].isalpha():
        body += "s?"
    if end is None:
        end = _END_OPEN if stem else _END_WORD if core[-1].isalpha() else _END_PLAIN
    return body, (tuple(tokens), end)


_PARSED_TOKENS: dict[str, str] = {}


def _regex_path(regex: str) -> tuple:
    """The trigger path of a regex entry: the literal characters (and separators) every match
    starts with; open-ended unless the whole regex is such a run."""
    if not _PARSED_TOKENS:
        for name in ("SEP", "JOIN"):
            _PARSED_TOKENS[str(list(_sre_parse.parse(_TOKENS[name]))[0])] = name
    tokens: list[str] = []

    def walk(items) -> bool:  # False once the literal run ends
        for item in items:
            op, av = item
            name = str(op)
            if name == "LITERAL" and len(chr(av).lower()) == 1:
                tokens.append(chr(av).lower())
            elif name in ("ASSERT", "ASSERT_NOT", "AT"):
                continue  # zero width: dropping a condition keeps the trigger necessary
            elif name == "SUBPATTERN":
                if not walk(av[-1]):
                    return False
            elif str(item) in _PARSED_TOKENS:
                tokens.append(_PARSED_TOKENS[str(item)])
            else:
                return False
        return True

    try:
        complete = walk(_sre_parse.parse(regex, re.IGNORECASE))
    except Exception:  # a private parser API: no trigger is always safe
        return (), _END_OPEN
    while tokens and tokens[-1] in _TOKENS:  # a path never ends in a separator
        tokens.pop()
        complete = False
    return tuple(tokens), (_END_PLAIN if complete else _END_OPEN)


def _trie_regex(paths: set[tuple]) -> str:
    """One regex for all trigger paths, factored by shared starts so that ``re`` rejects most
    positions on their first character."""
    trie: dict = {}
    for tokens, end in paths:
        node = trie
        for tok in tokens:
            node = node.setdefault(tok, {})
        node.setdefault(None, set()).add(end)

    def emit(node: dict) -> str:
        ends = node.get(None, set())
        if _END_OPEN in ends:  # any continuation matches already
            return ""
        alts = [(_TOKENS[t] if t in _TOKENS else re.escape(t)) + emit(child)
                for t, child in sorted((k, v) for k, v in node.items() if k is not None)]
        if _END_WORD in ends:
            alts.append(_END_WORD)
        elif _END_PLAIN in ends:
            alts.append(_END_PLAIN)
        return alts[0] if len(alts) == 1 else "(?:" + "|".join(alts) + ")"

    return emit(trie)


def _entry(cat: str, value: Any, where: str) -> dict[str, list[str]]:
    if isinstance(value, list):
        value = {"terms": value}
    if not isinstance(value, dict):
        raise BlocklistError(f"{where}: category {cat!r} must be a list of terms or an object")
    unknown = [k for k in value if not k.startswith("_") and k not in _ENTRY_KEYS]
    if unknown:
        raise BlocklistError(f"{where}: category {cat!r}: unknown keys {unknown}; valid: {list(_ENTRY_KEYS)}")
    out = {}
    for key in _ENTRY_KEYS:
        items = value.get(key, [])
        if not isinstance(items, list) or not all(isinstance(t, str) and t.strip() for t in items):
            raise BlocklistError(f"{where}: {cat}.{key} must be a list of non-empty strings")
        out[key] = items
    if not any(out.values()):
        raise BlocklistError(f"{where}: category {cat!r} has no terms")
    return out


class _Group:
    """Categories matched together: trigger paths + one full regex (+ prefix-less rest)."""

    def __init__(self, cats: dict[str, dict[str, list[str]]], where: str):
        self.names = list(cats)
        self.paths: set[tuple] = set()
        full_parts, loose_parts = [], []
        self.alternatives: dict[str, list[tuple[str, re.Pattern]]] = {}
        for i, (cat, entry) in enumerate(cats.items()):
            alts = []  # (sort key, term, body, trigger path)
            for term in entry["terms"]:
                body, path = _plain_regex(term)
                alts.append((len(term), term, body, path))
            for term in entry["case_sensitive"]:
                body, path = _plain_regex(term)
                alts.append((len(term), term, f"(?-i:{body})", path))
            for regex in entry["regex"]:
                try:
                    compiled = re.compile(regex, re.IGNORECASE)
                except re.error as e:
                    raise BlocklistError(f"{where}: {cat}: bad regex {regex!r}: {e}") from None
                if compiled.groups:
                    raise BlocklistError(f"{where}: {cat}: regex {regex!r} has capturing groups; use (?:...)")
                alts.append((len(regex), regex, f"(?:{regex})", _regex_path(regex)))
            alts.sort(key=lambda a: -a[0])  # longest first: the alternation takes the first that fits
            # Regex entries are reported by the text they matched (normalized), plain terms as written.
            self.alternatives[cat] = [(term, re.compile(rf"(?:{body})", re.IGNORECASE))
                                      for _, term, body, _ in alts if term not in entry["regex"]]
            with_path = [body for _, _, body, path in alts if path[0]]
            without = [body for _, _, body, path in alts if not path[0]]
            self.paths.update(path for *_, path in alts if path[0])
            if with_path:
                full_parts.append(f"(?P<c{i}>{'|'.join(with_path)})")
            if without:
                loose_parts.append(f"(?P<c{i}>{'|'.join(without)})")
        try:
            full = re.compile(rf"(?<!\w)(?:{'|'.join(full_parts)})(?!\w)", re.IGNORECASE) if full_parts else None
            # Alternatives with no literal start (regexes starting with a class): a plain search.
            self.loose = re.compile(rf"(?<!\w)(?:{'|'.join(loose_parts)})(?!\w)", re.IGNORECASE) if loose_parts else None
        except re.error as e:
            raise BlocklistError(f"{where}: terms do not combine into one regex: {e}") from None
        self.match = full.match if full is not None else (lambda text, pos: None)
        self._canonical: dict[tuple[str, str], str] = {}

    def category(self, m: re.Match) -> str:
        return self.names[int(m.lastgroup[1:])]

    def term(self, category: str, matched: str) -> str:
        """The term-file entry that produced ``matched`` (cached)."""
        key = (category, matched)
        term = self._canonical.get(key)
        if term is None:
            norm = " ".join(matched.lower().split())
            alts = self.alternatives[category]
            term = next((t for t, _ in alts if t.lower() == norm), None) or next(
                (t for t, rx in alts if rx.fullmatch(matched)), norm)
            if len(self._canonical) < 100_000:
                self._canonical[key] = term
        return term


def _trigger(groups: list[_Group | None]) -> re.Pattern | None:
    """Positions where a term of ``groups`` may start, scanned over ``" " + lower-case text``.

    The match is the character before the term (zero-width lookahead for the term, so a
    rejected trigger never hides a term that starts inside it). ``[^a-z0-9_]`` is a superset
    of the non-word characters, so no term start is missed, and as the pattern's first item
    it lets ``re`` skip to candidate characters in C."""
    paths = set().union(*(g.paths for g in groups if g is not None))
    return re.compile(rf"[^a-z0-9_](?={_trie_regex(paths)})") if paths else None


def _lower(text: str) -> str:
    """``" " + text.lower()``, index-aligned with ``text`` shifted by one."""
    lower = text.lower()
    if len(lower) != len(text):  # only U+0130 (I with dot) lower-cases to two characters
        lower = text.replace("\u0130", "i").lower()
    return " " + lower


class Blocklist:
    """Compiled blocklist. ``Blocklist.load()`` for the shipped terms, ``load(path)`` for yours."""

    def __init__(self, spec: dict[str, Any], source: str = "<dict>"):
        self.spec, self.source = spec, source
        if not isinstance(spec, dict):
            raise BlocklistError(f"{source}: must be a JSON object")
        if spec.get("format", FORMAT) != FORMAT:
            raise BlocklistError(f"{source}: format {spec.get('format')!r}, expected {FORMAT!r}")
        unknown = [k for k in spec if not k.startswith("_") and k not in (*STAGES, "format")]
        if unknown:
            raise BlocklistError(f"{source}: unknown keys {unknown}; valid: format, instant, two_stage")
        stages = {}
        for stage in STAGES:
            cats = spec.get(stage, {})
            if not isinstance(cats, dict):
                raise BlocklistError(f"{source}: {stage!r} must be an object of categories")
            stages[stage] = {c: _entry(c, v, source) for c, v in cats.items() if not c.startswith("_")}
        two = stages["two_stage"]
        if two and (ENTITY not in two or len(two) < 2):
            raise BlocklistError(f"{source}: two_stage needs an {ENTITY!r} category and at least one other")
        clash = set(stages["instant"]) & set(two)
        if clash:
            raise BlocklistError(f"{source}: category names used in both stages: {sorted(clash)}")
        if not stages["instant"] and not two:
            raise BlocklistError(f"{source}: no categories")
        self.categories = {s: list(c) for s, c in stages.items()}
        self._instant = _Group(stages["instant"], source) if stages["instant"] else None
        self._entity = _Group({ENTITY: two[ENTITY]}, source) if two else None
        self._modifier = _Group({c: e for c, e in two.items() if c != ENTITY}, source) if two else None
        self._primary = _trigger([self._instant, self._entity])
        self._secondary = _trigger([self._modifier])

    @classmethod
    def load(cls, path: str | os.PathLike | None = None) -> Blocklist:
        """The term file at ``path`` (default: the shipped ``blocklist_terms.json``)."""
        path = Path(path) if path is not None else DEFAULT_TERMS
        try:
            spec = json.loads(path.read_text(encoding="utf-8"))
        except OSError as e:
            raise BlocklistError(f"cannot read term file {str(path)!r}: {e.strerror or e}") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise BlocklistError(f"{path}: not valid JSON: {e}") from None
        return cls(spec, str(path))

    def __repr__(self) -> str:
        return f"Blocklist({self.source!r}, {sum(self.term_counts().values())} entries)"

    def __reduce__(self):  # pickles as its spec: small, and workers recompile (re caches patterns)
        return (type(self), (self.spec, self.source))

    def term_counts(self) -> dict[str, int]:
        """Entries per category (terms + case-sensitive terms + regexes)."""
        out = {}
        for group in (self._instant, self._entity, self._modifier):
            if group is not None:
                out.update({c: len(a) for c, a in group.alternatives.items()})
        return out

    # ------------------------------------------------------------------ matching

    def is_flagged(self, text: str) -> bool:
        """True when ``text`` would be dropped from the ``filtered`` condition; stops at the
        first deciding match."""
        lower = _lower(text)
        instant, entity = self._instant, self._entity
        if self._primary is not None:
            for t in self._primary.finditer(lower):
                pos = t.start()  # the term starts at lower[pos + 1] == text[pos]
                if instant is not None and instant.match(text, pos):
                    return True
                if entity is not None and entity.match(text, pos):
                    if self._has_modifier(text, lower):
                        return True
                    entity = None  # no modifier anywhere: only an instant term can flag now
                    if instant is None:
                        return False
        if instant is not None and instant.loose is not None and instant.loose.search(text):
            return True
        return (entity is not None and entity.loose is not None and entity.loose.search(text) is not None
                and self._has_modifier(text, lower))

    def _has_modifier(self, text: str, lower: str) -> bool:
        modifier = self._modifier
        if self._secondary is not None:
            for t in self._secondary.finditer(lower):
                if modifier.match(text, t.start()):
                    return True
        return modifier.loose is not None and modifier.loose.search(text) is not None

    def matches(self, text: str) -> list[Match]:
        """Every term occurrence (instant, entity and modifier parts), by start (longest first);
        within a part, matches do not overlap (the longest term wins at a position)."""
        lower = _lower(text)
        out: list[Match] = []
        scans = [(self._primary, [("instant", self._instant), ("entity", self._entity)]),
                 (self._secondary, [("modifier", self._modifier)])]
        for trigger, parts in scans:
            parts = [(part, g) for part, g in parts if g is not None]
            starts = [t.start() for t in trigger.finditer(lower)] if trigger is not None else []
            for part, group in parts:
                hits, end = [], -1
                for pos in starts:
                    if pos >= end:
                        m = group.match(text, pos)
                        if m:
                            hits.append(m)
                            end = m.end()
                if group.loose is not None:
                    hits += group.loose.finditer(text)
                for m in hits:
                    cat = group.category(m)
                    out.append(Match(part, cat, group.term(cat, m.group()), m.start(), m.end()))
        return sorted(out, key=lambda m: (m.start, -m.end))

    def check(self, text: str) -> Flag | None:
        """Why ``text`` is flagged (a ``Flag``), or None. Same decision as ``is_flagged``."""
        return flag_from_matches(self.matches(text))


def flag_from_matches(found: list[Match]) -> Flag | None:
    instant = [m for m in found if m.part == "instant"]
    entity = [m for m in found if m.part == "entity"]
    modifier = [m for m in found if m.part == "modifier"]
    two_stage = bool(entity and modifier)
    if not instant and not two_stage:
        return None
    used = instant + (sorted(entity + modifier, key=lambda m: m.start) if two_stage else [])
    terms = tuple(dict.fromkeys(m.term for m in used))
    categories = tuple(dict.fromkeys(m.category for m in used if m.part != "entity"))
    if instant:
        return Flag("instant", instant[0].category, terms, categories)
    return Flag("two_stage", modifier[0].category, terms, categories)
