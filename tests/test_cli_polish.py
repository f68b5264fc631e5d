"""The command line's manners: `-h` on every command, and one line of error for a bad file."""

from __future__ import annotations

import json
from pathlib import Path

import click
import pytest
from click.testing import CliRunner, Result

from mcp_memalpha.cli import main


def commands(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = []
    for name, command in group.commands.items():
        found.append((*prefix, name))
        if isinstance(command, click.Group):
            found += commands(command, (*prefix, name))
    return found


@pytest.mark.parametrize("path", commands(main), ids=" ".join)
def test_every_command_answers_dash_h(path: tuple[str, ...]) -> None:
    result = CliRunner().invoke(main, [*path, "-h"])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output and "Show this message and exit." in result.output


def one_line_error(result: Result) -> str:
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    output = result.output.strip()
    assert "Traceback" not in output and len(output.splitlines()) == 1, output
    return output


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"not json at all", "is not JSON"),
        (b'{"sample_id": "x"}', "expected a JSON list of LoCoMo conversations, found dict"),
        (b'[{"sample_id": "x", "qa": []}]', "conversation 1 has no conversation"),
        (b"\xff\xfe\x00binary", "is not UTF-8 text"),
    ],
)
def test_eval_retrieval_given_a_wrong_file_says_so_in_one_line(tmp_path: Path, content: bytes, reason: str) -> None:
    wrong = tmp_path / "wrong.json"
    wrong.write_bytes(content)
    output = one_line_error(CliRunner().invoke(main, ["eval-retrieval", "--locomo", str(wrong)]))
    assert reason in output and str(wrong) in output


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"\xff\xfe\x00 binary", "is not UTF-8 text"),
        (b"", "the file is empty"),
        (b"[1, 2, 3]\n", "line 1"),
    ],
)
def test_import_of_a_bad_file_is_one_line(tmp_path: Path, content: bytes, reason: str) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(content)
    output = one_line_error(CliRunner().invoke(main, ["import", str(bad), "--data-dir", str(tmp_path / "d")]))
    assert "nothing was imported" in output and reason in output


def test_import_of_a_missing_file_is_one_line(tmp_path: Path) -> None:
    output = one_line_error(
        CliRunner().invoke(main, ["import", str(tmp_path / "absent.jsonl"), "--data-dir", str(tmp_path / "d")])
    )
    assert "cannot read" in output and "absent.jsonl" in output
    assert not (tmp_path / "d").exists()


def test_export_to_an_unwritable_place_is_one_line(tmp_path: Path) -> None:
    from mcp_memalpha import CallContext, Memory, Settings

    with Memory(Settings(data_dir=tmp_path / "d")) as memory:
        memory.insert(CallContext(), "semantic", "Herons nest in colonies")
    target = tmp_path / "no-such-folder" / "out.jsonl"
    result = CliRunner().invoke(main, ["export", "--data-dir", str(tmp_path / "d"), "-o", str(target)])
    assert result.exit_code != 0 and "Traceback" not in result.output
    assert "out.jsonl" in result.output


def test_eval_retrieval_shows_progress(tmp_path: Path) -> None:
    turns = [
        {"speaker": "Ana", "text": "I adopted a greyhound named Pico.", "dia_id": "D1:1"},
        {"speaker": "Ben", "text": "Lovely, how old is he?", "dia_id": "D1:2"},
    ]
    qa = [{"question": "What is the name of Ana's dog?", "answer": "Pico", "evidence": ["D1:1"], "category": 4}]
    conversation = {"sample_id": "tiny", "conversation": {"session_1": turns, "session_1_date_time": "8 May 2023"}}
    locomo = tmp_path / "tiny.json"
    locomo.write_text(json.dumps([{**conversation, "qa": qa}]))
    result = CliRunner().invoke(main, ["eval-retrieval", "--locomo", str(locomo), "--ks", "5", "--methods", "bm25"])
    assert result.exit_code == 0, result.output
    # Not a terminal here: the bar shows its label once, then a line per conversation.
    assert "eval-retrieval" in result.output and "[1/1] tiny: 1 questions" in result.output


def test_the_cli_the_handshake_and_the_package_metadata_report_one_version() -> None:
    from importlib.metadata import version

    from click.testing import CliRunner

    from mcp_memalpha import __version__
    from mcp_memalpha.cli import main

    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0 and version("mcp-memalpha") in result.output
    assert __version__ == version("mcp-memalpha")
