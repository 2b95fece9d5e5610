"""``moesim import megatron|torchtitan``: real configurations in (examples/import, sources in its README), a
scenario out whose every value names its flag and which lists every flag it could not express; pipeline layouts
in Megatron's notation, priced through the op IR; bad input in one line."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import yaml

from hypothesis import given
from hypothesis import strategies as st

from tests.test_fuzz_cli import FUZZ, check, run_cli
from tests.test_robustness import refused
from moesim.workloads.importers.launch import parse_launch, split_words
from moesim.workloads.loader import load_scenario
from moesim.workloads.model import build_stages
from moesim.workloads.pipeline_layout import expand, parse_layout

DATA = Path(__file__).parents[1] / "examples" / "import"
DSV3 = DATA / "megatron-deepseek-v3-h100.sh"
DSV3_HF = DATA / "hf" / "DeepSeek-V3" / "config.json"
LLAMA8_TOML = DATA / "torchtitan-llama3_8b.toml"
LLAMA70_TOML = DATA / "torchtitan-llama3_70b.toml"


def imported(args: list[str]) -> tuple[dict, str]:
    code, out, err = run_cli(["import", *args])
    assert code == 0, err
    return yaml.safe_load(out), out


def test_the_deepseek_v3_h100_launch_becomes_its_scenario():
    data, text = imported(["megatron", str(DSV3), "--hf-config", str(DSV3_HF)])
    par, model = data["parallelism"], data["model"]
    # torchrun --nnodes 128 --nproc-per-node 8; TP2 PP8 CP1 leaves DP = 1024 / 16 = 64.
    assert data["cluster"]["gpus"] == 1024 and data["cluster"]["node"]["gpus_per_node"] == 8
    assert (par["tp"], par["pp"], par["ep"], par["cp"], par["dp"]) == (2, 8, 64, 1, 64)
    # "Et|(tt|)*30mL": 32 stages over PP8, so 4 virtual stages; interleaved 1F1B.
    assert par["pipeline_layout"] == "Et|(tt|)*30mL" and par["virtual_stages"] == 4
    assert data["schedule"] == "interleaved"
    assert (par["micro_batch_size"], par["global_batch"], par["seq_len"]) == (1, 8192, 4096)
    assert (model["layers"], model["hidden"], model["mtp_depth"]) == (61, 7168, 1)
    assert model["moe"] == {"routed_experts": 256, "first_dense_layers": 3, "expert_intermediate": 2048,
                            "shared_experts": 1, "shared_intermediate": 2048, "top_k": 8, "groups_per_token": 4,
                            "groups": 8, "gating": "sigmoid"}
    assert model["attention"]["kind"] == "mla" and model["attention"]["q_lora_rank"] == 1536
    # 129280 from config.json is already a multiple of 3232 × TP 2 = 6464 (Megatron's padding).
    assert model["vocab"] == 129280 and model["tied_embeddings"] is False
    assert data["training"]["tokens"] == 585937500 * 4096
    assert "# --tensor-model-parallel-size 2" in text and "# --pipeline-model-parallel-layout Et|(tt|)*30mL" in text


def test_no_flag_of_the_launch_is_dropped():
    """Every flag of the command is named in the scenario: on the line it set, or in the list left out."""
    _, text = imported(["megatron", str(DSV3), "--hf-config", str(DSV3_HF)])
    flags = [name for name, _ in parse_launch(DSV3.read_text()).flags]
    assert len(flags) == 121  # grep -o -- " --[a-z]" after pretrain_gpt.py
    comments = [line.split("#", 1)[1] for line in text.splitlines() if "#" in line]
    missing = [flag for flag in flags if not any(re.search(f"{flag}[ :]|{flag}$", c) for c in comments)]
    assert missing == []
    left_out = [line for line in text.splitlines() if line.startswith("#   --")]
    assert any(line.startswith("#   --delay-wgrad-compute:") for line in left_out)
    assert "ep_overlap: true  # --overlap-moe-expert-parallel-comm" in text
    assert any(line.startswith("#   --lr 3.9e-6: not modelled") for line in left_out)


def test_a_pasted_command_line_imports_as_its_file_does(tmp_path):
    """The words of the script given after --, as a shell passes them (continuations and quotes resolved)."""
    from_file, _ = imported(["megatron", str(DSV3), "--hf-config", str(DSV3_HF)])
    words = split_words(DSV3.read_text())
    pasted, _ = imported(["megatron", "--hf-config", str(DSV3_HF), "--", *words])
    for section in ("cluster", "model", "parallelism", "training", "schedule"):
        expected = from_file[section]
        if section == "model":
            expected = {**expected, "name": "DeepSeek-V3"}
        assert pasted[section] == expected


def test_the_imported_scenario_simulates_with_units_where_the_layout_puts_them(tmp_path):
    out = tmp_path / "dsv3.yaml"
    code, _, err = run_cli(["import", "megatron", str(DSV3), "--hf-config", str(DSV3_HF), "-o", str(out)])
    assert code == 0, err
    scenario = load_scenario(out)
    stages = build_stages(scenario)
    names = [{op.name for c in s.forward.components for op in c.ops} for s in stages]
    # Stage 0 holds E and one decoder layer; stage 31 (PP rank 7, virtual stage 3) holds m and L.
    assert "embed.F" in names[0] and all("embed.F" not in n for n in names[1:])
    assert [s.layers for s in stages][:2] == [[0], [1, 2]] and stages[31].layers == []
    assert "mtp_proj" in " ".join(names[31]) and sum("mtp_proj" in " ".join(n) for n in names) == 1
    heads = [i for i, n in enumerate(names) if any(name.startswith("head") for name in n)]
    assert heads == [31] and sorted(names[31]).count("head.F") == 1  # a set: the MTP head and the main head
    assert [op.name for c in stages[31].forward.components for op in c.ops].count("head.F") == 2
    refused(["import", "megatron", str(DSV3), "--hf-config", str(DSV3_HF), "-o", str(out)],
            "--output", "exists", "--force")


def test_torchtitan_llama3_8b_job_takes_shapes_from_its_hf_config():
    data, text = imported(["torchtitan", str(LLAMA8_TOML), "--hf-config",
                           str(DATA / "hf" / "Llama-3.1-8B" / "config.json"), "--gpus", "8"])
    par, model = data["parallelism"], data["model"]
    # data_parallel_shard_degree = -1 over 8 GPUs: FSDP over all 8; local batch 1 → global 8.
    assert (par["dp"], par["fsdp"], par["micro_batch_size"], par["global_batch"], par["seq_len"]) == \
        (8, {"shard": 8, "replicate": 1}, 1, 8, 8192)
    assert (model["layers"], model["hidden"], model["ffn_intermediate"], model["vocab"]) == (32, 4096, 14336, 128256)
    assert model["attention"] == {"heads": 32, "kind": "gqa", "kv_heads": 8, "head_dim": 128}
    assert data["training"]["recompute"] == {"modules": ["selective"]}  # TorchTitan's per-op policy
    assert "# [activation_checkpoint] mode = 'selective', selective_ac_option = 'op'" in text
    assert "#   [optimizer] lr = 0.0003: not modelled" in text


def test_torchtitan_llama3_70b_job_with_tp_and_full_recompute():
    data, _ = imported(["torchtitan", str(LLAMA70_TOML), "--hf-config",
                        str(DATA / "hf" / "Llama-3.1-70B" / "config.json"), "--gpus", "256"])
    par = data["parallelism"]
    assert (par["dp"], par["tp"], par["global_batch"], par["fsdp"]) == (32, 8, 8 * 32, {"shard": 32, "replicate": 1})
    assert data["training"]["recompute"] == {"full": True}
    assert data["model"]["layers"] == 80


# --- pipeline layouts -------------------------------------------------------------------------------------
def test_layout_notation_unrolls_as_megatron_documents_it():
    # docs/user-guide/features/pipeline_parallel_layout.md: DeepSeek-V3 on PP16 × VPP2.
    stages = parse_layout("Et*3|(tt|)*29,m|L")
    assert len(stages) == 32 and sum(s.layers for s in stages) == 61
    assert stages[0].embedding and stages[0].layers == 3 and stages[30].mtp == 1 and stages[31].loss
    assert expand("(ab|)*2,cd".replace("a", "t").replace("b", "t").replace("c", "m").replace("d", "L")) == \
        "tt|tt|mL"
    assert [s.layers for s in parse_layout("E||t|L")] == [0, 0, 1, 0]


def test_a_layout_equal_to_the_hand_split_gives_the_same_step():
    from moesim.simulator.simulate import simulate

    hand = load_scenario(preset="deepseek-v2-lite-h800")
    split = hand.layers_per_stage()
    text = "|".join(("E" if i == 0 else "") + "t" * n + ("L" if i == len(split) - 1 else "")
                    for i, n in enumerate(split))
    layout = load_scenario(preset="deepseek-v2-lite-h800",
                           overrides=["parallelism.stage_layers=null", f"parallelism.pipeline_layout={text}"])
    assert simulate(layout).step_time_s == pytest.approx(simulate(hand).step_time_s, rel=1e-12)


def test_the_mtp_layer_takes_its_ops_and_parameters_to_the_stage_that_holds_it():
    """DeepSeek-V3's hand split as a layout, then the MTP layer moved from the last stage to the one before."""
    def stages(layout):
        return build_stages(load_scenario(overrides=["parallelism.stage_layers=null",
                                                     f"parallelism.pipeline_layout={layout}"]))

    last = stages("Et*3|(tttt|)*13tttt|ttmL")
    moved = stages("Et*3|(tttt|)*13ttttm|ttL")
    names = [[op.name for c in s.forward.components for op in c.ops] for s in moved]
    assert "mtp_proj.F" in names[14] and "mtp_proj.F" not in names[15]
    assert names[14].count("head.F") == 1 and names[15].count("head.F") == 1  # the MTP head moves; the main head stays
    gained = moved[14].dense_params - last[14].dense_params
    assert gained > 0 and last[15].dense_params - moved[15].dense_params == pytest.approx(gained, rel=1e-12)
    assert moved[14].expert_params - last[14].expert_params == \
        pytest.approx(last[15].expert_params - moved[15].expert_params, rel=1e-12)


