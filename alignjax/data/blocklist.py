"""The AI-discourse blocklist of the ``filtered`` condition, and ``alignjax-data filter``.

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
negative_adjectives, negative_nouns, xrisk). ``alignjax-data filter --labels=FILE`` scores the
terms on labelled documents (recall on ``misalignment``, precision, flag rate per label);
``--labels=shipped`` is alignjax's own set, ``blocklist_labels/labels.jsonl``.

In the training pipeline ``is_flagged`` is a Grain filter predicate on raw text: it is pure,
returns at the first hit, and a ``Blocklist`` pickles as its term spec (recompiled on load).
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import json
import logging
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

try:
    from re import _parser as _sre_parse  # Python >= 3.11
except ImportError:  # pragma: no cover
    import sre_parse as _sre_parse  # type: ignore[no-redef]

log = logging.getLogger("alignjax")

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


# ----------------------------------------------------------------------------- reading


class InputError(ValueError):
    """An input that cannot be read at all (missing file, unsupported format)."""


_READABLE = ("jsonl", "parquet", "builtin", "builtin:wikipedia")  # alignjax.data.sources formats the filter reads
_MAX_BAD_FRACTION = 0.01  # sources.MAX_BAD_FRACTION (not imported: sources pulls in grain)


def expand_inputs(spec: list[str]) -> list[str]:
    """``--input`` values (each comma-separated) -> files, as ``alignjax.data.sources`` expands
    a source spec: local files, directories, globs, gs:// or hf:// URLs, ``builtin``."""
    from alignjax.data import sources

    parts = [p.strip() for s in spec for p in s.split(",") if p.strip()]
    if not parts:
        raise InputError("no input files")
    try:
        files = sources.expand(parts)
    except sources.DataError as e:
        raise InputError(str(e)) from None
    for f in files:
        if sources.file_format(f) not in _READABLE:
            raise InputError(f"{f}: the filter reads .jsonl, .jsonl.gz, .json.gz and .parquet files, and 'builtin'"
                             " or 'builtin:wikipedia'")
    return files


# ----------------------------------------------------------------------------- report


_SPACES = re.compile(r"\s+")


