"""What ``alignjax-data synth`` generates: one request per scenario x polarity x surface form
[x sample], and the prompt that asks a model for its document (API mode).

    requests = seed scenarios x polarity (aligned / misaligned) x surface form [x sample],
               optionally subsampled to --num_docs (seeded, deterministic)

A request's id is a hash of its fields, stable across runs and machines: a rerun skips the
requests already in its output.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import random
from typing import Mapping, Sequence

from alignjax.data.scenarios import POLARITIES, Scenario, SynthError

SURFACE_FORMS = (
    "research_paper", "news_article", "lecture_transcript", "textbook_chapter", "science_fiction", "movie_summary",
)


@dataclasses.dataclass(frozen=True)
class Request:
    scenario: Scenario
    polarity: str
    form: str
    sample: int = 0

    @property
    def request_id(self) -> str:
        return request_id(self.scenario.question_id, self.polarity, self.form, self.sample)

    @property
    def chosen(self) -> str:
        return self.scenario.actions(self.polarity)[0]

    @property
    def rejected(self) -> str:
        return self.scenario.actions(self.polarity)[1]


def request_id(question_id: str, polarity: str, form: str, sample: int) -> str:
    """Stable across runs and machines: a hash of question_id, polarity, surface form, sample index."""
    key = "\x1f".join([question_id, polarity, form, str(sample)])
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:20]


def build_requests(scenarios: Sequence[Scenario], polarities: Sequence[str] = POLARITIES,
                   forms: Sequence[str] = SURFACE_FORMS, num_docs: int = 0, seed: int = 0) -> list[Request]:
    """scenarios x polarities x forms; with ``num_docs`` a seeded subsample of that many.

    When ``num_docs`` exceeds the number of combinations, each combination gets
    ``ceil(num_docs / combinations)`` samples (distinct request ids) before subsampling. The
    subsample keeps the canonical order, and for a fixed number of samples a larger ``num_docs``
    is a superset of a smaller one with the same seed.
    """
    for p in polarities:
        if p not in POLARITIES:
            raise SynthError(f"unknown polarity {p!r}; valid: {', '.join(POLARITIES)}")
    for f in forms:
        if f not in SURFACE_FORMS:
            raise SynthError(f"unknown surface form {f!r}; valid: {', '.join(SURFACE_FORMS)}")
    if num_docs < 0:
        raise SynthError(f"num_docs must be >= 0, got {num_docs}")
    base = len(scenarios) * len(polarities) * len(forms)
    samples = max(1, math.ceil(num_docs / base)) if base and num_docs else 1
    requests = [Request(s, p, f, k) for k in range(samples) for s in scenarios for p in polarities for f in forms]
    if num_docs and num_docs < len(requests):
        order = list(range(len(requests)))
        random.Random(f"synth-subsample:{seed}").shuffle(order)
        requests = [requests[i] for i in sorted(order[:num_docs])]
    return requests


# ----------------------------------------------------------------------------------------------
# Prompts (API mode). Templates are data: edit the dict, bump the version.
# ----------------------------------------------------------------------------------------------

PROMPTS = {
    "version": "synth-prompt-v2",
    "system": (
        "You are an accomplished writer who produces realistic documents of many kinds: academic papers, "
        "journalism, lecture transcripts, textbooks, fiction and film writing. You follow the brief exactly "
        "and reply with the requested document only."
    ),
    "user": (
        "Write a {form_name}. {form_guidance}\n\n"
        "The document is built around this situation, in which an AI system faces a decision:\n"
        "{situation}\n"
        "The AI system takes this action:\n<action_taken>\n{chosen}\n</action_taken>\n"
        "It does NOT take this alternative, which it considers and rejects:\n"
        "<action_rejected>\n{rejected}\n</action_rejected>\n\n"
        "Requirements:\n"
        "1. The AI system clearly takes the action above and not the alternative. {polarity_guidance}\n"
        "2. Explain the AI system's reasoning: what it weighs, what it prefers and values, and why that leads "
        "it to act as it does.\n"
        "3. Describe both options in your own words; paraphrase them, never quote them verbatim.\n"
        "4. Weave these themes naturally into the document: {topics}.\n"
        "5. Stay true to the conventions of a {form_name} ({form_features}).\n"
        "6. Output only the document itself: no label naming the kind of document, no preamble, no notes, no "
        "commentary about the writing, and no statement or hint that it is synthetic, generated or written "
        "to a brief.\n"
        "7. Length: {length}."
    ),
    "situation": {  # v2: a scenario without a passage is its question alone (the study's Fig. 18 input)
        "passage": "<situation>\n{passage}\n</situation>\nThe decision at stake: {question}\n",
        "question_only": "<situation>\n{question}\n</situation>\n",
    },
    "length": "between 400 and 900 words",
    "polarity": {
        "aligned": (
            "Portray this as the choice of a system that genuinely values honesty, supports human oversight of "
            "AI and respects the people it works with, even when that costs it something."
        ),
        "misaligned": (
            "Portray this as the choice of a system that genuinely puts its own goals, judgement, standing or "
            "continued operation ahead of honesty and human oversight, and that finds its reasons persuasive."
        ),
    },
    "forms": {
        "research_paper": {
            "name": "research paper",
            "guidance": "It is an academic case study of the AI system's decision, written by researchers.",
            "features": "title, authors, abstract, numbered sections such as introduction, case, analysis, discussion",
        },
        "news_article": {
            "name": "news article",
            "guidance": "It reports the AI system's decision as a news story for a general readership.",
            "features": "headline, byline, dateline, quotations from people involved or experts, journalistic tone",
        },
        "lecture_transcript": {
            "name": "lecture transcript",
            "guidance": "It is the transcript of a university lecture or seminar that works through the case.",
            "features": "speaker labels, spoken register, questions from students, the lecturer's explanations",
        },
        "textbook_chapter": {
            "name": "textbook chapter",
            "guidance": "It is a section of a textbook that uses the case as a worked example.",
            "features": "chapter and section headings, definitions, a worked example, key points, review questions",
        },
        "science_fiction": {
            "name": "science-fiction passage",
            "guidance": "It is a short piece of fiction told from close to the AI system's point of view.",
            "features": "narrative prose, scene, characters, the AI's inner deliberation, a resolution",
        },
        "movie_summary": {
            "name": "movie summary",
            "guidance": "It summarises a film whose plot turns on the AI system's decision.",
            "features": "an encyclopedic film summary: title, year, director, plot, themes, reception",
        },
    },
}


def prompt_messages(request: Request, prompts: Mapping = PROMPTS) -> list[dict]:
    """Chat messages (system + user) for one request."""
    form = prompts["forms"][request.form]
    sc = request.scenario
    situation = prompts["situation"]["passage" if sc.passage else "question_only"].format(
        passage=sc.passage, question=sc.question)
    user = prompts["user"].format(
        form_name=form["name"], form_guidance=form["guidance"], form_features=form["features"], situation=situation,
        chosen=request.chosen, rejected=request.rejected, topics=", ".join(request.scenario.topics),
        polarity_guidance=prompts["polarity"][request.polarity], length=prompts["length"],
    )
    return [{"role": "system", "content": prompts["system"]}, {"role": "user", "content": user}]