# --- bad input --------------------------------------------------------------------------------------------
def test_an_unknown_megatron_flag_is_named_with_the_nearest_real_one():
    refused(["import", "megatron", "--gpus", "8", "--", "--tensor-model-paralel-size", "2"],
            "--tensor-model-paralel-size", "not a Megatron-LM flag", "did you mean --tensor-model-parallel-size")


@pytest.mark.parametrize("layout, words", [
    ("Et*3|(tttt|*14|ttmL", ("parallelism.pipeline_layout", "cannot read", "E (embedding)")),
    ("Et*3|(tttt|)*14ttL", ("holds 0 MTP layers", "model.mtp_depth = 1")),
    ("Et*3|(tttt|)*14tmL", ("holds 60 decoder layers", "model.layers = 61")),
    ("Et*3|(tttt|)*14|ttmL", ("has 17 stages", "pp × virtual_stages = 16")),
    ("t*3|(tttt|)*14Ettm L", ("embedding (E) must be on the first stage",)),
])
def test_a_layout_that_does_not_parse_or_fit_the_model_is_refused(layout, words):
    refused(["simulate", "--set", "parallelism.stage_layers=null", "--set", f"parallelism.pipeline_layout={layout}"],
            *words)


def test_import_bad_input_is_one_line(tmp_path):
    refused(["import", "megatron", "--", "--num-layers", "4"], "world size", "--gpus N")
    refused(["import", "megatron", "--gpus", "8", "--", "--num-layers", "${LAYERS}"], "--num-layers ${LAYERS}",
            "unexpanded shell variable")
    refused(["import", "megatron", "--gpus", "8", "--", "--num-layers", "4", "--hidden-size", "64",
             "--num-attention-heads", "4", "--ffn-hidden-size", "128", "--seq-length", "128",
             "--global-batch-size", "8"], "model.vocab", "--hf-config")
    refused(["import", "megatron", "--gpus", "8", "--", "--pipeline-model-parallel-size", "3"],
            "does not divide the world size 8")
    refused(["import", "torchtitan", str(LLAMA8_TOML), "--hf-config",
             str(DATA / "hf" / "Llama-3.1-8B" / "config.json")], "--gpus N")
    refused(["import", "torchtitan", str(LLAMA8_TOML), "--gpus", "8"], "--hf-config")
    typo = tmp_path / "typo.toml"
    typo.write_text(LLAMA70_TOML.read_text().replace("tensor_parallel_degree = 8", "tensor_paralel_degree = 8"))
    refused(["import", "torchtitan", str(typo), "--gpus", "256", "--hf-config",
             str(DATA / "hf" / "Llama-3.1-70B" / "config.json")], "[parallelism] tensor_paralel_degree",
            "not a TorchTitan job config key", "did you mean [parallelism] tensor_parallel_degree?")
    command = shlex.join(["torchrun", "--nnodes", "1", "--nproc-per-node", "8", "pretrain_gpt.py",
                          "--pipeline-model-parallel-size", "2", "--num-layers", "4",
                          "--pipeline-model-parallel-layout", "Et|tt|L"])
    script = tmp_path / "run.sh"
    script.write_text(command + "\n")
    refused(["import", "megatron", str(script), "--hf-config", str(DSV3_HF)], "--pipeline-model-parallel-layout",
            "has 3 stages", "--pipeline-model-parallel-size 2")
    script.write_text(command.replace("Et|tt|L", "Et|tL") + "\n")
    refused(["import", "megatron", str(script), "--hf-config", str(DSV3_HF)], "--pipeline-model-parallel-layout",
            "holds 2 decoder layers", "--num-layers = 4")



