"""The Mem-α reward, one function per term, weights configurable (defaults = the paper's).

For chunk t of a rollout: r = w1·r1 + w2·r2_t + w3·r3 + w4·r4_t, with (1, 1, 0.05, 0.1):
- r1 (shared by the rollout): mean QA score of the reader over the instance's questions;
- r2_t: share of the chunk's calls that executed (0 when it made no call);
- r3 (shared): compression, 1 − memory_tokens / input_tokens (floored at 0: a memory larger than
  its input earns nothing, rather than an unbounded penalty that would swamp r1);
- r4_t: share of the chunk's write calls (and unparseable calls) that fit their memory type,
  by a judge; deletes and unparseable calls score 0.

Terms added here (weight 0 in the paper's reference configuration; `training/configs/*.toml`
switch them on), each per chunk t so rollouts of one group differ even when r1 ties:
- filler_t (`filler_penalty`): share of the chunk's writes that copy filler (greetings, thanks,
  "that sounds great"): memory spent on what no question asks; weighted negatively;
- budget_t (`budget_reward`): 1 while the chunk's writes stay within a token budget, falling
  linearly to 0 at twice the budget (the paper's r3 is shared and weighted 0.05: too weak to
  steer one chunk);
- answers_t (`answer_reward`): share of the instance's questions whose answer the chunk's writes
  hold as the reader will see them (answer-token recall >= 0.5 of the gold against the written
  text, an episodic write with its date and the relative dates in it resolved): credit for the
  write itself, not only through the reader's shared r1. Crediting undated core and semantic
  writes alone taught the curator to drop episodic memories and with them every date
  (docs/training.md: temporal questions fell by 0.66 in 30 steps).

The default judge (`HeuristicTypeJudge`) is cheap and deterministic, in place of the paper's
LLM judge. Its rules, meant to say "is this the kind of memory this type is for":
- a content of fewer than 3 words, or a greeting / small talk, fits no type;
- episodic: an event. It needs an event cue (a past-tense or future verb, or a time expression
  such as 'yesterday', 'last week', 'on 8 May') and a time (the `timestamp` argument, which the
  curator fills with the chunk's date, or a date in the text);
- semantic: a stable fact. It needs a state cue ('is', 'has', 'works', 'likes', 'lives', ...)
  and no transient time word ('yesterday', 'today', 'last week', 'just', ...);
- core: a summary of a person: at least 5 words, a name or 'user', no transient time word.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from mcp_memalpha.policy.calls import CallRecord

from mcp_memalpha.excerpt import render_dated
from mcp_memalpha.tools import TOOLS
from mcp_memalpha.vocabulary import memory_type_name

_WORD = re.compile(r"[A-Za-z']+")
_TRANSIENT = re.compile(
    r"\b(yesterday|today|tonight|tomorrow|this (morning|afternoon|evening|week|weekend)|last (night|week|weekend|"
    r"month|year|friday|saturday|sunday|monday|tuesday|wednesday|thursday)|just now|recently|right now|"
    r"next (week|month|year)|ago)\b",
    re.I,
)
_DATE = re.compile(
    r"\b(\d{4}-\d{2}-\d{2}|\d{1,2}(st|nd|rd|th)? (jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]*|"
    r"(jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]* \d{1,2}|(19|20)\d{2}|"
    r"(monday|tuesday|wednesday|thursday|friday|saturday|sunday))\b",
    re.I,
)
# Common irregular past forms (regular ones are caught by their "-ed").
_IRREGULAR_PAST = frozenset(
    re.findall(
        r"\w+",
        """went came saw met took made got gave began bought brought built caught chose did drove ate fell felt found
        flew forgot grew had heard held kept knew left lost ran read said sold sent sang sat slept spoke spent stood
        swam taught told thought threw understood won wore wrote became paid""",
    )
)
_NOT_NAMES = frozenset(re.findall(r"\w+", "the a an he she they it i we you this that there my our his her their"))
_FUTURE = re.compile(r"\b(will|going to|plans? to|planning to|'ll)\b", re.I)
_STATE = re.compile(
    r"\b(is|are|am|'s|has|have|owns?|works?|lives?|likes?|loves?|enjoys?|prefers?|hates?|believes?|wants?|"
    r"identifies|studies|named|called|born|allergic|married|single|vegetarian|favou?rite)\b",
    re.I,
)
_SMALL_TALK = re.compile(
    r"^\W*(\w+:\s*)?(hi|hey|hello|bye|goodbye|thanks|thank you|ok|okay|cool|wow|great|nice|lol|haha|sure|yes|no|"
    r"good to see you|see you|take care|how are you|how have you been)\b[\W\w]{0,25}$",
    re.I,
)


@dataclass(frozen=True)
class RewardWeights:
    qa: float = 1.0
    executed: float = 1.0
    compression: float = 0.05
    type_fit: float = 0.1
    filler: float = 0.0
    budget: float = 0.0
    answers: float = 0.0


class TypeJudge(Protocol):
    def fits(self, memory_type: str, content: str, arguments: dict[str, Any]) -> bool: ...


class HeuristicTypeJudge:
    """The deterministic default judge (rules in the module docstring)."""

    def fits(self, memory_type: str, content: str, arguments: dict[str, Any]) -> bool:
        kind = memory_type_name(memory_type)
        words = _WORD.findall(content)
        if len(words) < 3 or _SMALL_TALK.match(content.strip()):
            return False
        if kind == "episodic":
            has_time = bool(arguments.get("timestamp")) or bool(_DATE.search(content))
            return has_time and (_has_event_verb(words) or bool(_TRANSIENT.search(content) or _DATE.search(content)))
        if kind == "semantic":
            return bool(_STATE.search(content)) and not _TRANSIENT.search(content)
        if kind == "core":
            named = any(w[0].isupper() and w.lower() not in _NOT_NAMES for w in words) or "user" in content.lower()
            return len(words) >= 5 and named and not _TRANSIENT.search(content)
        return False


def _has_event_verb(words: list[str]) -> bool:
    lowered = [w.lower() for w in words]
    past = any(w in _IRREGULAR_PAST or (len(w) > 4 and w.endswith("ed")) for w in lowered)
    return past or bool(_FUTURE.search(" ".join(lowered)))


def qa_reward(scores: Sequence[float]) -> float:
    """r1: mean QA score over the instance's questions (0 when there are none)."""
    return sum(scores) / len(scores) if scores else 0.0


