"""`mcp-memalpha train` under `accelerate launch` with 2 CPU processes (gloo): the same command
and code as on one process, as TRL and accelerate distribute it (each process gets whole rollouts
of its own instance; rewards are gathered for the advantages)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import shared_data_missing

ROOT = Path(__file__).resolve().parents[1]
LOCOMO = ROOT.parent / "shared" / "data" / "locomo" / "locomo_dev.json"
pytestmark = pytest.mark.skipif(
    shared_data_missing(LOCOMO), reason="needs the LoCoMo dev data in ../shared/data/locomo"
)

CONFIG = """
output_dir = "{output}"
[model]
model = "tiny"
tiny_hidden = 32
tiny_layers = 1
[data]
chunks_per_instance = 1
max_questions = 3
max_instances = 4
max_chunk_tokens = 300
[rollout]
wire_format = "memalpha"
rollouts = 2
max_new_tokens = 8
[optim]
steps = 1
learning_rate = 1e-4
beta = 0.0
"""


def test_train_runs_under_accelerate_launch_with_two_cpu_processes(tmp_path: Path) -> None:
    launcher = shutil.which("accelerate", path=str(Path(sys.executable).parent)) or shutil.which("accelerate")
    assert launcher, "accelerate comes with the train extra"
    config = tmp_path / "ddp.toml"
    config.write_text(CONFIG.format(output=tmp_path / "run"))
    command = [launcher, "launch", "--cpu", "--num_processes", "2", "--num_machines", "1"]
    command += ["--mixed_precision", "no", "--dynamo_backend", "no", "-m", "mcp_memalpha", "train", "--config"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    result = subprocess.run([*command, str(config)], capture_output=True, text=True, timeout=240, env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-4000:]
    history = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [entry["step"] for entry in history] == [1]
    assert "rewards/qa/mean" in history[0]
    # 2 processes x 1 instance x 2 rollouts x 1 chunk: one group per process, 4 samples in the step
    assert history[0]["num_tokens"] > 0
    assert (tmp_path / "run" / "final" / "config.json").is_file()
