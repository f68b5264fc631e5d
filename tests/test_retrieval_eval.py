"""A reduced run of `mcp-memalpha eval-retrieval` (one LoCoMo conversation) as a smoke test."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from mcp_memalpha.cli import main
from mcp_memalpha.retrieval_eval import answer_token_recall, answer_tokens
from tests.conftest import shared_data_missing

LOCOMO = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "locomo" / "locomo_dev.json"


def test_answer_token_normalization() -> None:
    assert answer_tokens("The Sunday before 25 May, 2023") == ["sunday", "before", "25", "may", "2023"]
    assert answer_token_recall("7 May 2023", "[8 May 2023] ... (yesterday = 7 May 2023)") == 1.0
    assert answer_token_recall("adoption agencies", "She researched agencies.") == 0.5


@pytest.mark.skipif(shared_data_missing(LOCOMO), reason="needs the LoCoMo dev data in ../shared/data/locomo")
def test_eval_retrieval_smoke(tmp_path: Path) -> None:
    out = tmp_path / "table.md"
    result = CliRunner().invoke(
        main,
        [
            "eval-retrieval",
            "--locomo",
            str(LOCOMO),
            "--limit",
            "1",
            "--ks",
            "10",
            "--methods",
            "hybrid,bm25",
            "-o",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    table = out.read_text()
    overall = {
        (m.group(1), m.group(2)): float(m.group(3))
        for m in re.finditer(r"\| (\w+) \| 10 \| (evidence recall|answer-token recall) \|.*\*\*([\d.]+)\*\*", table)
    }
    assert set(overall) == {(m, r) for m in ("hybrid", "bm25") for r in ("evidence recall", "answer-token recall")}
    # Far above what a random pick of 10 of ~400 turns would give (~0.03).
    assert overall[("hybrid", "evidence recall")] > 0.5 and overall[("hybrid", "answer-token recall")] > 0.5
    assert "retrieved words" in table and "p50 ms" in table