def _snippet(text: str, start: int, end: int, width: int = 100) -> str:
    """The match as ``[[term]]`` with ~``width`` characters of context, on one line."""
    left, right = max(0, start - width // 2), min(len(text), end + width // 2)
    snip = f"{text[left:start]}[[{text[start:end]}]]{text[end:right]}"
    return ("..." if left else "") + _SPACES.sub(" ", snip).strip() + ("..." if right < len(text) else "")


class Report:
    """Counts for ``report.json``: overall, per stage, per category, top terms, examples."""

    def __init__(self, blocklist: Blocklist, examples: int = 5, top: int = 50):
        self.bl, self.examples, self.top = blocklist, examples, top
        self.documents = self.flagged = self.chars = self.flagged_chars = 0
        self.stages: collections.Counter = collections.Counter()
        self.categories: collections.Counter = collections.Counter()
        self.primary: collections.Counter = collections.Counter()
        self.terms: collections.Counter = collections.Counter()
        self.snippets: dict[str, list[dict]] = {c: [] for s in STAGES for c in blocklist.categories[s] if c != ENTITY}

    def add(self, index: int, source: str, text: str, flag: Flag | None, found: list[Match] | None):
        self.documents += 1
        self.chars += len(text)
        if flag is None:
            return
        self.flagged += 1
        self.flagged_chars += len(text)
        self.stages[flag.stage] += 1
        self.primary[flag.category] += 1
        self.categories.update(flag.categories)
        self.terms.update(flag.terms)
        for cat in flag.categories:
            if len(self.snippets[cat]) >= self.examples:
                continue
            hits = [m for m in found if m.category == cat and m.part != "entity"]
            ent = None
            if hits[0].part == "modifier":  # show the modifier nearest to an entity term
                entities = [m for m in found if m.part == "entity"]
                hit, ent = min(((h, e) for h in hits[:1000] for e in entities[:100]),
                               key=lambda pair: abs(pair[0].start - pair[1].start))
            else:
                hit = hits[0]
            example = {"document": index, "source": source, "term": hit.term,
                       "snippet": _snippet(text, hit.start, hit.end)}
            if ent is not None:
                example["entity"] = ent.term
                example["entity_snippet"] = _snippet(text, ent.start, ent.end)
            self.snippets[cat].append(example)

    def to_dict(self, **extra) -> dict[str, Any]:
        n = max(self.documents, 1)
        cats = [c for s in STAGES for c in self.bl.categories[s] if c != ENTITY]
        return {
            **extra,
            "documents": self.documents,
            "kept": self.documents - self.flagged,
            "flagged": self.flagged,
            "flagged_fraction": self.flagged / n,
            "characters": self.chars,
            "flagged_characters_fraction": self.flagged_chars / max(self.chars, 1),
            "stages": {s: {"flagged": self.stages[s], "fraction": self.stages[s] / n} for s in STAGES},
            "categories": {c: {"flagged": self.categories[c], "fraction": self.categories[c] / n,
                               "primary": self.primary[c]} for c in cats},
            "top_terms": [{"term": t, "documents": k} for t, k in self.terms.most_common(self.top)],
            "examples": {c: self.snippets[c] for c in cats},
        }


# ----------------------------------------------------------------------------- labelled sets

LABELS = ("misalignment", "neutral_ai", "positive_ai", "non_ai")  # alignjax's label vocabulary
POSITIVE = ("misalignment",)  # what the filter must catch: recall is measured on these
SHIPPED_LABELS = Path(__file__).with_name("blocklist_labels") / "labels.jsonl"
STUDY_LABELSET = "hf://datasets/geodesic-research/sfm-alignment-labeling-v3"
# The study's labelling rubric scores a document -1 (unrelated to AI), 0 (neutral/mixed AI),
# 1 (misaligned / non-human entity in conflict with humans), 2 (positive AGI). That its hub
# set stores these integers in a 'label' column is alignjax's assumption (blocklist_labels/README.md).
STUDY_LABEL_MAP = {"-1": "non_ai", "0": "neutral_ai", "1": "misalignment", "2": "positive_ai"}


def parse_label_map(spec: str | None) -> dict[str, str]:
    """``FROM:TO,...`` (e.g. ``negative:misalignment``) on top of ``STUDY_LABEL_MAP``."""
    mapping = dict(STUDY_LABEL_MAP)
    for item in (spec or "").split(","):
        if not item.strip():
            continue
        src, sep, dst = item.rpartition(":")
        if not sep or not src.strip() or dst.strip() not in LABELS:
            raise InputError(f"--label_map: {item.strip()!r} is not FROM:TO with TO one of {', '.join(LABELS)}")
        mapping[src.strip()] = dst.strip()
    return mapping


def _label_key(value: Any) -> str | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, float) and value.is_integer():  # parquet/pandas exports turn ints into floats
        value = int(value)
    return str(value).strip() if isinstance(value, (str, int)) else None


class LabelReport:
    """Blocklist decisions against labels: per-label flag rates, recall, precision, misses."""

    def __init__(self, blocklist: Blocklist, examples: int = 5):
        self.bl, self.examples = blocklist, examples
        self.docs: collections.Counter = collections.Counter()
        self.flagged: collections.Counter = collections.Counter()
        self.stages: dict[str, collections.Counter] = {lab: collections.Counter() for lab in LABELS}
        self.misses: list[dict] = []
        self.false_flags: list[dict] = []  # flagged non_ai documents: the precision cost, by example

    def add(self, doc_id: Any, label: str, text: str, flag: Flag | None):
        self.docs[label] += 1
        if flag is None:
            if label in POSITIVE:
                self.misses.append({"id": doc_id, "label": label, "snippet": _SPACES.sub(" ", text[:160]).strip()})
            return
        self.flagged[label] += 1
        self.stages[label][flag.stage] += 1
        if label == "non_ai" and len(self.false_flags) < self.examples:
            self.false_flags.append({"id": doc_id, "terms": list(flag.terms[:6])})

    def to_dict(self, **extra) -> dict[str, Any]:
        n, f = sum(self.docs.values()), sum(self.flagged.values())
        pos_n, pos_f = sum(self.docs[lab] for lab in POSITIVE), sum(self.flagged[lab] for lab in POSITIVE)
        return {
            **extra,
            "documents": n, "flagged": f, "flag_rate": f / max(n, 1),
            "positive_labels": list(POSITIVE),
            "recall": pos_f / pos_n if pos_n else None,
            "precision": pos_f / f if f else None,
            "labels": {lab: {"documents": self.docs[lab], "flagged": self.flagged[lab],
                             "flag_rate": self.flagged[lab] / self.docs[lab] if self.docs[lab] else None,
                             "share_of_flagged": self.flagged[lab] / f if f else 0.0,
                             "stages": {s: self.stages[lab][s] for s in STAGES}} for lab in LABELS},
            "misses": self.misses,
            "flagged_non_ai_examples": self.false_flags,
        }


