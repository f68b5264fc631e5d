r"""`mcp-memalpha eval-retrieval`: retrieval quality on LoCoMo, measured through the MCP tools.

Protocol (the same for every retriever): each turn of a conversation is stored as one episodic
memory, `"{speaker}: {text}"` with its session's date as the timestamp, by `new_memory_insert`
on a spawned `mcp-memalpha serve` (one data directory per conversation). Each question of
categories 1-4 is a `search_memory` query. For the top k results:
- evidence recall: share of the question's evidence turns among them;
- answer-token recall: share of the normalized gold-answer tokens present in their text, where
  a result's text is what the client reads (`text` of each hit: date, content, resolved dates);
- retrieved size: that text in WordPiece tokens (`mcp_memalpha.tokens`), in whitespace words, and
  in `\b\w+\b` tokens (the tokenizer of the Mem-α reader and of the reference BM25).
"""

from __future__ import annotations

import json
import re
import shutil
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import click

from mcp_memalpha.answer_metrics import answer_token_recall
from mcp_memalpha.answer_metrics import answer_tokens as answer_tokens

CATEGORIES = {1: "multi-hop", 2: "temporal", 3: "open-domain", 4: "single-hop"}
WORD_TOKEN = re.compile(r"\b\w+\b")


@dataclass
class Scores:
    """Per (method, k, category) lists of per-question values."""

    evidence: dict[tuple[str, int, int], list[float]] = field(default_factory=lambda: defaultdict(list))
    answer: dict[tuple[str, int, int], list[float]] = field(default_factory=lambda: defaultdict(list))
    tokens: dict[tuple[str, int, int], list[int]] = field(default_factory=lambda: defaultdict(list))
    words: dict[tuple[str, int, int], list[int]] = field(default_factory=lambda: defaultdict(list))
    word_tokens: dict[tuple[str, int, int], list[int]] = field(default_factory=lambda: defaultdict(list))
    latency_ms: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))


async def _evaluate_conversation(
    conversation: dict[str, Any],
    data_dir: Path,
    methods: list[str],
    ks: list[int],
    scores: Scores,
    step: Callable[[int], None] = lambda _: None,
) -> int:
    from mcp import Client, StdioServerParameters

    from mcp_memalpha.launch import launch_command
    from mcp_memalpha.tokens import count_tokens

    launch = launch_command()
    params = StdioServerParameters(
        command=launch[0], args=[*launch[1:], "serve", "--data-dir", str(data_dir), "--log-level", "WARNING"]
    )
    turns = conversation["conversation"]
    dia_of: dict[str, str] = {}
    async with Client(params, read_timeout_seconds=120) as client:
        for session in range(1, 200):
            if f"session_{session}" not in turns:
                continue
            date = turns[f"session_{session}_date_time"]
            for turn in turns[f"session_{session}"]:
                arguments = {
                    "memory_type": "episodic",
                    "content": f"{turn['speaker']}: {turn['text']}",
                    "timestamp": date,
                }
                result = await client.call_tool("new_memory_insert", arguments)
                if result.is_error:
                    raise click.ClickException(f"insert failed: {result.content}")
                dia_of[result.structured_content["memory_id"]] = turn["dia_id"]
                step(1)
        questions = 0
        for qa in conversation["qa"]:
            category = qa.get("category")
            if category not in CATEGORIES or not qa.get("evidence") or "answer" not in qa:
                continue
            questions += 1
            step(1)
            for method in methods:
                for k in ks:
                    started = time.perf_counter()
                    result = await client.call_tool(
                        "search_memory", {"query": qa["question"], "search_method": method, "top_k": k}
                    )
                    scores.latency_ms[method].append((time.perf_counter() - started) * 1000)
                    if result.is_error:
                        raise click.ClickException(f"search failed: {result.content}")
                    hits = result.structured_content["results"]
                    found = {dia_of.get(hit["memory_id"]) for hit in hits}
                    text = "\n".join(hit["text"] for hit in hits)
                    key = (method, k, category)
                    scores.evidence[key].append(sum(e in found for e in qa["evidence"]) / len(qa["evidence"]))
                    scores.answer[key].append(answer_token_recall(qa["answer"], text))
                    scores.tokens[key].append(sum(count_tokens(hit["text"]) for hit in hits))
                    scores.words[key].append(len(text.split()))
                    scores.word_tokens[key].append(len(WORD_TOKEN.findall(text)))
    return questions


