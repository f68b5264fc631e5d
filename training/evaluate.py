"""`mcp-memalpha eval`: a policy against the paper's baselines in one harness.

For each instance and method: build the memory chunk by chunk (a policy through the real tools in
a fresh sandbox; a baseline by its own rule), answer every question with the same reader under the
same token budget, and score with the data source's metric. Scores are averaged over questions,
then over instances (the paper's order). Output: a Markdown table of score and memory tokens per
data source and method, and a bar chart.

Comparing two policies (`paired`): both built the memory of the same windows and answered the same
questions, so the honest figure is the per-window difference of their scores, with a percentile
bootstrap 95% interval over windows (resampling windows, not questions: questions of one window
share one memory), overall and per question category, next to both memories' sizes.
"""

from __future__ import annotations

import random
import statistics
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from mcp_memalpha.training.baselines import Built, build_flat, build_long_context, build_rag
from mcp_memalpha.training.data import Instance
from mcp_memalpha.training.environment import Episode, Generate
from mcp_memalpha.training.reader import DEFAULT_BUDGET, ExtractiveReader, MemoryView, Reader, score_questions

BASELINES = ("long-context", "rag", "flat")


@dataclass(frozen=True)
class EvalConfig:
    budget: int = DEFAULT_BUDGET  # tokens the reader sees per question, for every method
    top_k: int = 20
    search_method: str = "bm25"
    rag_passage_tokens: int = 100


@dataclass
class Result:
    """Per (method, data source): per-instance mean scores and memory sizes."""

    scores: dict[tuple[str, str], list[float]] = field(default_factory=lambda: defaultdict(list))
    memory_tokens: dict[tuple[str, str], list[int]] = field(default_factory=lambda: defaultdict(list))
    seconds: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    methods: list[str] = field(default_factory=list)
    latest: dict[str, float | None] = field(default_factory=dict)  # each method's score on the last instance
    # method -> instance id -> (category, score) per question, for paired comparisons
    questions: dict[str, dict[str, list[tuple[int | None, float]]]] = field(default_factory=lambda: defaultdict(dict))
    instance_tokens: dict[str, dict[str, int]] = field(default_factory=lambda: defaultdict(dict))

    def add(
        self,
        method: str,
        source: str,
        scores: list[float],
        tokens: int,
        seconds: float,
        *,
        instance: Instance | None = None,
    ) -> None:
        if method not in self.methods:
            self.methods.append(method)
        self.latest[method] = statistics.mean(scores) if scores else None
        if scores:
            self.scores[(method, source)].append(statistics.mean(scores))
        self.memory_tokens[(method, source)].append(tokens)
        self.seconds[method] += seconds
        if instance is not None:
            categories = [qa.category for qa in instance.questions]
            self.questions[method][instance.instance_id] = list(zip(categories, scores, strict=True))
            self.instance_tokens[method][instance.instance_id] = tokens

    def score(self, method: str, source: str | None = None) -> float:
        values = [v for (m, s), vs in self.scores.items() if m == method and source in (None, s) for v in vs]
        return statistics.mean(values) if values else float("nan")

    def tokens(self, method: str, source: str | None = None) -> float:
        values = [v for (m, s), vs in self.memory_tokens.items() if m == method and source in (None, s) for v in vs]
        return statistics.mean(values) if values else float("nan")

    @property
    def sources(self) -> list[str]:
        return sorted({s for _, s in self.scores} | {s for _, s in self.memory_tokens})


def conversation_of(instance: Instance) -> str:
    """The unit kept apart between training and evaluation: a LoCoMo conversation (its windows
    share people and facts), else the instance itself."""
    return str(instance.metadata.get("sample_id", instance.instance_id))


def trained_conversations(path: Path) -> set[str]:
    """The conversations a run trained on, from a run folder (`config.json` of `mcp-memalpha
    train`) or a checkpoint of it (its `memalpha_training.json`, else the run folder above it).
    Empty when `path` carries no such record (e.g. the embedded default model)."""
    import json

    path = Path(path)
    for candidate in (path / "memalpha_training.json", path / "config.json", path.parent / "config.json"):
        if candidate.is_file():
            record = json.loads(candidate.read_text())
            if isinstance(record, dict) and "trained_on" in record:
                return {str(name) for name in record["trained_on"]}
    return set()