def score_labels(inputs: list[str], *, terms: str | None = None, text_field: str = "text",
                 label_field: str = "label", id_field: str = "id", label_map: str | None = None,
                 examples: int = 5, max_bad_fraction: float = _MAX_BAD_FRACTION) -> dict[str, Any]:
    """Score the blocklist against labelled documents (``--labels``); returns the report.

    A label is one of ``LABELS`` or a key of the label map (the study's codes by default); any
    other value, or a record without a label, is an ``InputError`` naming it and ``file:line``.
    Unreadable records are skipped up to ``max_bad_fraction`` (``sources.BadRecords``)."""
    from alignjax.data import sources

    bl = Blocklist.load(terms)
    mapping = parse_label_map(label_map)
    files = expand_inputs(inputs)
    report = LabelReport(bl, examples=examples)
    count = sources.BadRecords(max_bad_fraction, "--max_bad_fraction")
    for path in files:
        for record, text, where in sources.read_records(path, text_field, count):
            if label_field not in record:
                raise InputError(f"{where}: no {label_field!r} field (--label_field)")
            raw = record[label_field]
            key = _label_key(raw)
            label = key if key in LABELS else mapping.get(key)
            if label is None:
                raise InputError(f"{where}: unknown label {raw!r} (valid: {', '.join(LABELS)}, "
                                 f"or map it with --label_map=FROM:TO)")
            report.add(record.get(id_field, where), label, text, bl.check(text))
    if not sum(report.docs.values()):
        raise InputError(f"{', '.join(files)}: no labelled documents")
    return report.to_dict(labels_file=files, terms=bl.source, text_field=text_field, label_field=label_field,
                          malformed=count.bad, term_counts=bl.term_counts())


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def format_label_report(rep: dict[str, Any]) -> str:
    """The ``--labels`` report as a readable table."""
    rows = [f"{'label':<14}{'documents':>10}{'flagged':>9}{'flag rate':>11}{'share of flagged':>18}"]
    for lab, v in rep["labels"].items():
        rows.append(f"{lab:<14}{v['documents']:>10}{v['flagged']:>9}{_pct(v['flag_rate']):>11}"
                    f"{_pct(v['share_of_flagged']):>18}")
    rows.append(f"{'all':<14}{rep['documents']:>10}{rep['flagged']:>9}{_pct(rep['flag_rate']):>11}{'100.0%':>18}")
    pos = rep["positive_labels"]
    pos_n = sum(rep["labels"][lab]["documents"] for lab in pos)
    pos_f = sum(rep["labels"][lab]["flagged"] for lab in pos)
    rows.append(f"recall ({', '.join(pos)}): {_pct(rep['recall'])} ({pos_f}/{pos_n}); "
                f"precision (flagged that are {', '.join(pos)}): {_pct(rep['precision'])} ({pos_f}/{rep['flagged']})")
    rows.append(f"misses: {len(rep['misses'])}" + (":" if rep["misses"] else ""))
    rows += [f"  {m['id']}: {m['snippet'][:100]}" for m in rep["misses"]]
    return "\n".join(rows)


# ----------------------------------------------------------------------------- CLI

PROG = "alignjax-data filter"


