"""``moesim import megatron|torchtitan``: a framework's launch command or job config → a scenario YAML.

Each line of the scenario says which flag it came from; each flag moesim could not express is one comment line at
the end. The scenario is validated before it is written, and an existing file is kept unless ``--force``.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Optional

import typer
import yaml

from moesim.simulator.cli import INPUT_ERRORS, app, console, fail
from moesim.workloads.documents import decode, parse_document
from moesim.workloads.errors import ScenarioError
from moesim.workloads.files import check_input, check_target, write_atomic
from moesim.workloads.importers.draft import Draft
from moesim.workloads.importers.hf_config import apply_hf_config, read_hf_config

import_app = typer.Typer(no_args_is_help=True, help="Turn a Megatron-LM command line or a TorchTitan job config "
                                                    "into a scenario YAML, flag by flag.")
app.add_typer(import_app, name="import")

OUTPUT_OPT = typer.Option(None, "--output", "-o", help="Write the scenario here (default: print it).")
HF_OPT = typer.Option(None, "--hf-config", help="The model's Hugging Face config.json: shapes the flags leave out.")
GPU_OPT = typer.Option("h100", "--gpu", help="GPU of the catalogue (not in a launch command): h100, h800, …")
GPUS_OPT = typer.Option(None, "--gpus", min=1, help="World size where the input has none (no torchrun line; "
                                                    "TorchTitan's NGPU).")
PER_NODE_OPT = typer.Option(8, "--gpus-per-node", min=1, help="GPUs per node where the input has none.")
FORCE_OPT = typer.Option(False, "--force", help="Overwrite an existing --output file.")
MAX_COMMAND_BYTES = 1_000_000


@import_app.command("megatron", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def import_megatron(args: list[str] = typer.Argument(..., help="The pasted command (after --), or one file: a "
                                                               "launch script / args file, or a YAML config"),
                    output: Optional[str] = OUTPUT_OPT, hf_config: Optional[str] = HF_OPT, gpu: str = GPU_OPT,
                    gpus: Optional[int] = GPUS_OPT, gpus_per_node: int = PER_NODE_OPT,
                    force: bool = FORCE_OPT) -> None:
    """A Megatron-LM / Megatron-Core launch (torchrun … pretrain_gpt.py …), args file or Bridge/ModelZoo YAML."""
    from moesim.workloads.importers.launch import parse_launch, world_size
    from moesim.workloads.importers.megatron import flags_from_config, import_megatron as run_import, name_config_keys

    try:
        if output:
            check_target(output, force, "--output")
        source, text = _source(args)
        draft = Draft(source)
        unknown: list[str] = []
        bridge: dict[str, str] = {}
        is_bridge = False
        if source.endswith((".yaml", ".yml")):
            data = parse_document(text, source, "yaml")
            if not isinstance(data, dict):
                raise ScenarioError(f"{source}: a Megatron YAML config is a mapping (MODEL_ARGS, or model/train …)")
            flags, unknown, bridge = flags_from_config(data)
            is_bridge = "MODEL_ARGS" not in data
            launched = None
        else:
            launch = parse_launch(text)
            flags, launched = launch.flags, world_size(launch)
            for env in launch.environment:
                draft.leave_out(env, "not modelled: an environment variable")
        if launched:
            world, per_node = launched[0] * launched[1], launched[1]
            where = f"torchrun --nnodes {launched[0]} × --nproc-per-node {launched[1]}"
        elif gpus is None:
            raise ScenarioError("the world size is not in the input; paste the torchrun line (--nnodes, "
                                "--nproc-per-node) or pass --gpus N")
        else:
            world, per_node, where = gpus, min(gpus, gpus_per_node), f"--gpus {gpus} × --gpus-per-node"
        _common(draft, gpu, "megatron")
        if source != "the command line":
            draft.set("name", Path(source).stem, "the file's name")
        if hf_config:
            # The vocabulary and shapes the flags leave out; the flags themselves win (they describe the run).
            config = read_hf_config(hf_config)
            pre = Draft(source)
            apply_hf_config(pre, config, Path(hf_config).name)
            draft.values.update({k: v for k, v in pre.values.items() if k.startswith("model.vocab")})
            run_import(flags, draft, world, per_node, where, not is_bridge)
            apply_hf_config(draft, config, Path(hf_config).name)
        else:
            run_import(flags, draft, world, per_node, where, not is_bridge)
        name_config_keys(draft, bridge)
        for item in unknown:
            draft.leave_out(item, "not expressed: not a Megatron-LM flag moesim reads")
        if "model.name" not in draft.values:
            draft.set("model.name", Path(hf_config).resolve().parent.name if hf_config else draft.get("name", "model"),
                      f"the folder of {Path(hf_config).name}" if hf_config else "")
        if "training.tokens" not in draft.values:
            draft.set("training.tokens", 1e12, "not in the command (no --train-samples or --train-iters): one "
                                                "trillion, for the days and cost lines; set the run's budget")
        if "model.vocab" not in draft.values:
            raise ScenarioError("model.vocab: the flags do not give the vocabulary size (Megatron reads it from the "
                                "tokenizer); pass --hf-config CONFIG.json or add --vocab-size N")
        _finish(draft, output, force, f"moesim import megatron {_shown(args)}")
    except INPUT_ERRORS as err:
        fail(str(err))


@import_app.command("torchtitan")
def import_torchtitan(job: str = typer.Argument(..., help="The job's TOML (e.g. train_configs/llama3_8b.toml)"),
                      output: Optional[str] = OUTPUT_OPT, hf_config: Optional[str] = HF_OPT, gpu: str = GPU_OPT,
                      gpus: Optional[int] = GPUS_OPT, gpus_per_node: int = PER_NODE_OPT,
                      force: bool = FORCE_OPT) -> None:
    """A TorchTitan job config; the model's shapes from --hf-config (or hf_assets_path/config.json)."""
    from moesim.workloads.importers.torchtitan import import_torchtitan as run_import, read_job

    try:
        if output:
            check_target(output, force, "--output")
        data = read_job(job)
        draft = Draft(job)
        _common(draft, gpu, "torchtitan")
        config_path = hf_config or _assets_config(job, data)
        run_import(data, draft, gpus, gpus_per_node)
        draft.set("model.name", Path(config_path).resolve().parent.name, f"the folder of {Path(config_path).name}")
        apply_hf_config(draft, read_hf_config(config_path), Path(config_path).name)
        _finish(draft, output, force, f"moesim import torchtitan {job}")
    except INPUT_ERRORS as err:
        fail(str(err))


