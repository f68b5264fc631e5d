"""Datasets for training and evaluating the curator: one `Instance` = chunks to memorize + questions.

Three sources, one shape:
- the Memalpha dataset layout (parquet or JSON Lines; `chunks` and `questions_and_answers` are JSON
  strings there), so the published Memalpha / MemoryAgentBench files work when a user has them;
- LoCoMo conversations (`shared/data/locomo/locomo_dev.json`): each session becomes a dated chunk,
  the QA items of categories 1-4 become questions (category 5 is unanswerable by design);
- a small training set cut from LoCoMo: a few consecutive sessions per instance, keeping only the
  questions whose evidence lies inside those sessions (so every question is answerable from them).

Nothing here imports torch or pyarrow at module import; parquet is read lazily with pyarrow
(installed with lancedb).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

LOCOMO_CATEGORIES = {1: "multi-hop", 2: "temporal", 3: "open-domain", 4: "single-hop"}
_SESSION_KEY = re.compile(r"^session_(\d+)$")
_EVIDENCE = re.compile(r"^D(\d+):\d+$")


@dataclass(frozen=True)
class QA:
    question: str
    answer: str
    category: int | None = None  # LoCoMo category; None for sources without one
    evidence_chunks: tuple[int, ...] = ()  # positions of the chunks holding the answer, when known


@dataclass(frozen=True)
class Instance:
    """What one rollout memorizes (the chunks, in order) and is then asked about."""

    instance_id: str
    chunks: list[str]
    questions: list[QA]
    data_source: str
    metadata: dict[str, Any] = field(default_factory=dict)

    def to_row(self) -> dict[str, Any]:
        """The Memalpha row layout (JSON strings for the nested columns)."""
        return {
            "instance_id": self.instance_id,
            "chunks": json.dumps(self.chunks, ensure_ascii=False),
            "questions_and_answers": json.dumps(
                [
                    {
                        "question": q.question,
                        "answer": q.answer,
                        "category": q.category,
                        "evidence_chunks": list(q.evidence_chunks),
                    }
                    for q in self.questions
                ],
                ensure_ascii=False,
            ),
            "data_source": self.data_source,
            "metadata": json.dumps(self.metadata, ensure_ascii=False),
            "num_chunks": len(self.chunks),
            "num_questions": len(self.questions),
        }


# ---- the Memalpha layout -----------------------------------------------------------------------


def _json_field(value: Any, default: Any) -> Any:
    """A nested column: a JSON string in the published files, already parsed in some exports."""
    if value is None:
        return default
    if isinstance(value, str):
        return json.loads(value) if value.strip() else default
    if hasattr(value, "tolist"):  # numpy arrays from some parquet readers
        return value.tolist()
    return value


def instance_from_row(row: dict[str, Any], index: int = 0) -> Instance:
    """One Memalpha row -> Instance. Answers that are lists (several golds) are joined with ';',
    the separator the SubEM metric splits on."""
    chunks = [str(chunk) for chunk in _json_field(row.get("chunks"), [])]
    questions = []
    for item in _json_field(row.get("questions_and_answers"), []):
        answer = item.get("answer", "")
        if isinstance(answer, list):
            answer = "; ".join(str(part) for part in answer)
        category = item.get("category")
        evidence = tuple(int(i) for i in item.get("evidence_chunks") or ())
        questions.append(QA(str(item.get("question", "")), str(answer), int(category) if category else None, evidence))
    metadata = _json_field(row.get("metadata"), {})
    return Instance(
        instance_id=str(row.get("instance_id") or f"row-{index}"),
        chunks=chunks,
        questions=questions,
        data_source=str(row.get("data_source") or "unknown"),
        metadata=metadata if isinstance(metadata, dict) else {"metadata": metadata},
    )


def _rows(path: Path) -> Iterator[dict[str, Any]]:
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        yield from pq.read_table(path).to_pylist()
    elif path.suffix in (".jsonl", ".ndjson"):
        with path.open(encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                if line.strip():
                    try:
                        yield json.loads(line)
                    except ValueError as exc:
                        raise ValueError(f"{path}:{number}: not a JSON object ({exc})") from None
    else:
        raise ValueError(f"{path}: expected a .parquet or .jsonl file")


def load_memalpha(
    path: str | Path, *, limit: int | None = None, sources: Iterable[str] | None = None
) -> list[Instance]:
    """Instances from a Memalpha-layout file (or every such file in a folder), optionally only
    some data sources, at most `limit`."""
    path = Path(path)
    files = sorted(p for p in path.iterdir() if p.suffix in (".parquet", ".jsonl")) if path.is_dir() else [path]
    wanted = set(sources) if sources else None
    found: list[Instance] = []
    for file in files:
        for index, row in enumerate(_rows(file)):
            instance = instance_from_row(row, index)
            if wanted is None or instance.data_source in wanted:
                found.append(instance)
                if limit is not None and len(found) >= limit:
                    return found
    return found


def write_jsonl(instances: Iterable[Instance], path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as handle:
        for instance in instances:
            handle.write(json.dumps(instance.to_row(), ensure_ascii=False) + "\n")
    return path


# ---- LoCoMo --------------------------------------------------------------------------------------


def session_chunk(date: str, turns: list[dict[str, Any]]) -> str:
    """A session as the curator sees a chunk: a dated header, then one `Speaker: text` line per turn.
    A shared image is kept as its caption, since some answers are only in it."""
    lines = [f"[Dialogue at {date}]"]
    for turn in turns:
        text = " ".join(str(turn.get("text", "")).split())
        caption = turn.get("blip_caption")
        if caption:
            text = f"{text} [shares an image: {caption}]".strip()
        lines.append(f"{turn['speaker']}: {text}")
    return "\n".join(lines)


def _sessions(conversation: dict[str, Any]) -> list[tuple[int, str, list[dict[str, Any]]]]:
    """(number, date, turns) of every session, in number order (the file's key order is not)."""
    found = []
    for key, turns in conversation.items():
        match = _SESSION_KEY.match(key)
        if match and isinstance(turns, list):
            number = int(match.group(1))
            found.append((number, str(conversation.get(f"session_{number}_date_time", "")), turns))
    return sorted(found)


def _corrections(path: Path | None) -> dict[str, dict[str, Any]]:
    """Answer-key corrections by question id (`locomo_<conversation index>_qa<qa index>`)."""
    if path is None or not path.is_file():
        return {}
    return {item["question_id"]: item for item in json.loads(path.read_text(encoding="utf-8"))}


def _locomo_questions(
    conversation_index: int, record: dict[str, Any], corrections: dict[str, dict[str, Any]]
) -> list[tuple[QA, set[int]]]:
    """Categories 1-4 with an answer, corrected where the audit found the key wrong, with the
    sessions their evidence lies in."""
    found = []
    for qa_index, item in enumerate(record.get("qa", [])):
        category = item.get("category")
        if category not in LOCOMO_CATEGORIES or "answer" not in item:
            continue
        fix = corrections.get(f"locomo_{conversation_index}_qa{qa_index}", {})
        answer = str(fix.get("correct_answer") or item["answer"])
        evidence = fix.get("correct_evidence") or item.get("evidence") or []
        sessions = {int(m.group(1)) for e in evidence if (m := _EVIDENCE.match(str(e).strip()))}
        found.append((QA(str(item["question"]), answer, int(category)), sessions))
    return found


def locomo_instances(
    path: str | Path,
    *,
    sessions_per_instance: int | None = None,
    corrections: str | Path | None = "auto",
) -> list[Instance]:
    """LoCoMo conversations as instances (data source `locomo`).

    `sessions_per_instance=None`: one instance per conversation, every session a chunk, every
    category 1-4 question. With a number n: each conversation is cut into windows of n consecutive
    sessions, and a window keeps the questions whose evidence sessions all fall inside it (a
    question without evidence is dropped there, since we cannot tell which window answers it).
    `corrections='auto'` applies `locomo_dev_answer_corrections.json` beside the file if present.
    """
    path = Path(path)
    fixes_path = path.parent / "locomo_dev_answer_corrections.json" if corrections == "auto" else corrections
    fixes = _corrections(Path(fixes_path) if fixes_path else None)
    instances = []
    for index, record in enumerate(json.loads(path.read_text(encoding="utf-8"))):
        sessions = _sessions(record["conversation"])
        questions = _locomo_questions(index, record, fixes)
        sample = str(record.get("sample_id", f"conv-{index}"))
        if sessions_per_instance is None:
            position = {n: i for i, (n, _, _) in enumerate(sessions)}
            instances.append(
                Instance(
                    sample,
                    [session_chunk(date, turns) for _, date, turns in sessions],
                    [_located(qa, where, position) for qa, where in questions],
                    "locomo",
                    {"sample_id": sample, "sessions": [n for n, _, _ in sessions]},
                )
            )
            continue
        for start in range(0, len(sessions), sessions_per_instance):
            window = sessions[start : start + sessions_per_instance]
            numbers = {n for n, _, _ in window}
            position = {n: i for i, (n, _, _) in enumerate(window)}
            kept = [_located(qa, where, position) for qa, where in questions if where and where <= numbers]
            if not kept:
                continue
            first, last = window[0][0], window[-1][0]
            instances.append(
                Instance(
                    f"{sample}-s{first}-{last}",
                    [session_chunk(date, turns) for _, date, turns in window],
                    kept,
                    "locomo",
                    {"sample_id": sample, "sessions": sorted(numbers)},
                )
            )
    return instances


def _located(qa: QA, sessions: set[int], position: dict[int, int]) -> QA:
    chunks = tuple(sorted(position[n] for n in sessions if n in position))
    return QA(qa.question, qa.answer, qa.category, chunks)


def truncate(instance: Instance, *, max_chunks: int | None = None, max_questions: int | None = None) -> Instance:
    """The first `max_chunks` chunks with the questions still answerable from them (those whose
    evidence chunks are known and all kept; questions of unknown evidence are kept as they are),
    then the first `max_questions` of those."""
    chunks, questions = instance.chunks, instance.questions
    if max_chunks is not None and max_chunks < len(chunks):
        chunks = chunks[:max_chunks]
        questions = [q for q in questions if not q.evidence_chunks or max(q.evidence_chunks) < max_chunks]
    if max_questions is not None:
        questions = questions[:max_questions]
    return Instance(instance.instance_id, chunks, questions, instance.data_source, instance.metadata)


def default_locomo_path() -> Path:
    """Where the LoCoMo dev file lies in this workspace (`shared/` beside the repository)."""
    for base in (Path.cwd(), *Path(__file__).resolve().parents):
        candidate = base / "shared" / "data" / "locomo" / "locomo_dev.json"
        if candidate.is_file():
            return candidate
        candidate = base.parent / "shared" / "data" / "locomo" / "locomo_dev.json"
        if candidate.is_file():
            return candidate
    raise FileNotFoundError("locomo_dev.json not found; pass its path (shared/data/locomo/locomo_dev.json)")


def training_set(
    path: str | Path | None = None, *, sessions_per_instance: int = 2, max_questions: int | None = 20
) -> list[Instance]:
    """The small real training set built from what ships: LoCoMo cut into windows of a few
    sessions. `max_questions` keeps the reader's work per rollout bounded (the first ones, in
    the file's order, which follows the conversation)."""
    instances = locomo_instances(path or default_locomo_path(), sessions_per_instance=sessions_per_instance)
    if max_questions is None:
        return instances
    return [truncate(i, max_questions=max_questions) for i in instances]


def load_instances(
    source: str | Path, *, limit: int | None = None, sessions_per_instance: int | None = None
) -> list[Instance]:
    """Any supported dataset by path: a LoCoMo JSON file, or Memalpha parquet / JSON Lines."""
    path = Path(source)
    if path.suffix == ".json":
        instances = locomo_instances(path, sessions_per_instance=sessions_per_instance)
        return instances[:limit] if limit is not None else instances
    return load_memalpha(path, limit=limit)


def describe(instances: list[Instance]) -> dict[str, Any]:
    """Counts for a log line: instances, chunks, questions per data source."""
    summary: dict[str, dict[str, int]] = {}
    for instance in instances:
        entry = summary.setdefault(instance.data_source, {"instances": 0, "chunks": 0, "questions": 0})
        entry["instances"] += 1
        entry["chunks"] += len(instance.chunks)
        entry["questions"] += len(instance.questions)
    return summary


__all__ = [
    "QA",
    "Instance",
    "default_locomo_path",
    "describe",
    "instance_from_row",
    "load_instances",
    "load_memalpha",
    "locomo_instances",
    "session_chunk",
    "training_set",
    "truncate",
    "write_jsonl",
]