def executed_reward(records: Sequence[CallRecord]) -> float:
    """r2_t: share of the chunk's calls that executed; 0 when it made no call."""
    return sum(r.ok for r in records) / len(records) if records else 0.0


def compression_reward(memory_tokens: int, input_tokens: int) -> float:
    """r3: 1 − memory/input, in [0, 1] (an empty input gives 0)."""
    if input_tokens <= 0:
        return 0.0
    return max(0.0, 1.0 - memory_tokens / input_tokens)


def type_fit_reward(records: Sequence[CallRecord], judge: TypeJudge | None = None) -> float:
    """r4_t: share of the chunk's judged calls that fit their memory type. Judged: every call but
    the read-only ones (searches and reads are neither credited nor counted), so deletes,
    unparseable calls and unknown tools count 0. Whether the call then executed is r2's business."""
    judge = judge or HeuristicTypeJudge()
    judged = [r for r in records if r.name not in READ_CALLS]
    if not judged:
        return 0.0
    return sum(_fits(record, judge) for record in judged) / len(judged)


READ_CALLS: tuple[str, ...] = tuple(tool.name for tool in TOOLS if tool.read_only)
WRITE_CALLS = ("new_memory_insert", "memory_update")  # the calls that write content r4 can judge


def _fits(record: CallRecord, judge: TypeJudge) -> bool:
    if record.name not in WRITE_CALLS:
        return False
    content = record.arguments.get("content", record.arguments.get("new_content"))
    memory_type = record.arguments.get("memory_type")
    if not isinstance(content, str) or not isinstance(memory_type, str):
        return False
    return judge.fits(memory_type, content, record.arguments)