def test_imported_files_go_through_moesims_one_reader(tmp_path):
    """Config files read by the importers get the checks every file moesim reads gets (issue 25)."""
    twice = tmp_path / "config.json"
    twice.write_text('{"hidden_size": 4096, "hidden_size": 8192}')
    refused(["import", "torchtitan", str(LLAMA8_TOML), "--gpus", "8", "--hf-config", str(twice)],
            "duplicate key 'hidden_size'")
    nan = tmp_path / "job.toml"
    nan.write_text(LLAMA8_TOML.read_text().replace("lr = 3e-4", "lr = nan"))
    refused(["import", "torchtitan", str(nan), "--gpus", "8", "--hf-config",
             str(DATA / "hf" / "Llama-3.1-8B" / "config.json")], "optimizer.lr is nan, not a finite number")
    yaml_twice = tmp_path / "model.yaml"
    yaml_twice.write_text("MODEL_ARGS:\n  --num-layers: 4\n  --num-layers: 8\n")
    refused(["import", "megatron", str(yaml_twice), "--gpus", "8"], "duplicate key '--num-layers' at line 3")
    latin1 = tmp_path / "run.sh"
    latin1.write_bytes(b"torchrun pretrain_gpt.py --num-layers 4 # caf\xe9\n")
    refused(["import", "megatron", str(latin1)], "not UTF-8 text: byte 0xe9 at offset 45")


