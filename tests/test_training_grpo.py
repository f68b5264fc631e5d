"""GRPO with TRL on a tiny model built from a config (CPU smoke), and the pieces around it.

Needs the `train` extra (torch, transformers, trl), which the `test` extra installs.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from types import SimpleNamespace

import pytest
from mcp_memalpha.training.grpo import (
    TERMS,
    TrainConfig,
    make_rollout_func,
    reward_functions,
    training_instances,
    warm_start_instances,
)

from tests.conftest import shared_data_missing

LOCOMO = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "locomo" / "locomo_dev.json"
pytestmark = pytest.mark.skipif(
    shared_data_missing(LOCOMO), reason="needs the LoCoMo dev data in ../shared/data/locomo"
)
SMOKE = Path(__file__).resolve().parents[1] / "training" / "configs" / "smoke.toml"


def test_config_from_toml_flattens_sections_and_refuses_unknown_options(tmp_path: Path) -> None:
    config = TrainConfig.from_toml(SMOKE, steps=3)
    assert (config.model, config.rollouts, config.chunks_per_instance, config.steps) == ("tiny", 2, 2, 3)
    assert config.num_generations == 4  # G rollouts x T chunks: one TRL group = one instance
    # the paper's reference weights; the added terms are off unless a config weights them
    assert config.weights == {"qa": 1.0, "executed": 1.0, "compression": 0.05, "type_fit": 0.1} | {
        "filler": 0.0,
        "budget": 0.0,
        "answers": 0.0,
    }
    bad = tmp_path / "bad.toml"
    bad.write_text("[optim]\nlearnig_rate = 1e-5\n")
    with pytest.raises(ValueError, match="learnig_rate"):
        TrainConfig.from_toml(bad)
    bad.write_text("[reward]\nweights = { qa = 1.0, fillers = -1.0 }\n")
    with pytest.raises(ValueError, match="fillers"):
        TrainConfig.from_toml(bad)
    bad.write_text('[optim]\nscale_rewards = "std"\n')
    with pytest.raises(ValueError, match=r"bad.toml: scale_rewards = 'std': it is one of group, batch, none"):
        TrainConfig.from_toml(bad)


def test_scale_rewards_reaches_trl_and_the_paper_scaling_is_the_default() -> None:
    from mcp_memalpha.training.grpo import grpo_args

    assert grpo_args(TrainConfig()).scale_rewards == "group"
    unscaled = TrainConfig.from_toml(SMOKE.with_name("smollm2_cpu_lora_unscaled.toml"))
    assert unscaled.scale_rewards == "none" and grpo_args(unscaled).scale_rewards == "none"


def test_rollouts_decode_as_the_format_unless_the_config_says_otherwise(monkeypatch: pytest.MonkeyPatch) -> None:
    """A memalpha policy's rollouts get Mem-α's 2048 new tokens at temperature 1.0 (its training
    rollouts), in the generator and in TRL's max_completion_length; other formats get the curator's
    limit; a set max_new_tokens wins."""
    import mcp_memalpha.training.generation
    from mcp_memalpha.training.grpo import grpo_args

    made: list[dict[str, object]] = []

    class Recorded:
        def __init__(self, model: object, tokenizer: object, **options: object) -> None:
            made.append(options)
            raise StopIteration  # enough: the generator's options are what is checked

    monkeypatch.setattr(mcp_memalpha.training.generation, "TransformersGenerator", Recorded)
    trainer = SimpleNamespace(model=None, accelerator=SimpleNamespace(unwrap_model=lambda m: m))
    for config, tokens in (
        (TrainConfig(), 2048),
        (TrainConfig(wire_format="json"), 512),
        (TrainConfig(max_new_tokens=64), 64),
    ):
        assert config.new_tokens == tokens and grpo_args(config).max_completion_length == tokens
        with pytest.raises(StopIteration):
            make_rollout_func({}, None, config)(["x"], trainer)
        assert made.pop() == {"max_new_tokens": tokens, "temperature": 1.0}


def test_training_instances_all_have_t_chunks() -> None:
    config = TrainConfig(chunks_per_instance=2, max_questions=3)
    instances = training_instances(config)
    assert instances and all(len(i.chunks) == 2 and 1 <= len(i.questions) <= 3 for i in instances)
    few = training_instances(TrainConfig(chunks_per_instance=1, max_questions=5))
    rich = training_instances(TrainConfig(chunks_per_instance=1, max_questions=5, min_questions=4))
    assert rich and len(rich) < len(few) and all(4 <= len(i.questions) <= 5 for i in rich)


def test_rollout_func_returns_rollout_major_samples_with_their_reward_terms(tmp_path: Path) -> None:
    from mcp_memalpha.training.tiny import build_tiny_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = build_tiny_model(tmp_path / "tiny")
    model, tokenizer = AutoModelForCausalLM.from_pretrained(folder), AutoTokenizer.from_pretrained(folder)
    config = TrainConfig(chunks_per_instance=2, rollouts=2, max_new_tokens=4, max_questions=2)
    instances = training_instances(config)[:2]
    rollout = make_rollout_func({i.instance_id: i for i in instances}, tokenizer, config)
    trainer = SimpleNamespace(model=model, accelerator=SimpleNamespace(unwrap_model=lambda m: m))
    prompts = [instances[0].instance_id] * 4 + [instances[1].instance_id] * 4
    output = rollout(prompts, trainer)
    assert len(output["prompt_ids"]) == len(output["completion_ids"]) == len(output["env_mask"]) == 8
    # TRL's contract: the log-probability each token was sampled with (free sampling: all <= 0)
    assert [len(lp) for lp in output["logprobs"]] == [len(ids) for ids in output["completion_ids"]]
    assert all(v <= 0.0 for lp in output["logprobs"] for v in lp)
    assert output["importance_weights"] == [[pytest.approx(1.0)] * len(ids) for ids in output["completion_ids"]]
    assert all(1 <= len(ids) <= 4 for ids in output["completion_ids"])
    # free sampling: the model chose every token, and TRL learns from all of them
    assert output["env_mask"] == [[1] * len(ids) for ids in output["completion_ids"]]
    # the two chunks of a rollout have different prompts (chunk 2 is another session)
    assert output["prompt_ids"][0] != output["prompt_ids"][1]
    # shared terms are equal within a rollout; a silent random model scores as an idle policy
    assert output["compression"][0] == output["compression"][1] == 1.0
    assert all(e == 0.0 for e, c in zip(output["executed"], output["calls"], strict=True) if c == 0)
    columns = {name: output[name] for name in TERMS}
    for function in reward_functions():
        assert function(prompts, [""] * 8, **columns) == [float(v) for v in output[function.__name__]]
    with pytest.raises(ValueError, match="whole rollouts"):
        rollout(prompts[:3], trainer)


@pytest.mark.parametrize(
    ("wire_format", "max_new_tokens"),
    [("memalpha", 8), ("json", 48)],  # json: constrained rollouts, fed tokens masked out of the loss
)
def test_smoke_training_runs_steps_logs_rewards_and_saves_a_loadable_model(
    tmp_path: Path, wire_format: str, max_new_tokens: int
) -> None:
    from mcp_memalpha.training.generation import TransformersGenerator, read_info
    from mcp_memalpha.training.grpo import train

    config = TrainConfig.from_toml(
        SMOKE,
        output_dir=str(tmp_path / "run"),
        steps=2,
        max_new_tokens=max_new_tokens,
        chunks_per_instance=1,
        max_instances=2,
        wire_format=wire_format,
    )
    final = train(config, log=lambda line: None)
    history = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [entry["step"] for entry in history] == [1, 2]
    for entry in history:
        assert all(f"rewards/{name}/mean" in entry for name in TERMS)
        expected = sum(config.weights[name] * entry[f"rewards/{name}/mean"] for name in TERMS)
        assert entry["reward"] == pytest.approx(expected, abs=1e-4)
    assert (tmp_path / "run" / "rewards.png").stat().st_size > 1000
    assert read_info(final)["wire_format"] == wire_format
    generator = TransformersGenerator.load(final, greedy=True, max_new_tokens=4)
    assert isinstance(generator([{"role": "user", "content": "hello"}]), str)


def test_constrained_rollouts_only_copy_statements_like_the_served_grammar(tmp_path: Path) -> None:
    """A random model, constrained as the server constrains SmolLM2: every output is valid calls
    that copy statements once each, in order; fixed text is fed, and the samples differ."""
    import torch
    from mcp_memalpha.policy.prompt import statements
    from mcp_memalpha.training.environment import Episode
    from mcp_memalpha.training.generation import TransformersGenerator
    from mcp_memalpha.training.tiny import build_tiny_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = build_tiny_model(tmp_path / "tiny")
    model, tokenizer = AutoModelForCausalLM.from_pretrained(folder), AutoTokenizer.from_pretrained(folder)
    generator = TransformersGenerator(model, tokenizer, max_new_tokens=400, temperature=1.0)
    instance = training_instances(TrainConfig(chunks_per_instance=1, max_questions=2))[0]
    lines = statements(instance.chunks[0])
    outputs = set()
    shares: list[float] = []
    for seed in range(3):
        torch.manual_seed(seed)
        with Episode(instance, wire_format="json") as episode:
            completions = episode.completions()
            assert completions is not None
            sample = generator.sample(episode.prompt(), completions)
            records = episode.submit(sample.text)
        assert len(sample.completion_ids) <= 400
        # sampling log-probs: renormalized over the allowed tokens, so at least the full
        # distribution's; fed tokens had probability 1; importance weight = P_full / P_sampled <= 1
        assert sample.logprobs is not None and sample.full_logprobs is not None
        assert len(sample.logprobs) == len(sample.full_logprobs) == len(sample.completion_ids)
        for sampled, full, picked in zip(sample.logprobs, sample.full_logprobs, sample.loss_mask(), strict=True):
            if picked:
                assert full <= sampled + 1e-6 <= 1e-6
            else:
                assert sampled == full == 0.0
        assert all(0.0 < w <= 1.0 + 1e-6 for w in sample.importance_weights())
        assert any(w < 0.99 for w, m in zip(sample.importance_weights(), sample.loss_mask(), strict=True) if m)
        # the loss learns from the model's choices only, not from the text the format fed
        mask = sample.loss_mask()
        assert len(mask) == len(sample.completion_ids) and mask[0] == 1
        picked = [t for t, m in zip(sample.completion_ids, mask, strict=True) if m]
        assert picked[-1] == tokenizer.eos_token_id or len(sample.completion_ids) == 400
        shares.append(sum(mask) / len(mask))
        assert tokenizer.decode(sample.completion_ids, skip_special_tokens=True).startswith(sample.text[:20])
        copied = [r.arguments["content"] for r in records]
        assert all(r.ok and r.name == "new_memory_insert" for r in records), records
        assert copied == sorted(set(copied), key=lines.index)  # each statement at most once, in order
        outputs.add(sample.text)
    assert len(outputs) > 1  # sampled choices differ between rollouts: GRPO has something to compare
    assert min(shares) < 0.5  # where it copied, most tokens were fed, not chosen


def test_held_out_conversations_never_reach_training() -> None:
    config = TrainConfig(chunks_per_instance=1, holdout=["conv-26"])
    sources = {instance.metadata["sample_id"] for instance in training_instances(config)}
    assert sources == {"conv-30", "conv-41"}


def test_rollouts_of_one_prompt_share_its_forward_pass_without_changing_the_samples(tmp_path: Path) -> None:
    import torch
    from mcp_memalpha.training.environment import Episode
    from mcp_memalpha.training.generation import TransformersGenerator
    from mcp_memalpha.training.tiny import build_tiny_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = build_tiny_model(tmp_path / "tiny")
    model, tokenizer = AutoModelForCausalLM.from_pretrained(folder), AutoTokenizer.from_pretrained(folder)
    instance = training_instances(TrainConfig(chunks_per_instance=1, max_questions=2))[0]
    texts = {}
    for name, shared in (("shared", TransformersGenerator(model, tokenizer, max_new_tokens=60)), ("fresh", None)):
        outputs = []
        for seed in (0, 1, 0):
            generator = shared or TransformersGenerator(model, tokenizer, max_new_tokens=60)
            torch.manual_seed(seed)
            with Episode(instance, wire_format="json") as episode:
                outputs.append(generator.sample(episode.prompt(), episode.completions()).text)
        texts[name] = outputs
        if shared is not None:
            assert shared.prompt_passes == 1  # three rollouts, one pass over their common prompt
    assert texts["shared"] == texts["fresh"]  # the kept cache is copied, never extended in place
    assert texts["shared"][0] == texts["shared"][2]


def test_shorter_chunks_keep_only_the_questions_they_still_answer() -> None:
    from mcp_memalpha.training.grpo import shorten

    from mcp_memalpha.tokens import count_tokens

    full = training_instances(TrainConfig(chunks_per_instance=1, max_questions=None))[0]
    short = shorten(full, 200)
    assert short.chunks[0].splitlines()[0] == full.chunks[0].splitlines()[0]  # the dated header stays
    assert count_tokens(short.chunks[0]) <= 200 + 60 and len(short.chunks[0]) < len(full.chunks[0])
    assert set(short.questions) <= set(full.questions) and len(short.questions) < len(full.questions)


def test_the_warm_start_may_read_whole_sessions_where_grpo_reads_their_first_part() -> None:
    from mcp_memalpha.tokens import count_tokens

    config = TrainConfig(chunks_per_instance=1, max_questions=30, max_chunk_tokens=450, min_questions=3)
    cut, whole = training_instances(config), training_instances(config, max_chunk_tokens=0)
    assert all(count_tokens(i.chunks[0]) <= 450 + 60 for i in cut)
    assert max(count_tokens(i.chunks[0]) for i in whole) > 900  # sessions run past the cut
    # more sessions keep three questions whole, and each session's question list only grows
    assert len(whole) > len(cut)
    by_id = {i.instance_id: i for i in whole}
    assert all(set(i.questions) <= set(by_id[i.instance_id].questions) for i in cut)
    assert warm_start_instances(config, cut) == []  # no warm start configured
    warm = dataclasses_replace(config, warm_start_epochs=1)
    assert warm_start_instances(warm, cut) is cut
    assert warm_start_instances(dataclasses_replace(warm, warm_start_chunk_tokens=0), cut) == whole


def _learning_run(tmp_path: Path, name: str, **options: object) -> tuple[TrainConfig, list[dict[str, float]]]:
    """One real GRPO step of the tiny model (TRL's trainer, our rollouts and rewards)."""
    from mcp_memalpha.training.grpo import train

    values = {
        "output_dir": str(tmp_path / name),
        "steps": 1,
        "chunks_per_instance": 1,
        "rollouts": 4,
        "max_instances": 1,
        "beta": 0.0,
        "learning_rate": 1e-2,
    } | options
    config = TrainConfig.from_toml(SMOKE, **values)
    train(config, log=lambda line: None)
    history = [json.loads(line) for line in (Path(config.output_dir) / "log.jsonl").read_text().splitlines()]
    return config, history


def _weights(folder: Path) -> dict[str, object]:
    from safetensors.torch import load_file

    return load_file(str(next(folder.glob("*.safetensors"))))


def test_a_step_with_group_spread_changes_the_weights_logs_a_grad_norm_and_resumes(tmp_path: Path) -> None:
    """Constrained json rollouts of a random model differ in what they keep, so the group's
    rewards differ: the step must move the weights. Then the run resumes from its checkpoint."""
    import torch
    from mcp_memalpha.training.grpo import train

    config, history = _learning_run(
        tmp_path,
        "spread",
        wire_format="json",
        max_new_tokens=200,
        save_steps=1,
        weights={"answers": 0.5, "budget": 0.2},
    )
    assert history[0]["reward_std"] > 0 and history[0]["grad_norm"] > 0
    assert 0 < history[0]["sampling/importance_weight/mean"] <= 1.0
    start, final = _weights(tmp_path / "spread" / "tiny-start"), _weights(tmp_path / "spread" / "final")
    changed = [key for key in start if not torch.equal(start[key], final[key])]  # type: ignore[arg-type]
    assert len(changed) > len(start) // 2, changed

    resumed = dataclasses_replace(config, steps=2)
    train(resumed, resume=True, log=lambda line: None)
    log = [json.loads(line) for line in (tmp_path / "spread" / "log.jsonl").read_text().splitlines()]
    assert [entry["step"] for entry in log] == [1, 2]  # step 1 from the checkpoint, step 2 run now
    assert (tmp_path / "spread" / "checkpoint-2").is_dir()
    assert json.loads((tmp_path / "spread" / "checkpoint-1" / "memalpha_training.json").read_text())["trained_on"]


def test_a_step_with_zero_group_spread_leaves_the_weights_alone(tmp_path: Path) -> None:
    """A random model in the memalpha format writes no call in 4 tokens: every rollout earns the
    same reward, every advantage is 0, so (beta 0) the gradient is 0 and no weight moves."""
    import torch

    _, history = _learning_run(tmp_path, "flat", wire_format="memalpha", max_new_tokens=4)
    assert history[0]["reward_std"] == 0 and history[0]["grad_norm"] == 0
    start, final = _weights(tmp_path / "flat" / "tiny-start"), _weights(tmp_path / "flat" / "final")
    assert all(torch.equal(start[key], final[key]) for key in start)  # type: ignore[arg-type]


def test_lora_trains_adapters_only_and_final_is_a_merged_checkpoint(tmp_path: Path) -> None:
    import torch
    from mcp_memalpha.training.generation import TransformersGenerator

    _, history = _learning_run(
        tmp_path, "lora", wire_format="json", max_new_tokens=200, lora_r=4, weights={"answers": 0.5, "budget": 0.2}
    )
    assert history[0]["reward_std"] > 0 and history[0]["grad_norm"] > 0
    adapter = _weights(tmp_path / "lora" / "final-adapter")
    lora_b = [value for key, value in adapter.items() if "lora_B" in key]
    assert lora_b and any(float(b.abs().sum()) > 0 for b in lora_b)  # type: ignore[attr-defined]  # B starts at 0
    start, final = _weights(tmp_path / "lora" / "tiny-start"), _weights(tmp_path / "lora" / "final")
    assert set(final) == set(start)  # final/ is a plain checkpoint: adapters merged in
    assert not all(torch.equal(start[key], final[key]) for key in start)  # type: ignore[arg-type]
    generator = TransformersGenerator.load(tmp_path / "lora" / "final", greedy=True, max_new_tokens=4)
    assert isinstance(generator([{"role": "user", "content": "hello"}]), str)
    _adapter_round_trip(tmp_path / "lora")


def _adapter_round_trip(run: Path) -> None:
    """train -> `export-gguf --adapter` -> llama.cpp (start GGUF + adapter) gives what transformers
    gives with the merged `final/`: the same greedy tokens, and the same change of the logits that
    the training made (start vs trained), which a wrong export would not reproduce."""
    import numpy as np
    import torch
    from llama_cpp import Llama
    from mcp_memalpha.training.evaluate import policy_trained_on, trained_conversations
    from mcp_memalpha.training.export import export_adapter, load_checkpoint, write_and_quantize

    start, tokenizer = load_checkpoint(run / "tiny-start")
    final, _ = load_checkpoint(run / "final")
    write_and_quantize(start, tokenizer, run / "start.gguf", quant="f32")
    export_adapter(run / "final-adapter", run / "adapter.gguf", wire_format="json")
    assert policy_trained_on(str(run / "adapter.gguf")) == trained_conversations(run) != set()
    ids = tokenizer("Caroline: I moved to Zurich on 12 May 2023. Melanie likes painting.")["input_ids"]

    def llama_logits(adapter: Path | None) -> tuple[np.ndarray, list[int]]:
        llm = Llama(
            str(run / "start.gguf"), n_ctx=256, logits_all=True, lora_path=adapter and str(adapter), verbose=False
        )
        llm.eval(ids)
        logits = np.array(llm.scores[: len(ids)])
        llm.reset()
        tokens = [t for t, _ in zip(llm.generate(ids, temp=0.0, top_k=1), range(8), strict=False)]
        llm.close()
        return logits, tokens

    with torch.no_grad():
        expected = final(torch.tensor([ids])).logits[0].numpy()
        before = start(torch.tensor([ids])).logits[0].numpy()
        greedy = final.generate(torch.tensor([ids]), max_new_tokens=8, do_sample=False)[0, len(ids) :].tolist()
    trained, tokens = llama_logits(run / "adapter.gguf")
    untrained, _ = llama_logits(None)
    assert np.abs(expected - before).max() > 1e-3  # the step moved the logits
    assert np.corrcoef((trained - untrained).ravel(), (expected - before).ravel())[0, 1] > 0.95
    assert tokens == greedy


def test_resume_without_a_checkpoint_is_refused(tmp_path: Path) -> None:
    from mcp_memalpha.training.grpo import train

    with pytest.raises(ValueError, match="no checkpoint"):
        train(TrainConfig(output_dir=str(tmp_path / "empty")), resume=True, log=lambda line: None)


def dataclasses_replace(config: TrainConfig, **changes: object) -> TrainConfig:
    return dataclasses.replace(config, **changes)  # type: ignore[arg-type]


@pytest.mark.parametrize("path", sorted(SMOKE.parent.glob("*.toml")), ids=lambda path: path.name)
def test_every_training_config_reads_with_known_options_only(path: Path) -> None:
    config = TrainConfig.from_toml(path)
    assert config.steps >= 1 and config.rollouts >= 2 and config.output_dir.startswith("runs/")