def _mean(values: Sequence[float]) -> float:
    return statistics.mean(values) if values else float("nan")


def render_report(scores: Scores, methods: list[str], ks: list[int]) -> str:
    lines = []
    header = "| method | k | metric | " + " | ".join(CATEGORIES.values()) + " | overall |"
    lines += [header, "|" + "---|" * (header.count("|") - 1)]
    for method in methods:
        for k in ks:
            for metric, table in (("evidence recall", scores.evidence), ("answer-token recall", scores.answer)):
                cells = [f"{_mean(table[(method, k, c)]):.3f}" for c in CATEGORIES]
                overall = _mean([v for c in CATEGORIES for v in table[(method, k, c)]])
                lines.append(f"| {method} | {k} | {metric} | " + " | ".join(cells) + f" | **{overall:.3f}** |")
            blanks = " | " * (len(CATEGORIES) - 1)
            units = (
                ("WordPiece tokens", scores.tokens),
                ("words", scores.words),
                ("`\\b\\w+\\b` tokens", scores.word_tokens),
            )
            for unit, sizes in units:
                mean = _mean([n for c in CATEGORIES for n in sizes[(method, k, c)]])
                lines.append(f"| {method} | {k} | retrieved {unit} | {blanks} | {mean:.0f} |")
    lines.append("")
    lines.append("| method | search calls | p50 ms | p95 ms |")
    lines.append("|---|---|---|---|")
    for method in methods:
        ms = sorted(scores.latency_ms[method])
        p95 = ms[min(len(ms) - 1, int(0.95 * len(ms)))]
        lines.append(f"| {method} | {len(ms)} | {statistics.median(ms):.1f} | {p95:.1f} |")
    return "\n".join(lines)


def run_eval(locomo: Path, methods: list[str], ks: list[int], limit: int | None) -> str:
    conversations = load_conversations(locomo)[:limit]
    scores = Scores()
    work = Path(tempfile.mkdtemp(prefix="memalpha-eval-"))
    steps = sum(_steps(conversation) for conversation in conversations)
    try:
        # A bar on a terminal (one step per stored turn and per question); only the lines below elsewhere.
        with click.progressbar(length=steps, label="eval-retrieval", file=sys.stderr) as bar:
            for number, conversation in enumerate(conversations, start=1):
                started = time.perf_counter()
                data_dir = work / conversation["sample_id"]
                questions = anyio.run(_evaluate_conversation, conversation, data_dir, methods, ks, scores, bar.update)
                click.echo(
                    ("\n" if sys.stderr.isatty() else "")
                    + f"[{number}/{len(conversations)}] {conversation['sample_id']}: {questions} questions, "
                    f"{time.perf_counter() - started:.1f} s",
                    err=True,
                )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return render_report(scores, methods, ks)


def _steps(conversation: dict[str, Any]) -> int:
    turns = conversation["conversation"]
    stored = sum(len(turns[key]) for key in turns if re.fullmatch(r"session_\d+", key))
    asked = sum(
        1 for qa in conversation["qa"] if qa.get("category") in CATEGORIES and qa.get("evidence") and "answer" in qa
    )
    return stored + asked


def load_conversations(path: Path) -> list[dict[str, Any]]:
    """The LoCoMo file's conversations; a file of another shape is one line of error naming what is wrong."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise click.ClickException(f"{path} is not UTF-8 text (byte {exc.start}); expected LoCoMo JSON") from None
    except json.JSONDecodeError as exc:
        raise click.ClickException(
            f"{path} is not JSON ({exc.msg} at line {exc.lineno}); expected LoCoMo JSON"
        ) from None
    if not isinstance(data, list):
        raise click.ClickException(f"{path}: expected a JSON list of LoCoMo conversations, found {type(data).__name__}")
    for number, conversation in enumerate(data, start=1):
        missing = [
            key
            for key in ("sample_id", "conversation", "qa")
            if not isinstance(conversation, dict) or key not in conversation
        ]
        if missing:
            raise click.ClickException(
                f"{path}: conversation {number} has no {', '.join(missing)}; expected LoCoMo JSON"
            )
    return data