_SPEAKER = re.compile(r"^\s*[A-Z][\w .'-]{0,30}:\s+")
# Words that carry no memory: greetings, thanks, reactions, and the commonest function words.
_FILLER_WORDS = frozenset(
    re.findall(
        r"[a-z']+",
        """hi hey hello bye goodbye thanks thank you cheers ok okay cool wow great nice awesome amazing lol haha
        sure yes yeah yep no nope so really very too totally that that's this it it's is was sounds sound seems
        glad happy good love lovely super fantastic wonderful congrats congratulations appreciate means lot much
        i i'm me my we you're your a an the and or but to of for with in on at oh ah um well just
        take care see soon talk later catch up again chat hear awesome definitely absolutely same here""",
    )
)


def _writes(records: Sequence[CallRecord]) -> list[tuple[str, dict[str, Any]]]:
    """The chunk's executed writes: each one's text and the tool's output for it."""
    found = []
    for record in records:
        if not record.ok or record.name not in WRITE_CALLS:
            continue
        content = record.arguments.get("content", record.arguments.get("new_content"))
        if isinstance(content, str):
            found.append((content, record.output if isinstance(record.output, dict) else {}))
    return found


def written_contents(records: Sequence[CallRecord]) -> list[str]:
    """The text of the chunk's executed writes."""
    return [content for content, _ in _writes(records)]


def written_as_read(records: Sequence[CallRecord]) -> list[str]:
    """The chunk's executed writes as a reader will see them: with the event time the memory
    stored (`excerpt.render_dated`, the rendering of a search hit)."""
    return [render_dated(content, output.get("event_time")) for content, output in _writes(records)]


def is_filler(content: str) -> bool:
    """Small talk, or a statement (speaker prefix aside) without two words outside the filler list."""
    text = _SPEAKER.sub("", content.strip())
    if _SMALL_TALK.match(text):
        return True
    words = [w.lower().strip("'") for w in _WORD.findall(text)]
    return sum(1 for w in words if w and w not in _FILLER_WORDS) < 2


def filler_penalty(records: Sequence[CallRecord]) -> float:
    """filler_t: share of the chunk's executed writes that copy filler (0 with no write)."""
    contents = written_contents(records)
    return sum(map(is_filler, contents)) / len(contents) if contents else 0.0


def budget_reward(written_tokens: int, budget_tokens: int) -> float:
    """budget_t: 1 up to `budget_tokens` written in the chunk, then linearly down to 0 at twice it."""
    if budget_tokens <= 0:
        raise ValueError(f"budget_tokens must be positive, got {budget_tokens}")
    return max(0.0, min(1.0, 2.0 - written_tokens / budget_tokens))


def answer_reward(
    records: Sequence[CallRecord], questions: Sequence[Any], score: Callable[[str, Any], float], threshold: float = 0.5
) -> float:
    """answers_t: share of `questions` whose answer the chunk's writes hold as they will be read
    (`written_as_read`): `score(text, question)` (the answer-token recall of the extractive
    metric) reaches `threshold` (0 with no question or no executed write)."""
    text = "\n".join(written_as_read(records))
    if not questions or not text:
        return 0.0
    return sum(score(text, question) >= threshold for question in questions) / len(questions)


def chunk_reward(qa: float, executed: float, compression: float, type_fit: float, weights: RewardWeights) -> float:
    """r for one chunk sample from its terms."""
    return (
        weights.qa * qa + weights.executed * executed + weights.compression * compression + weights.type_fit * type_fit
    )
