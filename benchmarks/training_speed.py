"""Where a GRPO step's time goes, and what 100 steps would take; and how much the reward of one
group's rollouts differs (GRPO learns only from that spread).

    python benchmarks/training_speed.py speed [--config training/configs/smollm2_cpu_lora.toml] [--steps 2]
    python benchmarks/training_speed.py spread [--config ...] [--windows 4] [--model tiny|default]

`speed` runs `steps` real steps of the configuration (`mcp-memalpha train`'s own code, in a
temporary folder) and prints, per step, its seconds split into rollout generation, tool calls,
reward scoring (the reader) and the rest (TRL's forward and backward passes and the optimizer),
then the start-up time and a projection for 100 steps (start-up + 100 x the median step).

`spread` samples the configuration's rollouts (constrained the same way, no training) on a few
real LoCoMo windows and prints the reward std inside each group under the paper's weights and
under the configuration's, from the same samples.

Figures from a machine other work shares are noisy: say so when quoting them.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import tempfile
import time
from pathlib import Path

from mcp_memalpha.training.grpo import PAPER_TERMS, TERMS, TrainConfig, run_rollouts, training_instances

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = ROOT / "training" / "configs" / "smollm2_cpu_lora.toml"
PHASES = ("generation", "tools", "scoring")


def speed(config_path: Path, steps: int, output_dir: Path | None) -> None:
    from mcp_memalpha.training.grpo import train

    with tempfile.TemporaryDirectory(prefix="training-speed-") as scratch:
        folder = str(output_dir or scratch)  # a kept folder reuses its dequantized start model
        config = TrainConfig.from_toml(config_path, output_dir=folder, steps=steps, save_steps=0)
        started = time.perf_counter()
        lines: list[str] = []

        def log(line: str) -> None:
            lines.append(line)
            print(f"[{time.perf_counter() - started:6.0f} s] {line}", flush=True)

        train(config, log=log)
        total = time.perf_counter() - started
        history = [json.loads(line) for line in (Path(folder) / "log.jsonl").read_text().splitlines()]
    print(f"\n{config_path.name}: {steps} steps, LoRA rank {config.lora_r or '- (full)'}, beta {config.beta}")
    print("| step | seconds | generation | tools | scoring | TRL forward/backward/optimizer | group reward std |")
    print("|---|---|---|---|---|---|---|")
    step_times = []
    for entry in history:
        step = entry["step_time"]
        parts = [entry.get(f"time/{phase}", 0.0) for phase in PHASES]
        step_times.append(step)
        cells = " | ".join(f"{p:.1f}" for p in parts)
        print(
            f"| {entry['step']} | {step:.1f} | {cells} | {step - sum(parts):.1f} | {entry.get('reward_std', 0):.3f} |"
        )
    median = statistics.median(step_times)
    startup = total - sum(step_times)
    print(
        f"\nwall {total:.0f} s: start-up (model, data, trainer, saving) {startup:.0f} s, median step {median:.1f} s; "
        f"projected 100 steps: {(startup + 100 * median) / 60:.0f} min"
    )


def spread(config_path: Path, windows: int, model: str, output_dir: Path | None) -> None:
    from mcp_memalpha.training.generation import TransformersGenerator
    from mcp_memalpha.training.grpo import load_start_model

    config = TrainConfig.from_toml(config_path, model=model)
    instances = training_instances(config)[:windows]
    with tempfile.TemporaryDirectory(prefix="reward-spread-") as scratch:
        network, tokenizer = load_start_model(config, output_dir or Path(scratch))
    generator = TransformersGenerator(
        network, tokenizer, max_new_tokens=config.max_new_tokens, temperature=config.temperature
    )
    paper = {name: (config.weights[name] if name in PAPER_TERMS else 0.0) for name in TERMS}
    rows = []
    for number, instance in enumerate(instances, start=1):
        started = time.perf_counter()
        _, terms = run_rollouts(instance, generator, config, config.rollouts)
        per_weights = {}
        for label, weights in (("paper", paper), ("config", config.weights)):
            rewards = [sum(weights[name] * values[name] for name in TERMS) for values in terms]
            per_weights[label] = statistics.pstdev(rewards)
        qa = [values["qa"] for values in terms]
        rows.append((instance.instance_id, len(instance.questions), per_weights["paper"], per_weights["config"], qa))
        print(
            f"[{number}/{len(instances)}] {instance.instance_id}: std paper {per_weights['paper']:.3f}, "
            f"config {per_weights['config']:.3f}, qa {', '.join(f'{v:.2f}' for v in qa)} "
            f"({time.perf_counter() - started:.0f} s)",
            flush=True,
        )
    print(f"\n{config_path.name}, model {model}, {config.rollouts} rollouts per window")
    print("| window | questions | reward std, paper weights | reward std, config weights | qa per rollout |")
    print("|---|---|---|---|---|")
    for window, questions, std_paper, std_config, qa in rows:
        print(f"| {window} | {questions} | {std_paper:.3f} | {std_config:.3f} | {', '.join(f'{v:.2f}' for v in qa)} |")
    print(
        f"| mean | | {statistics.mean(r[2] for r in rows):.3f} | {statistics.mean(r[3] for r in rows):.3f} | |\n"
        f"weights: paper {json.dumps(paper)}; config {json.dumps(dataclasses.asdict(config)['weights'])}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    for name in ("speed", "spread"):
        command = commands.add_parser(name)
        command.add_argument("--config", type=Path, default=DEFAULT_CONFIG)
    commands.choices["speed"].add_argument("--steps", type=int, default=2)
    for name in ("speed", "spread"):  # a kept folder reuses its dequantized start model
        commands.choices[name].add_argument("--output-dir", type=Path, default=None)
    commands.choices["spread"].add_argument("--windows", type=int, default=4)
    commands.choices["spread"].add_argument("--model", default="tiny", help="tiny (random weights) or default")
    args = parser.parse_args()
    if args.command == "speed":
        speed(args.config, args.steps, args.output_dir)
    else:
        spread(args.config, args.windows, args.model, args.output_dir)


if __name__ == "__main__":
    main()