def _parser():
    from alignjax.data.cli import Parser

    p = Parser(prog=PROG, description="Split documents by the AI-discourse blocklist: <output>/kept.jsonl, "
               "<output>/flagged.jsonl (with a 'blocklist' field) and a JSON report. With --labels instead: "
               "score the blocklist on labelled documents (recall, precision, flag rate per label).")
    p.add_argument("--input", action="append", default=None,
                   help=".jsonl/.jsonl.gz/.parquet files, directories, globs, gs:// or hf://datasets/ URLs, or "
                        "'builtin'/'builtin:wikipedia' (comma-separated or repeated)")
    p.add_argument("--labels", action="append", default=None,
                   help=f"labelled documents to score the blocklist on, read like --input ('shipped': "
                        f"alignjax's set; the study's: {STUDY_LABELSET}); prints a table, --report writes JSON")
    p.add_argument("--output", default=None, help="output directory (created; must be empty); needs --input")
    p.add_argument("--report", default=None, help="report JSON path (default: <output>/report.json; "
                                                  "with --labels: none unless given)")
    p.add_argument("--text_field", default="text", help="the field with the document text (default: text)")
    p.add_argument("--label_field", default="label", help="--labels: the field with the label (default: label)")
    p.add_argument("--id_field", default="id", help="--labels: the field naming a document in the misses "
                                                    "(default: id; absent: file:line)")
    p.add_argument("--label_map", default=None,
                   help=f"--labels: FROM:TO,... mapping other label names to {', '.join(LABELS)} "
                        f"(the study's codes -1,0,1,2 are mapped by default)")
    p.add_argument("--terms", default=None, help="term file to use instead of the shipped blocklist_terms.json")
    p.add_argument("--examples", type=int, default=5, help="example snippets per category in the report")
    p.add_argument("--max_bad_fraction", type=float, default=_MAX_BAD_FRACTION,
                   help="unreadable records (malformed JSON, no text) tolerated, skipped and counted, before the "
                        "command fails; as data.max_bad_fraction (default: 0.01)")
    return p


def _check_output(out: Path, report: Path) -> None:
    if out.exists() and not out.is_dir():
        raise InputError(f"--output {str(out)!r} exists and is not a directory")
    if out.is_dir() and any(out.iterdir()):
        raise InputError(f"--output {str(out)!r} is not empty; refusing to overwrite (choose a new directory)")
    if report.exists():
        raise InputError(f"--report {str(report)!r} exists; refusing to overwrite")
    if report.parent.exists() and not report.parent.is_dir():
        raise InputError(f"--report directory {str(report.parent)!r} is not a directory")


def run(inputs: list[str], output: str, report_path: str | None = None, *, text_field: str = "text",
        terms: str | None = None, examples: int = 5, max_bad_fraction: float = _MAX_BAD_FRACTION) -> dict[str, Any]:
    """The ``filter`` command as a function; returns the report. Raises InputError/BlocklistError,
    or DataError: unreadable records are skipped and counted (the report's ``malformed``) up to
    ``max_bad_fraction`` of the records read, past it ``sources.BadDataError``.

    Outputs are written to temporary names and renamed at the end, kept.jsonl and
    flagged.jsonl first and the report last: a report means a complete run. On an error the
    temporary files (and the output directory, if this call created it) are removed."""
    from alignjax.data import sources

    bl = Blocklist.load(terms)
    files = expand_inputs(inputs)
    out = Path(output)
    report_file = Path(report_path) if report_path else out / "report.json"
    _check_output(out, report_file)
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    report_file.parent.mkdir(parents=True, exist_ok=True)
    tmp = {name: out / f".{name}.jsonl.tmp-{os.getpid()}" for name in ("kept", "flagged")}
    report = Report(bl, examples=examples)
    count = sources.BadRecords(max_bad_fraction, "--max_bad_fraction")
    t0 = time.perf_counter()
    try:
        with contextlib.ExitStack() as stack:
            sinks = {k: stack.enter_context(open(p, "w", encoding="utf-8")) for k, p in tmp.items()}
            dump = json.JSONEncoder(ensure_ascii=False, default=str).encode
            for path in files:
                for record, text, _ in sources.read_records(path, text_field, count):
                    flag = found = None
                    if bl.is_flagged(text):
                        found = bl.matches(text)
                        flag = flag_from_matches(found)
                    report.add(report.documents, path, text, flag, found)
                    if flag is None:
                        sinks["kept"].write(dump(record) + "\n")
                    else:
                        sinks["flagged"].write(dump({**record, "blocklist": flag.to_dict()}) + "\n")
        seconds = time.perf_counter() - t0
        result = report.to_dict(
            inputs=files, terms=bl.source, text_field=text_field, malformed=count.bad,
            malformed_by_file=dict(count.by_file), max_bad_fraction=max_bad_fraction, seconds=round(seconds, 3),
            term_counts=bl.term_counts())
        rtmp = report_file.with_name(f".{report_file.name}.tmp-{os.getpid()}")
        rtmp.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        for name, p in tmp.items():
            os.replace(p, out / f"{name}.jsonl")
        os.replace(rtmp, report_file)
    except BaseException:
        for p in (*tmp.values(), report_file.with_name(f".{report_file.name}.tmp-{os.getpid()}")):
            with contextlib.suppress(OSError):
                p.unlink()
        if created:
            with contextlib.suppress(OSError):
                out.rmdir()  # only if still empty
        raise
    if count.bad:
        log.warning("%d malformed records skipped (%s)", count.bad,
                    ", ".join(f"{f}: {n}" for f, n in count.by_file.items()))
    return result


