"""The training commands (`mcp-memalpha eval`, `train`, `export-gguf`).

`mcp_memalpha.cli` forwards to these only when one is invoked, so the server's CLI never imports
training (nor torch) otherwise.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click
from mcp_memalpha.training.export import QUANT_TYPES

# `-h` as well as `--help`, like every other mcp-memalpha command.
HELP = {"help_option_names": ["-h", "--help"]}

if TYPE_CHECKING:
    from mcp_memalpha.training.evaluate import PolicyBuilder
    from mcp_memalpha.training.reader import Reader


@click.command("eval", context_settings=HELP)
@click.option(
    "--data",
    "data",
    type=click.Path(exists=True, dir_okay=True, path_type=Path),
    default=None,
    help="LoCoMo JSON, or Memalpha parquet/JSONL (file or folder) [default: shared/data/locomo/locomo_dev.json].",
)
@click.option("--sessions-per-instance", type=int, default=None, help="LoCoMo: cut conversations into windows.")
@click.option("--limit", type=int, default=None, help="Evaluate the first N instances only.")
@click.option(
    "--max-chunks",
    type=int,
    default=None,
    help="Keep the first N chunks of each instance (and only the questions answerable from them, for LoCoMo).",
)
@click.option("--max-questions", type=int, default=None, help="Keep the first N questions of each instance.")
@click.option(
    "--baselines",
    default="long-context,rag,flat",
    show_default=True,
    help="Comma-separated: long-context, rag, flat (empty for none).",
)
@click.option(
    "--policy",
    "policies",
    multiple=True,
    help="A curator to evaluate: 'default' (embedded SmolLM2-135M GGUF), a .gguf path, or a transformers "
    "checkpoint folder; repeatable.",
)
@click.option(
    "--wire-format", default=None, help="Policy wire format (memalpha, tool_call, json) [default: from the model]."
)
@click.option("--budget", type=int, default=300, show_default=True, help="Tokens the reader sees per question.")
@click.option("--top-k", type=int, default=20, show_default=True, help="Search hits per question.")
@click.option("--search-method", default="bm25", show_default=True, help="Reader's search: bm25, hybrid, vector.")
@click.option(
    "--reader",
    default="extractive",
    show_default=True,
    help="'extractive' (LLM-free) or 'llama:<gguf path or default>'.",
)
@click.option("--threads", type=int, default=None, help="llama.cpp threads.")
@click.option(
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write the Markdown table here (and the chart beside it, .png).",
)
@click.option(
    "--trained-on",
    "trained_on",
    multiple=True,
    type=click.Path(exists=True, path_type=Path),
    help="A training run folder (or checkpoint) whose conversations must not be evaluated on; checkpoint "
    "policies are checked by themselves; repeatable.",
)
@click.option("--force", is_flag=True, help="Evaluate even on conversations a policy was trained on.")
@click.option(
    "--held-out",
    "only_held_out",
    is_flag=True,
    help="Drop the windows of every conversation a policy (or --trained-on run) was trained on, instead of refusing.",
)
@click.option("--resamples", type=int, default=2000, show_default=True, help="Bootstrap resamples of the windows.")
def eval_command(
    data: Path | None,
    sessions_per_instance: int | None,
    limit: int | None,
    max_chunks: int | None,
    max_questions: int | None,
    baselines: str,
    policies: tuple[str, ...],
    wire_format: str | None,
    budget: int,
    top_k: int,
    search_method: str,
    reader: str,
    threads: int | None,
    output: Path | None,
    trained_on: tuple[Path, ...],
    force: bool,
    only_held_out: bool,
    resamples: int,
) -> None:
    """Evaluate curators against the baselines (score and memory tokens per data source); with two
    or more policies, each later one minus the first, paired on the same windows with a bootstrap
    95% interval, per question category."""
    from mcp_memalpha.training.data import default_locomo_path, describe, load_instances, truncate
    from mcp_memalpha.training.evaluate import (
        EvalConfig,
        evaluate,
        held_out,
        paired,
        plot,
        policy_trained_on,
        refuse_trained,
        render_markdown,
        render_paired,
        trained_conversations,
    )

    instances = load_instances(data or default_locomo_path(), limit=limit, sessions_per_instance=sessions_per_instance)
    instances = [truncate(i, max_chunks=max_chunks, max_questions=max_questions) for i in instances]
    instances = [i for i in instances if i.questions]
    trained = set().union(set(), *(trained_conversations(path) for path in trained_on))
    trained |= set().union(set(), *(policy_trained_on(p) for p in policies))
    if only_held_out:
        instances = held_out(instances, trained)
    click.echo(f"data: {describe(instances)}", err=True)
    try:
        refuse_trained(instances, trained)
    except ValueError as exc:
        if not force:
            raise click.UsageError(str(exc)) from None
        click.echo(f"warning (--force): {exc}", err=True)
    names = [_policy_name(p) for p in policies]
    names = [n if names.count(n) == 1 else f"policy:{p}" for n, p in zip(names, policies, strict=True)]
    builders = {n: _policy_builder(p, wire_format, threads) for n, p in zip(names, policies, strict=True)}
    chosen_reader = _reader(reader, threads)
    result = evaluate(
        instances,
        baselines=[b.strip() for b in baselines.split(",") if b.strip()],
        policies=builders,
        reader=chosen_reader,
        config=EvalConfig(budget=budget, top_k=top_k, search_method=search_method),
        progress=lambda line: click.echo(line, err=True),
    )
    table = render_markdown(result, reader=reader, budget=budget)
    for name in names[1:]:
        table += "\n" + render_paired(paired(result, name, names[0], resamples=resamples))
    click.echo(table)
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(table)
        chart = plot(result, output.with_suffix(".png"))
        click.echo(f"wrote {output} and {chart}", err=True)


def _policy_name(spec: str) -> str:
    return "policy" if spec == "default" else f"policy:{Path(spec).name}"


def _policy_builder(spec: str, wire_format: str | None, threads: int | None) -> PolicyBuilder:
    from mcp_memalpha.training.evaluate import curator_builder, generator_builder

    path = Path(spec)
    if spec != "default" and path.is_dir():  # a transformers checkpoint (e.g. from `mcp-memalpha train`)
        from mcp_memalpha.training.generation import TransformersGenerator

        generator = TransformersGenerator.load(path, greedy=True)
        return generator_builder(generator, wire_format=wire_format or generator.wire_format)
    return curator_builder(spec, wire_format=wire_format, threads=threads)


def _reader(spec: str, threads: int | None) -> Reader:
    from mcp_memalpha.training.reader import ExtractiveReader, LlamaReader

    if spec == "extractive":
        return ExtractiveReader()
    if spec.startswith("llama:"):
        return LlamaReader(spec.removeprefix("llama:") or "default", threads=threads)
    raise click.BadParameter("use 'extractive' or 'llama:<gguf>'", param_hint="--reader")


@click.command("train", context_settings=HELP)
@click.option(
    "--config",
    "config_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    required=True,
    help="TOML file of training options (see training/configs/*.toml and docs/training.md).",
)
@click.option("--output-dir", default=None, help="Override output_dir.")
@click.option("--steps", type=int, default=None, help="Override the number of optimization steps.")
@click.option("--model", default=None, help="Override the start model: tiny, default (SmolLM2-135M GGUF), or a folder.")
@click.option(
    "--resume",
    is_flag=True,
    help="Continue from the newest checkpoint-N in the output folder (set save_steps to write them), "
    "or start GRPO from its saved warm-start/ when it has no checkpoint yet.",
)
def train_command(
    config_path: Path, output_dir: str | None, steps: int | None, model: str | None, resume: bool
) -> None:
    """GRPO training of a curator (Mem-α rewards, the paper's grouping) with TRL; runs under
    `accelerate launch` too (one process per device, or several on CPU)."""
    try:
        from mcp_memalpha.training.grpo import TrainConfig, train
    except ImportError as exc:  # torch / transformers / trl missing
        raise click.ClickException(
            f"training needs the train extra: pip install 'mcp-memalpha[train]' ({exc})"
        ) from None
    try:
        config = TrainConfig.from_toml(config_path, output_dir=output_dir, steps=steps, model=model)
        train(config, resume=resume, log=lambda line: click.echo(line, err=True))
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None


@click.command("export-gguf", context_settings=HELP)
@click.argument("checkpoint", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True, help="The .gguf file to write."
)
@click.option(
    "--quant",
    type=click.Choice(list(QUANT_TYPES)),
    default="q8_0",
    show_default=True,
    help="llama.cpp type of the weights (k-quants fall back to q5_0/q8_0 for rows not a multiple of 256).",
)
@click.option(
    "--wire-format",
    default=None,
    help="Wire format the curator prompts it in (memalpha, tool_call, json) [default: the one it was trained in].",
)
@click.option(
    "--name",
    default=None,
    help="general.name of the file; a name that says Memalpha makes the server prompt it in Memalpha-4B's "
    "format [default: the checkpoint's folder name].",
)
@click.option(
    "--base-model",
    "base_models",
    multiple=True,
    help="general.base_model.N.name, repeatable [default: the model its training started from, if any].",
)
@click.option("--threads", type=int, default=None, help="llama.cpp quantization threads.")
@click.option(
    "--adapter",
    "as_adapter",
    is_flag=True,
    help="CHECKPOINT is a LoRA adapter folder (<run>/final-adapter): write a GGUF LoRA adapter (F16, a few MB) "
    "that llama.cpp applies over the base GGUF it was trained from, instead of a merged model.",
)
def export_gguf_command(
    checkpoint: Path,
    output: Path,
    quant: str,
    wire_format: str | None,
    name: str | None,
    base_models: tuple[str, ...],
    threads: int | None,
    as_adapter: bool,
) -> None:
    """Export a trained checkpoint (full or LoRA; Llama or Qwen3) to a GGUF the server loads with
    `mcp-memalpha serve --policy OUT.gguf`."""
    try:
        from mcp_memalpha.training.export import ExportError, export_adapter, export_gguf
    except ImportError as exc:
        raise click.ClickException(f"export needs the train extra: pip install 'mcp-memalpha[train]' ({exc})") from None
    try:
        if as_adapter:
            result = export_adapter(checkpoint, output, wire_format=wire_format, name=name)
        else:
            result = export_gguf(
                checkpoint,
                output,
                quant=quant,
                wire_format=wire_format,
                name=name,
                base_models=base_models,
                threads=threads,
            )
    except ExportError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"wrote {result.path} ({result.quant}, {result.bytes / 1e6:.1f} MB) in {result.seconds:.1f} s", err=True)