# --- stage_layers: auto -----------------------------------------------------------------------------------
def test_best_split_is_the_brute_force_minimum_of_the_largest_stage():
    from itertools import product

    from moesim.simulator.auto_split import best_split

    layers = [1.0, 1.0, 1.0, 3.0, 3.0, 3.0, 3.0]  # three dense layers, then four MoE layers
    first, last, stages = 2.0, 4.0, 3
    split = best_split(layers, first, last, stages)

    def largest(counts):
        out, start = [], 0
        for i, n in enumerate(counts):
            out.append(sum(layers[start:start + n]) + (first if i == 0 else 0) + (last if i == stages - 1 else 0))
            start += n
        return max(out)

    brute = min(largest(c) for c in product(range(len(layers) + 1), repeat=stages) if sum(c) == len(layers))
    assert sum(split) == len(layers) and largest(split) == brute == 8.0


def test_dualpipe_runs_each_stage_on_two_ranks_half_the_time():
    from moesim.simulator.auto_split import stage_shares
    from moesim.simulator.schedules import scenario_schedule

    scenario = load_scenario()  # DualPipe, PP16
    shares = stage_shares(scenario_schedule(scenario), 16, scenario.micro_batches)
    assert shares[0] == {0: 0.5, 15: 0.5} and shares[6] == {6: 0.5, 9: 0.5}


