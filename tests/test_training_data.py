"""mcp_memalpha.training.data on real inputs: the LoCoMo dev file, and Memalpha-layout parquet / JSON Lines we write."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mcp_memalpha.training.data import (
    QA,
    Instance,
    instance_from_row,
    load_instances,
    load_memalpha,
    locomo_instances,
    session_chunk,
    training_set,
    write_jsonl,
)

from tests.conftest import shared_data_missing

LOCOMO = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "locomo" / "locomo_dev.json"
needs_locomo = pytest.mark.skipif(
    shared_data_missing(LOCOMO), reason="needs the LoCoMo dev data in ../shared/data/locomo"
)


def test_session_chunk_has_a_dated_header_and_speaker_lines() -> None:
    chunk = session_chunk(
        "1:56 pm on 8 May, 2023",
        [
            {"speaker": "Caroline", "text": "I went to a  support group\nyesterday."},
            {"speaker": "Melanie", "text": "Look!", "blip_caption": "a photo of a lake at sunrise"},
        ],
    )
    assert chunk.splitlines() == [
        "[Dialogue at 1:56 pm on 8 May, 2023]",
        "Caroline: I went to a support group yesterday.",
        "Melanie: Look! [shares an image: a photo of a lake at sunrise]",
    ]


@needs_locomo
def test_locomo_conversations_become_instances_with_sessions_in_order() -> None:
    instances = locomo_instances(LOCOMO)
    assert [i.instance_id for i in instances] == ["conv-26", "conv-30", "conv-41"]
    conv26 = instances[0]
    assert len(conv26.chunks) == 19
    assert conv26.chunks[0].startswith("[Dialogue at 1:56 pm on 8 May, 2023]\nCaroline: Hey Mel!")
    # session 10 must come after session 9, not after session 1 (string order would put it there)
    assert conv26.metadata["sessions"] == list(range(1, 20))
    # categories 1-4 only: 32 + 37 + 13 + 70 in conv-26; category 5 (adversarial) is left out
    assert len(conv26.questions) == 152
    assert {q.category for q in conv26.questions} == {1, 2, 3, 4}
    assert all(isinstance(q.answer, str) and q.answer for q in conv26.questions)


@needs_locomo
def test_locomo_answer_corrections_are_applied_unless_disabled() -> None:
    question = "What fields would Caroline be likely to pursue in her educaton?"
    fixed = {q.question: q.answer for q in locomo_instances(LOCOMO)[0].questions}
    raw = {q.question: q.answer for q in locomo_instances(LOCOMO, corrections=None)[0].questions}
    assert raw[question] == "Psychology, counseling certification"
    assert fixed[question] == "Counseling or mental health"
    assert raw["When did Melanie paint a sunrise?"] == "2022"  # an int in the file


@needs_locomo
def test_windows_keep_only_questions_answerable_inside_them() -> None:
    windows = locomo_instances(LOCOMO, sessions_per_instance=2, corrections=None)
    first = windows[0]
    assert first.instance_id == "conv-26-s1-2"
    assert len(first.chunks) == 2
    record = json.loads(LOCOMO.read_text())[0]
    expected = [
        q["question"]
        for q in record["qa"]
        if q.get("category") in (1, 2, 3, 4)
        and q.get("evidence")
        and all(e.split(":")[0] in ("D1", "D2") for e in q["evidence"])
    ]
    assert [q.question for q in first.questions] == expected
    assert expected  # the first two sessions do hold answerable questions


@needs_locomo
def test_training_set_is_built_from_what_ships() -> None:
    instances = training_set(LOCOMO, sessions_per_instance=2, max_questions=5)
    assert len(instances) > 20
    assert all(len(i.chunks) <= 2 and 1 <= len(i.questions) <= 5 for i in instances)
    assert {i.data_source for i in instances} == {"locomo"}


def _rows() -> list[dict[str, object]]:
    return [
        {
            "instance_id": "squad-1",
            "prompt": "memorize",
            "chunks": json.dumps(["Paris is the capital of France.", "The Seine flows through Paris."]),
            "questions_and_answers": json.dumps(
                [
                    {"question": "Capital of France?", "answer": "Paris"},
                    {"question": "River?", "answer": ["Seine", "la Seine"]},
                ]
            ),
            "data_source": "squad",
            "metadata": json.dumps({"split": "train"}),
            "num_chunks": 2,
            "num_questions": 2,
        },
        {
            "instance_id": "trec-1",
            "prompt": "memorize",
            "chunks": json.dumps(["How far is the moon? label: 5"]),
            "questions_and_answers": json.dumps([{"question": "How tall is Everest?", "answer": "5"}]),
            "data_source": "trec_coarse",
            "metadata": "{}",
            "num_chunks": 1,
            "num_questions": 1,
        },
    ]


def test_memalpha_parquet_is_read_with_json_string_columns(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "memalpha.parquet"
    pq.write_table(pa.Table.from_pylist(_rows()), path)
    instances = load_memalpha(path)
    assert [i.instance_id for i in instances] == ["squad-1", "trec-1"]
    squad = instances[0]
    assert squad.chunks == ["Paris is the capital of France.", "The Seine flows through Paris."]
    assert squad.questions == [QA("Capital of France?", "Paris"), QA("River?", "Seine; la Seine")]
    assert squad.metadata == {"split": "train"}
    assert [i.instance_id for i in load_memalpha(path, sources=["trec_coarse"])] == ["trec-1"]
    assert len(load_memalpha(tmp_path, limit=1)) == 1  # a folder of files, limited


def test_jsonl_round_trip_and_bad_line_is_named(tmp_path: Path) -> None:
    original = [instance_from_row(row, i) for i, row in enumerate(_rows())]
    path = write_jsonl(original, tmp_path / "set.jsonl")
    assert load_instances(path) == original
    broken = tmp_path / "broken.jsonl"
    broken.write_text(path.read_text() + "{not json\n")
    with pytest.raises(ValueError, match=r"broken\.jsonl:3"):
        load_memalpha(broken)


def test_unknown_file_kind_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "data.csv"
    path.write_text("a,b\n")
    with pytest.raises(ValueError, match=r"parquet or \.jsonl"):
        load_memalpha(path)


def test_instance_row_keeps_categories() -> None:
    instance = Instance("x", ["chunk"], [QA("q?", "a", 2)], "locomo")
    assert instance_from_row(instance.to_row()) == instance