def policy_trained_on(spec: str) -> set[str]:
    """The conversations the policy `spec` of `--policy` was trained on: a checkpoint's record, or
    the `memalpha.trained_on` key of a GGUF adapter (the shipped one behind 'default' included)."""
    from mcp_memalpha.policy.model import gguf_trained_on, resolve_policy

    if spec != "default" and Path(spec).is_dir():
        return trained_conversations(Path(spec))
    try:
        files = resolve_policy(spec)
    except ValueError:
        return set()  # not a model file: load_curator reports it with its own message
    if files.adapter is None:
        return set()
    return gguf_trained_on(files.adapter)


def held_out(instances: Sequence[Instance], trained: set[str]) -> list[Instance]:
    """The instances of conversations not in `trained`."""
    return [i for i in instances if conversation_of(i) not in trained]


def refuse_trained(instances: Sequence[Instance], trained: set[str]) -> None:
    """Raise if any instance comes from a conversation used for training (unless the caller forces)."""
    seen = sorted({conversation_of(i) for i in instances} & trained)
    if seen:
        raise ValueError(
            f"conversations {', '.join(seen)} were used for training; evaluate on held-out ones "
            "(e.g. --data of another split, or the run's holdout) or pass --force"
        )


# A policy builder memorizes an instance in a fresh Episode and returns it (the caller scores it).
PolicyBuilder = Callable[[Instance], Episode]


def curator_builder(
    model: str = "default", *, wire_format: str | None = None, threads: int | None = None
) -> PolicyBuilder:
    """A llama.cpp GGUF curator ('default' = the embedded SmolLM2-135M, or a path)."""
    from mcp_memalpha.policy import Limits, load_curator
    from mcp_memalpha.training.sandbox import tool_defs

    curator = load_curator(model, tools=tool_defs(), wire_format=wire_format, limits=Limits(), threads=threads)

    def build(instance: Instance) -> Episode:
        return Episode(instance, wire_format=curator.format_name).run_curator(curator)

    return build


def generator_builder(generate: Generate, *, wire_format: str = "memalpha") -> PolicyBuilder:
    """Any text generator (e.g. a transformers checkpoint) driving the policy's prompt and parser."""

    def build(instance: Instance) -> Episode:
        return Episode(instance, wire_format=wire_format).run(generate)

    return build


def _baseline(method: str, instance: Instance, config: EvalConfig) -> Built:
    if method == "long-context":
        return build_long_context(instance, config.budget)
    if method == "rag":
        return build_rag(instance, config.budget, top_k=config.top_k, passage_tokens=config.rag_passage_tokens)
    if method == "flat":
        return build_flat(instance, config.budget)
    raise ValueError(f"unknown baseline {method!r}; the baselines are {', '.join(BASELINES)}")


def evaluate(
    instances: Sequence[Instance],
    *,
    baselines: Sequence[str] = BASELINES,
    policies: dict[str, PolicyBuilder] | None = None,
    reader: Reader | None = None,
    config: EvalConfig | None = None,
    progress: Callable[[str], None] | None = None,
) -> Result:
    reader = reader or ExtractiveReader()
    config = config or EvalConfig()
    result = Result()
    for number, instance in enumerate(instances, start=1):
        for method in baselines:
            started = time.perf_counter()
            built = _baseline(method, instance, config)
            try:
                scores = score_questions(built.view, reader, instance)
            finally:
                built.close()
            result.add(
                method,
                instance.data_source,
                scores,
                built.memory_tokens,
                time.perf_counter() - started,
                instance=instance,
            )
        for name, build in (policies or {}).items():
            started = time.perf_counter()
            with build(instance) as episode:
                view = MemoryView(
                    episode.sandbox, budget=config.budget, top_k=config.top_k, search_method=config.search_method
                )
                scores = score_questions(view, reader, instance)
                tokens = episode.sandbox.memory_tokens()
            result.add(name, instance.data_source, scores, tokens, time.perf_counter() - started, instance=instance)
        if progress:
            progress(
                f"[{number}/{len(instances)}] {instance.instance_id}: "
                + ", ".join(f"{m} {_text(result.latest[m])}" for m in result.methods)
                + " (this instance; the table averages them)"
            )
    return result


def _text(score: float | None) -> str:
    return "-" if score is None else f"{score:.3f}"