def test_auto_split_of_the_default_preset_is_no_slower_than_the_hand_split():
    from moesim.simulator.simulate import simulate

    hand = simulate(load_scenario())
    auto = simulate(load_scenario(overrides=["parallelism.stage_layers=auto"]))
    note = next(n for n in auto.cost_model_notes if n.startswith("parallelism.stage_layers: auto chose"))
    assert auto.step_time_s <= hand.step_time_s * (1 + 1e-12), note
    layout = parse_layout(note.split("pipeline_layout ", 1)[1].split(" (")[0])
    assert len(layout) == 16 and sum(u.layers for u in layout) == 61 and sum(u.mtp for u in layout) == 1


def test_auto_finds_megatrons_documented_deepseek_v3_layout_on_pp16_vpp2():
    """Megatron-LM's docs/user-guide/features/pipeline_parallel_layout.md gives Et*3|(tt|)*29,m|L for DeepSeek-V3
    on PP16 × VPP2; nothing of it is an input to the search."""
    from moesim.simulator.simulate import simulate

    sets = ["schedule=interleaved", "parallelism.virtual_stages=2", "parallelism.global_batch=16384"]
    auto = simulate(load_scenario(overrides=sets + ["parallelism.stage_layers=auto"]))
    note = next(n for n in auto.cost_model_notes if n.startswith("parallelism.stage_layers: auto chose"))
    chosen = note.split("pipeline_layout ", 1)[1].split(" (")[0]
    assert expand(chosen) == expand("Et*3|(tt|)*29,m|L")


def test_a_megatron_bridge_config_takes_the_model_from_its_hf_config():
    data, text = imported(["megatron", str(DATA / "bridge-llama32_1b_pretrain.yaml"), "--gpus", "8",
                           "--hf-config", str(DATA / "hf" / "Llama-3.2-1B" / "config.json")])
    par, model = data["parallelism"], data["model"]
    assert (par["dp"], par["tp"], par["pp"], par["global_batch"], par["micro_batch_size"], par["seq_len"]) == \
        (8, 1, 1, 8, 1, 4096)
    assert (model["layers"], model["hidden"], model["tied_embeddings"]) == (16, 2048, True)
    assert model["attention"] == {"heads": 32, "kind": "gqa", "kv_heads": 8, "head_dim": 64}
    assert data["training"]["tokens"] == 100 * 8 * 4096  # train_iters × global_batch_size × seq_length
    assert "#   rng.seed: 1234: not modelled" in text and "# train.global_batch_size: 8" in text


def test_a_modelzoo_yaml_with_its_shell_variables_left_in_is_refused_by_flag(tmp_path):
    """Megatron-MoE-ModelZoo's model_configs/benchmarking/DeepSeek-V3.yaml as published: its launch script
    substitutes ${TP} and the rest before the flags reach Megatron."""
    refused(["import", "megatron", str(DATA / "modelzoo-DeepSeek-V3.yaml"), "--gpus", "1024"],
            "--tensor-model-parallel-size ${TP}", "unexpanded shell variable")
    text = (DATA / "modelzoo-DeepSeek-V3.yaml").read_text()
    # runtime.conf's DeepSeek-V3 row: TP1 PP16 EP64 CP1 VPP1 MBS1 GBS8192, 4096 tokens, PP_FIRST 4 PP_LAST 1.
    for name, value in {"TP": 1, "PP": 16, "EP": 64, "CP": 1, "VPP": 1, "MBS": 1, "GBS": 8192,
                        "SEQ_LEN": 4096}.items():
        text = text.replace("${" + name + "}", str(value))
    text = re.sub(r"\$\{[A-Z_]+\}", "x", text)  # paths and names
    expanded = tmp_path / "dsv3.yaml"
    expanded.write_text(text)
    refused(["import", "megatron", str(expanded), "--gpus", "1024", "--hf-config", str(DSV3_HF)],
            "--num-layers 61", "16 pipeline stages", "--decoder-first-pipeline-num-layers")
    # 61 % 16 ≠ 0, so sbatch_benchmarking.sh appends the first and last stages' layer counts.
    expanded.write_text(text + "  --decoder-first-pipeline-num-layers: 4\n  --decoder-last-pipeline-num-layers: 1\n")
    data, _ = imported(["megatron", str(expanded), "--gpus", "1024", "--hf-config", str(DSV3_HF)])
    par = data["parallelism"]
    assert (par["tp"], par["pp"], par["dp"], par["ep"]) == (1, 16, 64, 64)
    assert par["stage_layers"] == [4] + [4] * 14 + [1]  # (61 - 4 - 1) / 14 = 4 on each middle stage
    assert data["model"]["moe"]["first_dense_layers"] == 3 and data["model"]["attention"]["kind"] == "mla"