def _source(args: list[str]) -> tuple[str, str]:
    """(what to name as the source, the text): one existing file is read; otherwise the words are the command."""
    if len(args) == 1 and Path(args[0]).is_file():
        return args[0], decode(check_input(args[0], MAX_COMMAND_BYTES, "Megatron command file").read_bytes(), args[0])
    return "the command line", shlex.join(args)


def _shown(args: list[str]) -> str:
    text = shlex.join(args)
    return text if len(text) < 80 else text[:77] + "..."


def _assets_config(job: str, data: dict) -> str:
    assets = (data.get("model") or {}).get("hf_assets_path")
    if assets:
        candidate = Path(job).parent / assets / "config.json"
        if candidate.is_file():
            return str(candidate)
    raise ScenarioError("the model's shapes are not in a TorchTitan job; pass --hf-config CONFIG.json (the "
                        "model's Hugging Face config)")


def _common(draft: Draft, gpu: str, framework: str) -> None:
    draft.set("cluster.gpu", gpu, "--gpu (a launch command does not name its GPU)")
    draft.set("run.fidelity", "representative", "")
    draft.set("run.network", "analytic", "")


def _finish(draft: Draft, output: Optional[str], force: bool, command: str) -> None:
    """Validate the scenario, then write or print it."""
    from moesim.workloads.loader import validate

    draft.set("description", f"imported from {draft.source}", "")
    header = [f"Imported by `{command}`.",
              "Each value names the flag or key it came from; flags moesim cannot express are listed at the end.",
              "The network is moesim's default (cluster.network): a launch command does not describe it."]
    text = draft.to_yaml(header)
    try:
        validate(yaml.safe_load(text))
    except ScenarioError as err:
        raise ScenarioError(f"the imported scenario is not valid: {err}") from None
    if output is None:
        print(text, end="")
        return
    write_atomic(output, text, force, "--output")
    console.print(f"wrote {output}: {len(draft.values)} fields, {len(draft.left_out)} flags not expressed "
                  "(listed at its end)", highlight=False)
