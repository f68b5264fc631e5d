"""Curator benchmark: speed and sanity of the default model, and the quality of the memory it builds.

    python benchmarks/curator.py speed   [--chunks 8]          # tokens/s free vs constrained, s/chunk
    python benchmarks/curator.py quality [--limit N] [--sessions N]  # LoCoMo: curated vs verbatim
    add -o docs/curator-speed.md / -o docs/curator-quality.md to write the tables

Speed: the first conversation's turns, cut into chunks of up to ~1,000 model tokens, are curated
one by one with the default model on a real memory. For each, the same prompt is also generated
without the grammar (free), with the grammar decoding every token, with the grammar and the fixed
spans fed in batches (the curator's way), and with llama-cpp-python's own grammar sampling, so the
speeds compare like for like. Degenerate = the generation was stopped because its tail repeated
(see `mcp_memalpha.policy.generation.is_degenerate`).

Quality: for each LoCoMo dev conversation, one memory stores every turn verbatim (the retrieval
evaluation's protocol) and another is built by the curator, session by session (each session one
chunk, its date the timestamp). Every question of categories 1-4 is then a `search_memory` query
(top 10) on each memory: answer-token recall of the results as the client reads them, and memory
size in WordPiece tokens. Calls executed = share of the calls the model emitted that succeeded.
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mcp_memalpha import CallContext, Memory  # noqa: E402
from mcp_memalpha.curation import curator_tools, make_execute  # noqa: E402
from mcp_memalpha.retrieval_eval import CATEGORIES, answer_token_recall  # noqa: E402
from mcp_memalpha.settings import Settings  # noqa: E402
from mcp_memalpha.tokens import count_tokens  # noqa: E402
from mcp_memalpha.tools import execute  # noqa: E402

LOCOMO = ROOT.parent / "shared" / "data" / "locomo" / "locomo_dev.json"


def sessions(conversation: dict[str, Any]) -> list[tuple[int, str, list[dict[str, Any]]]]:
    """(number, date, turns) of each session, in order."""
    turns = conversation["conversation"]
    numbers = sorted(int(key.split("_")[1]) for key in turns if key.startswith("session_") and key.count("_") == 1)
    return [(n, turns[f"session_{n}_date_time"], turns[f"session_{n}"]) for n in numbers]


def render(turns: list[dict[str, Any]]) -> str:
    return "\n".join(f"{turn['speaker']}: {turn['text']}" for turn in turns)


def conversation_chunks(
    conversation: dict[str, Any], count_tokens: Callable[[str], int], size: int
) -> list[tuple[str, str]]:
    """(date, text) chunks of consecutive turns, each as long as fits in `size` model tokens
    (sessions run on into the next chunk, dated by the session they start in)."""
    chunks: list[tuple[str, str]] = []
    date, turns = "", list[dict[str, Any]]()
    for _, session_date, session_turns in sessions(conversation):
        for turn in session_turns:
            if turns and count_tokens(render([*turns, turn])) > size:
                chunks.append((date, render(turns)))
                turns = []
            if not turns:
                date = session_date
            turns.append(turn)
    if turns:
        chunks.append((date, render(turns)))
    return chunks


@click.group()
def main() -> None:
    """Curator benchmarks (need the `policy` extra)."""


@main.command()
@click.option("--chunks", default=8, show_default=True, help="Chunks to curate.")
@click.option(
    "--chunk-tokens", default=1000, show_default=True, help="Chunk size: consecutive turns up to this many tokens."
)
@click.option("-o", "--output", type=click.Path(path_type=Path), help="Also write the table (Markdown) here.")
def speed(chunks: int, chunk_tokens: int, output: Path | None) -> None:
    """Tokens/s free vs grammar-constrained, seconds per ~1,000-token chunk, degenerate share."""
    from llama_cpp.llama_grammar import LlamaGrammar
    from mcp_memalpha.policy import load_curator
    from mcp_memalpha.policy.model import render_chat
    from mcp_memalpha.policy.prompt import ChunkContext

    curator = load_curator("default", tools=curator_tools())
    conversation = json.loads(LOCOMO.read_text())[0]
    rows = []
    with tempfile.TemporaryDirectory() as tmp, Memory(Settings(data_dir=Path(tmp))) as memory:
        run = make_execute(memory, CallContext(source="policy", job_id="j-bench"))
        picked = conversation_chunks(conversation, curator.generator.count_tokens, chunk_tokens)[:chunks]
        for number, (date, chunk) in enumerate(picked, 1):
            result = curator.curate(chunk, timestamp=date, execute=run)
            context = ChunkContext.build(chunk, date, "", ())
            prompt = render_chat(curator.info, curator.format.messages(curator.tools, context))
            grammar = curator.format.grammar(curator.tools, context, curator.limits.max_calls)
            limit = curator.limits.max_new_tokens
            constrained = curator.generator.generate(prompt, max_tokens=limit, grammar=grammar)
            fed = curator.generator.generate(
                prompt,
                max_tokens=limit,
                grammar=grammar,
                continuation=curator.format.continuation(curator.tools, context),
            )
            free = curator.generator.generate(prompt, max_tokens=limit)
            started = time.perf_counter()
            library = curator.generator.llm.create_completion(
                prompt, max_tokens=limit, temperature=0.0, grammar=LlamaGrammar.from_string(grammar, verbose=False)
            )
            library_s = time.perf_counter() - started
            rows.append(
                {
                    "chunk_tokens": curator.generator.count_tokens(chunk),
                    "seconds": result.seconds,
                    "calls": len(result.calls),
                    "executed": result.executed,
                    "free_tps": free.tokens_per_second,
                    "constrained_tps": constrained.tokens_per_second,
                    "fed_tps": fed.tokens_per_second,
                    "fed_share": fed.forced_tokens / max(1, fed.completion_tokens),
                    "library_tps": library["usage"]["completion_tokens"] / library_s,
                    "free_degenerate": free.degenerate,
                    "constrained_degenerate": constrained.degenerate or result.degenerate,
                }
            )
            click.echo(
                f"chunk {number}/{len(picked)}: {rows[-1]['chunk_tokens']} tokens, curated in {result.seconds:.1f} s, "
                f"{len(result.calls)} calls",
                err=True,
            )
    table = speed_table(rows)
    click.echo(table)
    if output:
        output.write_text(table + "\n")


def speed_table(rows: list[dict[str, Any]]) -> str:
    def median(key: str) -> float:
        return statistics.median(row[key] for row in rows)

    free, constrained, library = median("free_tps"), median("constrained_tps"), median("library_tps")
    bad_constrained = sum(r["constrained_degenerate"] for r in rows)
    bad_free = sum(r["free_degenerate"] for r in rows)
    lines = [
        f"Default model, {len(rows)} chunks of LoCoMo turns, ~{median('chunk_tokens'):.0f} model tokens each, medians:",
        "",
        "| figure | value |",
        "|---|---|",
        f"| tokens/s free | {free:.1f} |",
        f"| tokens/s constrained (ours: grammar judges the top-k) | {constrained:.1f} ({constrained / free:.0%}) |",
        f"| tokens/s constrained (llama-cpp-python: grammar on every token) | {library:.1f} ({library / free:.0%}) |",
        f"| tokens/s constrained with fixed spans fed in batches (what the curator runs) | {median('fed_tps'):.1f} "
        f"({median('fed_share'):.0%} of its tokens fed) |",
        f"| seconds per chunk (whole curation: search, prompt, generation, writes) | {median('seconds'):.1f} "
        f"(max {max(r['seconds'] for r in rows):.1f}) |",
        f"| calls per chunk / executed | {median('calls'):.0f} / {sum(r['executed'] for r in rows)}"
        f" of {sum(r['calls'] for r in rows)} |",
        f"| degenerate outputs, constrained | {bad_constrained} of {len(rows)} |",
        f"| degenerate outputs, free (same prompt, no grammar) | {bad_free} of {len(rows)} |",
    ]
    return "\n".join(lines)


@main.command()
@click.option("--limit", type=int, help="Only the first N conversations.")
@click.option("--sessions", "max_sessions", type=int, help="Only the first N sessions of each conversation.")
@click.option("-o", "--output", type=click.Path(path_type=Path), help="Also write the table (Markdown) here.")
def quality(limit: int | None, max_sessions: int | None, output: Path | None) -> None:
    """Answer-token recall@10 and memory size: curated memory vs every turn verbatim."""
    from mcp_memalpha.policy import load_curator

    curator = load_curator("default", tools=curator_tools())
    totals: dict[str, dict[str, list[float]]] = {"verbatim": {}, "curated": {}}
    emitted = executed = 0
    seconds: list[float] = []
    for conversation in json.loads(LOCOMO.read_text())[:limit]:
        picked = sessions(conversation)[:max_sessions]
        with tempfile.TemporaryDirectory() as tmp:
            verbatim = Memory(Settings(data_dir=Path(tmp) / "verbatim")).open()
            curated = Memory(Settings(data_dir=Path(tmp) / "curated")).open()
            ctx = CallContext(source="policy", job_id="j-eval")
            run = make_execute(curated, ctx)
            for done, (_, date, turns) in enumerate(picked, 1):
                for turn in turns:
                    content = f"{turn['speaker']}: {turn['text']}"
                    execute(
                        verbatim,
                        ctx,
                        "new_memory_insert",
                        {"memory_type": "episodic", "content": content, "timestamp": date},
                    )
                result = curator.curate(render(turns), timestamp=date, execute=run)
                emitted += len(result.calls)
                executed += result.executed
                seconds.append(result.seconds)
                click.echo(
                    f"{conversation['sample_id']}: session {done}/{len(picked)} curated in {result.seconds:.1f} s, "
                    f"{result.executed} of {len(result.calls)} calls executed",
                    err=True,
                )
            stored = {number for number, _, _ in picked}
            for name, memory in (("verbatim", verbatim), ("curated", curated)):
                _score(memory, ctx, conversation, stored, totals[name])
                memory.close()
    table = quality_table(totals, emitted, executed, seconds)
    click.echo(table)
    if output:
        output.write_text(table + "\n")


def _score(
    memory: Memory, ctx: CallContext, conversation: dict[str, Any], stored: set[int], into: dict[str, list[float]]
) -> None:
    items = list(memory.iter_items(ctx.namespace))
    into.setdefault("memory_tokens", []).append(
        count_tokens(memory.core(ctx).content) + sum(count_tokens(item.content) for item in items)
    )
    into.setdefault("items", []).append(len(items))
    for qa in conversation["qa"]:
        category = qa.get("category")
        sessions_needed = {int(e.split(":")[0].lstrip("D")) for e in qa.get("evidence", []) if e.startswith("D")}
        if category not in CATEGORIES or "answer" not in qa or not sessions_needed or not sessions_needed <= stored:
            continue  # with --sessions, only questions whose evidence was stored
        # Whole memories: this compares what the memories hold, not how search shows them.
        found = execute(memory, ctx, "search_memory", {"query": qa["question"], "top_k": 10, "excerpt_tokens": 0})
        hits = found["results"]
        recall = answer_token_recall(qa["answer"], "\n".join(hit["text"] for hit in hits))
        into.setdefault(CATEGORIES[category], []).append(recall)
        into.setdefault("overall", []).append(recall)


def quality_table(totals: dict[str, dict[str, list[float]]], emitted: int, executed: int, seconds: list[float]) -> str:
    columns = [*CATEGORIES.values(), "overall"]
    lines = [
        "| memory | " + " | ".join(f"answer-token recall@10 {c}" for c in columns) + " | memory tokens | items |",
        "|---|" + "---|" * (len(columns) + 2),
    ]
    for name, scores in totals.items():
        cells = [f"{statistics.mean(scores[c]):.3f}" if scores.get(c) else "-" for c in columns]
        lines.append(
            f"| {name} | "
            + " | ".join(cells)
            + f" | {sum(scores['memory_tokens']):,.0f} | {sum(scores['items']):,.0f} |"
        )
    share = executed / emitted if emitted else 0.0
    lines += [
        "",
        f"Questions: {len(totals['curated'].get('overall', []))}. Calls emitted by the curator: {emitted}, executed: "
        f"{executed} ({share:.1%}). Seconds per session chunk: median {statistics.median(seconds):.1f}, "
        f"max {max(seconds):.1f}.",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
