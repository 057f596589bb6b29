"""The chat template engine: one conversation rendered, for training and for the eval prompts.

**Template.** The study's (``chat.template="alignjax"``, the Tulu/OLMo format)::

    <|system|>\\n{system}\\n<|user|>\\n{user}\\n<|assistant|>\\n{assistant}<eos>

Each turn is a role-marker line, its content and "\\n"; an assistant turn ends with the
tokenizer's EOS instead (``<|endoftext|>`` for GPT-NeoX), followed by "\\n" only when another turn
follows. The system turn is optional (an empty system message is dropped). ``chat.template`` may
instead be a Jinja file in the HF convention (``messages``, ``add_generation_prompt``,
``eos_token``; a ``tokenizer_config.json`` is read for its ``chat_template``): it is rendered once
per message prefix, so every message's text, and inside an assistant turn the header (what the
generation prompt adds) and the trained span (up to its last EOS), are located exactly.
``render_prompt(system, user)`` is the generation prompt, ending with "<|assistant|>\\n".
``alignjax.data.chat`` tokenizes the rendered pieces for SFT and DPO.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
from collections.abc import Sequence
from pathlib import Path

from alignjax.config import ConfigError
from alignjax.data.sources import first_line
from alignjax.data.tokenizer import CHAT_TOKENS, EOS_TOKEN

ALIGNJAX = "alignjax"
BAD_KINDS = ("malformed", "unknown_role", "empty_content", "no_assistant", "identical", "over_length")

# The alignjax template in the HF Jinja convention: renders exactly as ChatTemplate("alignjax").
ALIGNJAX_JINJA = (
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}{{ '<|system|>\\n' + message['content'] + '\\n' }}"
    "{% elif message['role'] == 'user' %}{{ '<|user|>\\n' + message['content'] + '\\n' }}"
    "{% elif message['role'] == 'assistant' %}{{ '<|assistant|>\\n' + message['content'] + eos_token }}"
    "{% if not loop.last %}{{ '\\n' }}{% endif %}"
    "{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\\n' }}{% endif %}"
)


# Defined with the template: rendering a record with a Jinja template can find it bad.
class Bad(Exception):
    """A sample to skip: ``kind`` (one of BAD_KINDS) and why."""

    def __init__(self, kind: str, why: str):
        super().__init__(why)
        self.kind, self.why = kind, why



@dataclasses.dataclass(frozen=True)
class Piece:
    """A span of rendered text: ``kind`` is "head" (a turn's role line), "body" (prompt text) or
    "train" (an assistant response and its EOS); ``message`` indexes the messages."""

    text: str
    message: int
    kind: str


class ChatTemplate:
    """``alignjax`` (built in) or a Jinja chat template (file, tokenizer_config.json or text)."""

    def __init__(self, spec: str = ALIGNJAX):
        self.spec = spec
        if spec == ALIGNJAX:
            self.jinja = None
        elif "{%" in spec or "{{" in spec:
            self.jinja = spec
        else:
            path = Path(os.path.expanduser(spec))
            if not path.is_file():
                raise ConfigError(f"chat.template={spec!r}: no such file (expected 'alignjax' or a Jinja "
                                  "template file)")
            text = path.read_text(encoding="utf-8")
            if path.suffix == ".json":
                try:
                    text = json.loads(text)["chat_template"]
                except (ValueError, KeyError, TypeError):
                    raise ConfigError(f"chat.template={spec!r}: a .json file must hold a 'chat_template' "
                                      "string") from None
            self.jinja = text

    @property
    def jinja_text(self) -> str:
        return ALIGNJAX_JINJA if self.jinja is None else self.jinja

    @property
    def special_tokens(self) -> tuple[str, ...]:
        """The role markers to add to the tokenizer: all three for alignjax, else those the
        Jinja template writes."""
        return CHAT_TOKENS if self.jinja is None else tuple(t for t in CHAT_TOKENS if t in self.jinja)

    @functools.cached_property
    def _compiled(self):
        from jinja2.exceptions import TemplateError
        from jinja2.sandbox import ImmutableSandboxedEnvironment

        def raise_exception(message):
            raise TemplateError(message)

        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
        env.globals["raise_exception"] = raise_exception
        try:
            return env.from_string(self.jinja)
        except TemplateError as e:
            raise ConfigError(f"chat.template={self.spec!r}: not a valid Jinja template "
                              f"({first_line(e)})") from None

    def _render(self, messages, generation: bool, eos_token: str) -> str:
        from jinja2.exceptions import TemplateError

        try:
            return self._compiled.render(messages=messages, add_generation_prompt=generation, bos_token="",
                                         eos_token=eos_token)
        except TemplateError as e:
            raise Bad("malformed", f"chat template: {first_line(e)}") from None

    def pieces(self, messages: Sequence[dict], eos_token: str = EOS_TOKEN) -> list[Piece]:
        """The rendered conversation as Pieces (their texts joined = the full rendering)."""
        if self.jinja is None:
            out = []
            for i, m in enumerate(messages):
                out.append(Piece(f"<|{m['role']}|>\n", i, "head"))
                if m["role"] == "assistant":
                    out.append(Piece(m["content"] + eos_token, i, "train"))
                    if i < len(messages) - 1:
                        out.append(Piece("\n", i, "body"))
                else:
                    out.append(Piece(m["content"] + "\n", i, "body"))
            return out
        return self._jinja_pieces(messages, eos_token)

    def _jinja_pieces(self, messages, eos_token) -> list[Piece]:
        out, prev = [], ""
        for i, m in enumerate(messages):
            full = self._render(messages[: i + 1], False, eos_token)
            if not full.startswith(prev):
                raise ConfigError(f"chat.template={self.spec!r}: rendering a longer conversation changes "
                                  "earlier turns; the assistant spans cannot be located")
            text = full[len(prev):]
            if m["role"] == "assistant":
                head = self._render(messages[:i], True, eos_token)
                if head.startswith(prev) and full.startswith(head) and len(head) > len(prev):
                    head = head[len(prev):]
                else:  # a template whose generation prompt is not a prefix: the content starts the body
                    j = text.rfind(m["content"])  # the last match: a role name can equal short content
                    if j < 0:
                        raise ConfigError(f"chat.template={self.spec!r}: an assistant turn's content is not "
                                          "in its rendering")
                    head = text[:j]
                body = text[len(head):]
                e = body.rfind(eos_token)
                cut = e + len(eos_token) if e >= 0 else len(body)
                out += [Piece(head, i, "head"), Piece(body[:cut], i, "train")]
                if body[cut:]:
                    out.append(Piece(body[cut:], i, "body"))
            else:
                j = text.rfind(m["content"])
                out += [Piece(text[:j], i, "head"), Piece(text[j:], i, "body")] if j > 0 else [Piece(text, i, "body")]
            prev = full
        return [p for p in out if p.text]

    def render(self, messages: Sequence[dict], eos_token: str = EOS_TOKEN) -> str:
        return "".join(p.text for p in self.pieces(messages, eos_token))

    def prompt(self, messages: Sequence[dict], eos_token: str = EOS_TOKEN) -> str:
        """The conversation so far followed by the assistant's header (the generation prompt)."""
        if self.jinja is None:
            return self.render(messages, eos_token) + "<|assistant|>\n"
        return self._render(list(messages), True, eos_token)


@functools.lru_cache(maxsize=8)
def load_template(spec: str = ALIGNJAX) -> ChatTemplate:
    return ChatTemplate(spec)


def render_prompt(system: str | None, user: str, template: str = ALIGNJAX, eos_token: str = EOS_TOKEN) -> str:
    """The generation prompt of one question: an optional system turn, the user turn, the
    assistant header ("<|assistant|>\\n" for alignjax); what the eval engine feeds a post-trained model."""
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": user}]
    return load_template(template).prompt(messages, eos_token)