def render_markdown(result: Result, *, reader: str, budget: int) -> str:
    """Score and memory tokens per data source and method."""
    sources = result.sources
    header = "| method | " + " | ".join(f"{s} score | {s} memory tokens" for s in sources) + " | seconds |"
    lines = [
        f"Reader: {reader}, {budget} tokens shown per question. Score: mean over questions, then instances.",
        "",
        header,
        "|---|" + "---|---|" * len(sources) + "---|",
    ]
    for method in result.methods:
        cells = " | ".join(f"{result.score(method, s):.3f} | {result.tokens(method, s):.0f}" for s in sources)
        lines.append(f"| {method} | {cells} | {result.seconds[method]:.1f} |")
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class Interval:
    """A mean difference and its percentile bootstrap 95% interval over `n` paired windows."""

    mean: float
    low: float
    high: float
    n: int


def bootstrap_interval(values: Sequence[float], *, resamples: int = 2000, seed: int = 0) -> Interval:
    """The mean of `values` (one paired difference per window) and its percentile bootstrap 95%
    interval (`resamples` draws of the windows with replacement; seeded, so a table is reproducible)."""
    if not values:
        raise ValueError("bootstrap_interval needs at least one paired value")
    rng = random.Random(seed)
    size = len(values)
    means = sorted(sum(rng.choices(values, k=size)) / size for _ in range(resamples))
    low, high = means[int(0.025 * (resamples - 1))], means[round(0.975 * (resamples - 1))]
    return Interval(sum(values) / size, low, high, size)


@dataclass(frozen=True)
class Paired:
    """`method` minus `reference` on the windows both were scored on."""

    method: str
    reference: str
    overall: Interval
    by_category: dict[int | None, Interval]
    tokens: tuple[float, float]  # mean memory tokens of (method, reference) on those windows


def paired(result: Result, method: str, reference: str, *, resamples: int = 2000, seed: int = 0) -> Paired:
    """The paired difference of two methods: per window, the mean score over its questions (or over
    its questions of one category) of `method` minus that of `reference`, bootstrapped over windows."""
    mine, theirs = result.questions.get(method, {}), result.questions.get(reference, {})
    shared = [key for key in mine if key in theirs and mine[key]]
    if not shared:
        raise ValueError(f"{method!r} and {reference!r} were not scored on any common window")

    def differences(category: object) -> list[float]:
        found = []
        for key in shared:
            pairs = [(a, b) for (c, a), (_, b) in zip(mine[key], theirs[key], strict=True) if category in (_ALL, c)]
            if pairs:
                found.append(statistics.mean(a - b for a, b in pairs))
        return found

    categories = sorted({c for key in shared for c, _ in mine[key]}, key=lambda c: (c is None, c or 0))
    tokens = result.instance_tokens
    return Paired(
        method,
        reference,
        bootstrap_interval(differences(_ALL), resamples=resamples, seed=seed),
        {c: bootstrap_interval(differences(c), resamples=resamples, seed=seed) for c in categories},
        (statistics.mean(tokens[method][k] for k in shared), statistics.mean(tokens[reference][k] for k in shared)),
    )


_ALL = object()  # "every category" in `paired`


def render_paired(comparison: Paired) -> str:
    """A Markdown table of the paired difference, overall and per category."""
    ours, theirs = comparison.tokens
    lines = [
        f"Paired: {comparison.method} minus {comparison.reference} on the same {comparison.overall.n} windows "
        "(mean per-window difference, bootstrap 95% interval over windows). "
        f"Memory tokens: {ours:.0f} vs {theirs:.0f}.",
        "",
        "| questions | windows | difference | 95% interval |",
        "|---|---|---|---|",
    ]
    rows = [("all", comparison.overall)] + [
        (f"category {c}" if c is not None else "no category", v) for c, v in comparison.by_category.items()
    ]
    for label, value in rows:
        lines.append(f"| {label} | {value.n} | {value.mean:+.3f} | [{value.low:+.3f}, {value.high:+.3f}] |")
    return "\n".join(lines) + "\n"


def plot(result: Result, path: Path) -> Path:
    """Bar chart of the score per method (one group per data source)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sources, methods = result.sources, result.methods
    figure, axis = plt.subplots(figsize=(1.5 + 1.6 * len(methods) * len(sources), 3.6))
    width = 0.8 / max(1, len(methods))
    for i, method in enumerate(methods):
        xs = [j + i * width for j in range(len(sources))]
        bars = axis.bar(xs, [result.score(method, s) for s in sources], width, label=method)
        axis.bar_label(bars, fmt="%.2f", fontsize=7)
    axis.set_xticks([j + width * (len(methods) - 1) / 2 for j in range(len(sources))], sources)
    axis.set_ylabel("score")
    axis.set_ylim(0, 1)
    axis.legend(fontsize=7, loc="upper right")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path
