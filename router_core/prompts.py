"""Prompt preparation before embedding: removing templates that many prompts share.

Few-shot benchmarks and production traffic alike put the same long block (examples, a
system prompt) in front of many queries. Embedded as is, that block fills the embedding
model's window and every query of the template collapses to one vector. We learn such
blocks from the history (long prefixes that many prompts share, cut at a line break) and
strip them before embedding; what stays is the part that tells queries apart.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Sequence


@dataclass(frozen=True)
class SharedPrefixes:
    """Known template prefixes, longest first; ``strip`` removes the longest one that matches."""

    prefixes: tuple[str, ...] = ()

    @classmethod
    def learn(cls, prompts: Sequence[str], min_chars: int = 64, min_count: int = 5) -> "SharedPrefixes":
        """Find prefixes of at least ``min_chars`` characters shared by ``min_count`` prompts or more.

        Sorting puts prompts with a common prefix next to each other, so the common
        prefixes of adjacent pairs are the candidates; each is cut back to its last line
        break so that a template never ends inside a question.
        """
        ordered = sorted(set(prompts))
        counts: Counter[str] = Counter()
        for left, right in zip(ordered, ordered[1:]):
            common = _common_prefix_length(left, right)
            if common < min_chars:
                continue
            cut = left.rfind("\n", 0, common) + 1
            if cut >= min_chars:
                counts[left[:cut]] += 1
        found = {p for p, pairs in counts.items() if pairs + 1 >= min_count}
        return cls(tuple(sorted(found, key=len, reverse=True)))

    def strip(self, prompt: str) -> str:
        """Remove the longest known prefix of ``prompt`` (never leaving it empty)."""
        for prefix in self.prefixes:
            if prompt.startswith(prefix) and len(prompt) > len(prefix) and prompt[len(prefix):].strip():
                return prompt[len(prefix):]
        return prompt

    def strip_all(self, prompts: Sequence[str]) -> list[str]:
        """``strip`` applied to each prompt."""
        return [self.strip(p) for p in prompts] if self.prefixes else list(prompts)


def _common_prefix_length(a: str, b: str) -> int:
    limit = min(len(a), len(b))
    i = 0
    step = 256
    while i + step <= limit and a[i:i + step] == b[i:i + step]:
        i += step
    while i < limit and a[i] == b[i]:
        i += 1
    return i