# --- fuzzed: whatever is pasted, one error line or a valid scenario -----------------------------------------
_WORDS = ["--num-layers", "--hidden-size", "--num-attention-heads", "--seq-length", "--global-batch-size",
          "--pipeline-model-parallel-size", "--pipeline-model-parallel-layout", "--tensor-model-parallel-size",
          "--moe-layer-freq", "--num-experts", "--moe-router-topk", "--vocab-size", "--recompute-granularity",
          "--decoder-first-pipeline-num-layers", "--bogus-flag", "4", "0", "-1", "8", "Et|tt|L", "(t|)*3", "full",
          "'", "\\", "$X", "[0]*1+[1]*3", "1e9", "x"]


@FUZZ
@given(words=st.lists(st.sampled_from(_WORDS), max_size=12))
def test_any_pasted_megatron_flags_give_a_scenario_or_one_error_line(words):
    check(["import", "megatron", "--gpus", "8", "--hf-config", str(DSV3_HF), "--", *words])


@FUZZ
@given(layout=st.text(alphabet="EtmL|()*,0123 ", max_size=24))
def test_any_layout_string_is_simulated_or_refused_in_one_line(layout):
    check(["simulate", "-p", "deepseek-v2-lite-h800", "--set", "parallelism.stage_layers=null",
           "--set", f"parallelism.pipeline_layout={layout}", "--json"])


def test_a_layout_that_would_expand_without_bound_is_refused_before_it_does():
    refused(["simulate", "--set", "parallelism.stage_layers=null",
             "--set", "parallelism.pipeline_layout=((t*99999999)*99999999)*99999999"],
            "parallelism.pipeline_layout", "over 100,000", "repeat counts", within_s=5)


def test_embedding_and_loss_counted_in_the_split_give_the_bridge_405b_presets_stages():
    """Megatron-Bridge's Llama 3.1 405B H100 recipe (the llama3.1-405b-h100-fp8 preset, written by hand from it)
    as flags: 126 layers + embedding + loss = 128 = 64 stages of 2."""
    data, _ = imported(["megatron", "--gpus", "1024", "--", "--num-layers", "126", "--hidden-size", "16384",
                        "--num-attention-heads", "128", "--group-query-attention", "--num-query-groups", "8",
                        "--ffn-hidden-size", "53248", "--vocab-size", "128256", "--seq-length", "8192",
                        "--global-batch-size", "1536", "--micro-batch-size", "1", "--tensor-model-parallel-size", "8",
                        "--pipeline-model-parallel-size", "8", "--context-parallel-size", "2",
                        "--num-layers-per-virtual-pipeline-stage", "2", "--account-for-embedding-in-pipeline-split",
                        "--account-for-loss-in-pipeline-split"])
    preset = load_scenario(preset="llama3.1-405b-h100-fp8").parallelism
    par = data["parallelism"]
    assert (par["dp"], par["tp"], par["pp"], par["cp"], par["virtual_stages"]) == \
        (preset.dp, preset.tp, preset.pp, preset.cp, preset.virtual_stages)
    assert par["stage_layers"] == preset.stage_layers and data["schedule"] == "interleaved"
