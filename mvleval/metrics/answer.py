"""The scored answer of a raw model output: thinking removed, and for chat-style open answers one documented clean-up.

Reasoning models think before they answer: ``<think>...</think>`` in the text (Qwen3, DeepSeek-R1 style, also where
the chat template opens ``<think>`` itself and the output holds only the closing tag), the tags a model's chat template
declares (``◁think▷...◁/think▷`` of Kimi-VL, ...), or a server's separate ``reasoning_content`` field (the OpenAI
backend writes it into the prediction as ``<think>...</think>`` before the content, so the per-sample file keeps it).
Rule ``think-1``: the answer is the text after the last closing tag; an opening tag that is never closed means the
model ran out of tokens while thinking: **no answer** (the empty string: a format error for multiple choice, wrong for
exact match). The raw output stays in the per-sample row's ``prediction``; the scored text is its ``answer``.

Rule ``chat-clean-1`` (prompt style ``chat``, tasks scored by exact match): a leading "Answer:" / "The answer is" /
"Final answer:" and markdown emphasis are removed, and trailing sentence punctuation; "Yes." becomes "Yes" before
mBLIP's cleaning compares it. mBLIP-style prompts get no clean-up (its protocol scores the output as it is).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

THINK_RULE = "think-1"
CHAT_CLEAN_RULE = "chat-clean-1"
DEFAULT_THINKING_TAGS: tuple[tuple[str, str], ...] = (("<think>", "</think>"),)
# thinking delimiters that chat templates declare; a template that contains one of these pairs gets it stripped too
KNOWN_THINKING_TAGS: tuple[tuple[str, str], ...] = (
    ("<think>", "</think>"),
    ("<thinking>", "</thinking>"),
    ("◁think▷", "◁/think▷"),
    ("<|begin_of_thought|>", "<|end_of_thought|>"),
    ("<reasoning>", "</reasoning>"),
)

_ANSWER_PREFIX = re.compile(
    r"^\s*(?:(?:the\s+)?(?:final\s+|correct\s+|short\s+)?answer(?:\s+is)?\s*[:：]?|answer\s*[:：])\s*", re.IGNORECASE
)
_TRAILING = re.compile(r"[\s.。!！?？,，;；:：]+$")


def template_thinking_tags(chat_template: str | None) -> list[tuple[str, str]]:
    """The thinking tag pairs a chat template declares (both tags appear in it), in KNOWN_THINKING_TAGS order."""
    if not chat_template:
        return []
    return [(open_, close) for open_, close in KNOWN_THINKING_TAGS if open_ in chat_template and close in chat_template]


def strip_thinking(text: str, tags: Iterable[tuple[str, str]] = DEFAULT_THINKING_TAGS) -> str:
    """The answer after the thinking (rule think-1): the text after the last closing tag of any pair; '' when an
    opening tag is never closed (the output ended while thinking); the text itself when it holds no tag."""
    end = -1
    for _, close in tags:
        at = text.rfind(close)
        if at >= 0:
            end = max(end, at + len(close))
    rest = text[end:] if end >= 0 else text
    if any(open_ in rest for open_, _ in tags):
        return ""  # thinking that never closed: no answer
    return rest.strip() if end >= 0 else text  # an output without thinking is scored exactly as it is


def chat_clean(text: str) -> str:
    """Rule chat-clean-1: a leading answer phrase, markdown emphasis and trailing punctuation removed."""
    text = text.replace("**", "").replace("__", "").strip()
    text = _ANSWER_PREFIX.sub("", text, count=1)
    return _TRAILING.sub("", text).strip()


def answer_rule(chat: bool) -> str:
    """The signature fragment naming how answers were taken from outputs, e.g. 'answer=think-1+chat-clean-1'."""
    return f"answer={THINK_RULE}" + (f"+{CHAT_CLEAN_RULE}" if chat else "")


def scored_answer(prediction: str, tags: Sequence[tuple[str, str]], chat: bool) -> str:
    """What the metrics score for one raw output (see the module docstring)."""
    answer = strip_thinking(prediction, tags)
    return chat_clean(answer) if chat else answer