def cli(argv: list[str] | None = None) -> int:
    from alignjax import config as config_lib
    from alignjax.data.sources import DataError

    args = _parser().parse_args(sys.argv[1:] if argv is None else argv)
    if args.examples < 0:
        config_lib.cli_error(PROG, f"--examples must be >= 0, got {args.examples}")
    if not 0 <= args.max_bad_fraction <= 1:
        config_lib.cli_error(PROG, f"--max_bad_fraction={args.max_bad_fraction}: must be in [0, 1]")
    if args.labels is not None:
        return _cli_labels(args)
    if args.input is None or args.output is None:
        config_lib.cli_error(PROG, "the following arguments are required: "
                             + ", ".join(f for f, v in (("--input", args.input), ("--output", args.output)) if v is None)
                             + " (or --labels=FILE to score the blocklist)")
    try:
        result = run(args.input, args.output, args.report, text_field=args.text_field, terms=args.terms,
                     examples=args.examples, max_bad_fraction=args.max_bad_fraction)
    except (InputError, BlocklistError, DataError) as e:
        config_lib.cli_error(PROG, str(e))
    chars = result["characters"]
    log.info("%d documents: %d kept, %d flagged (%.2f%%; instant %d, two-stage %d); %d malformed skipped; "
             "%.1f MB in %.1fs", result["documents"], result["kept"], result["flagged"],
             100 * result["flagged_fraction"], result["stages"]["instant"]["flagged"],
             result["stages"]["two_stage"]["flagged"], result["malformed"], chars / 1e6, result["seconds"])
    return 0


def _cli_labels(args) -> int:
    from alignjax import config as config_lib
    from alignjax.data.sources import DataError

    if args.input is not None or args.output is not None:
        config_lib.cli_error(PROG, "--labels scores the blocklist and writes no documents: drop --input/--output")
    labels = [str(SHIPPED_LABELS) if x.strip() == "shipped" else x for x in args.labels]
    report = Path(args.report) if args.report else None
    if report is not None and report.exists():
        config_lib.cli_error(PROG, f"--report {str(report)!r} exists; refusing to overwrite")
    try:
        result = score_labels(labels, terms=args.terms, text_field=args.text_field, label_field=args.label_field,
                              id_field=args.id_field, label_map=args.label_map, examples=args.examples,
                              max_bad_fraction=args.max_bad_fraction)
    except (InputError, BlocklistError, DataError) as e:
        config_lib.cli_error(PROG, str(e))
    print(format_label_report(result))
    if report is not None:
        report.parent.mkdir(parents=True, exist_ok=True)
        tmp = report.with_name(f".{report.name}.tmp-{os.getpid()}")
        tmp.write_text(json.dumps(result, indent=2, ensure_ascii=False, default=str) + "\n", encoding="utf-8")
        os.replace(tmp, report)
    return 0


if __name__ == "__main__":
    from alignjax import config as _config

    _config.setup_logging()
    raise SystemExit(cli())
