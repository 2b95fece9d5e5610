"""A TorchTitan job config (TOML) → a scenario :class:`Draft`, key by key.

Keys and meanings from pytorch/torchtitan ``torchtitan/config/job_config.py`` (JobConfig: [model], [training],
[parallelism], [activation_checkpoint], [compile], [quantize]/[float8]). The model's shapes are not in the TOML
(``[model] flavor`` names an entry of TorchTitan's model registry): they come from the model's Hugging Face
config.json (``--hf-config``, else ``hf_assets_path``/config.json beside the job). The world size is not in it
either (``data_parallel_shard_degree = -1`` fills what is left): it comes from ``--gpus`` (``NGPU`` of
run_train.sh). Every key lands in a field, "not modelled" or "not expressed"; none is dropped.
"""

from __future__ import annotations

import difflib
import tomllib
from importlib import resources
from pathlib import Path

from moesim.workloads.documents import check_values, decode
from moesim.workloads.errors import ScenarioError
from moesim.workloads.files import check_input
from moesim.workloads.importers.draft import Draft

MAX_TOML_BYTES = 1_000_000
# Sections that do not change a simulated step (logging, checkpoints, data, optimiser hyper-parameters).
NOT_MODELLED_SECTIONS = ("job", "profiling", "metrics", "optimizer", "lr_scheduler", "checkpoint", "validation",
                         "comm", "debug", "fault_tolerance", "memory_estimation", "experimental", "dataloader")
# TorchTitan's pipeline_parallel_schedule → moesim's schedule.
SCHEDULES = {"1F1B": "1f1b", "GPipe": "gpipe", "Interleaved1F1B": "interleaved", "DualPipeV": "dualpipev",
             "ZBVZeroBubble": "dualpipev"}


def read_job(path: str | Path) -> dict:
    """The job's TOML as a dict; one line (file, and where) for bad bytes, bad TOML, non-finite numbers or
    nesting no job needs (the checks of :mod:`moesim.workloads.documents`)."""
    path = check_input(path, MAX_TOML_BYTES, "TorchTitan job config")
    text = decode(path.read_bytes(), str(path))
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ScenarioError(f"{path}: malformed TOML: {err}") from None
    except RecursionError:
        raise ScenarioError(f"{path}: nested too deeply; no TorchTitan job needs that") from None
    check_values(data, str(path))
    return data


def flat(job: dict, prefix: str = "") -> dict[str, object]:
    """``{"a": {"b": 1}}`` → ``{"a.b": 1}``."""
    out: dict[str, object] = {}
    for key, value in job.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flat(value, f"{name}."))
        else:
            out[name] = value
    return out


def known_keys() -> frozenset[str]:
    text = resources.files("moesim.workloads.importers").joinpath("torchtitan_keys.txt").read_text()
    return frozenset(line for line in text.splitlines() if line and not line.startswith("#"))


def check_known(keys: dict[str, object]) -> None:
    """Refuse a key TorchTitan's job config does not have, naming the closest real one."""
    known = known_keys()
    for key in keys:
        if key not in known:
            near = difflib.get_close_matches(key, known, n=1, cutoff=0.75)
            section, _, name = key.rpartition(".")
            fix = f"did you mean [{near[0].rpartition('.')[0]}] {near[0].rpartition('.')[2]}?" if near \
                else "remove it or check its spelling"
            raise ScenarioError(f"[{section}] {name}: not a TorchTitan job config key "
                                f"(torchtitan/config/job_config.py); {fix}")


def import_torchtitan(job: dict, draft: Draft, gpus: int | None, gpus_per_node: int) -> Draft:
    """Fill ``draft`` from a parsed job config; ``gpus``: the world size (--gpus)."""
    keys = flat(job)
    check_known(keys)
    used: set[str] = set()

    def take(key: str, default=None):
        used.add(key)
        return keys.get(key, default)

    def origin(key: str) -> str:
        return f"[{key.rpartition('.')[0]}] {key.rpartition('.')[2]} = {keys[key]!r}" if key in keys \
            else f"TorchTitan default {key.rpartition('.')[2]}"

    if take("model.name") is not None:
        draft.set("name", f"{keys['model.name']}-{take('model.flavor', 'debugmodel')}", origin("model.flavor"))
    _parallelism(draft, take, origin, gpus, gpus_per_node)
    _training(draft, take, origin)
    _recompute(draft, take, origin)
    _precision(draft, take, origin, keys)
    float8 = "float8" in (keys.get("model.converters") or []) or keys.get("float8.enable_float8_linear")
    for key, value in keys.items():
        if key in used:
            continue
        section = key.split(".")[0]
        text = f"[{key.rpartition('.')[0]}] {key.rpartition('.')[2]} = {value!r}"
        if section in NOT_MODELLED_SECTIONS or key in ("model.hf_assets_path", "training.dataset",
                                                         "training.dataset_path", "training.max_norm"):
            draft.leave_out(text, "not modelled: no effect on a simulated step")
        elif section == "compile" and not keys.get("compile.enable"):
            draft.leave_out(text, "not modelled: [compile] enable is false")
        elif section in ("quantize", "float8") and not float8:
            draft.leave_out(text, "not modelled: float8 is off (no 'float8' in [model] converters)")
        else:
            draft.leave_out(text, "not expressed: moesim has no field for it")
    return draft


def _parallelism(draft: Draft, take, origin, gpus: int | None, gpus_per_node: int) -> None:
    replicate = take("parallelism.data_parallel_replicate_degree", 1)
    shard = take("parallelism.data_parallel_shard_degree", -1)
    tp = take("parallelism.tensor_parallel_degree", 1)
    pp = take("parallelism.pipeline_parallel_degree", 1)
    cp = take("parallelism.context_parallel_degree", 1)
    if gpus is None:
        if shard == -1:
            raise ScenarioError("the job's world size is not in its TOML (data_parallel_shard_degree = -1 fills "
                                "it); pass --gpus N (NGPU of run_train.sh)")
        gpus = replicate * shard * tp * pp * cp
    if shard == -1:
        if gpus % (replicate * tp * pp * cp):
            raise ScenarioError(f"--gpus {gpus} is not a multiple of replicate × TP × PP × CP = "
                                f"{replicate * tp * pp * cp}; fix --gpus or the degrees")
        shard = gpus // (replicate * tp * pp * cp)
    elif replicate * shard * tp * pp * cp != gpus:
        raise ScenarioError(f"[parallelism] degrees multiply to {replicate * shard * tp * pp * cp}, not "
                            f"--gpus {gpus}; make them equal")
    draft.set("cluster.gpus", gpus, "--gpus (NGPU of run_train.sh)")
    draft.set("cluster.node.gpus_per_node", min(gpus, gpus_per_node), "--gpus-per-node")
    draft.set("cluster.node.nics_per_node", min(gpus, gpus_per_node), "one NIC per GPU (not in the job)")
    draft.set("parallelism.dp", replicate * shard,
              f"data_parallel_replicate_degree {replicate} × data_parallel_shard_degree {shard}")
    if shard > 1:  # FSDP2's fully_shard over the shard group; with replicas, HSDP
        draft.set("parallelism.fsdp.shard", shard, f"{origin('parallelism.data_parallel_shard_degree')}: FSDP2 "
                                                    "fully_shard")
        draft.set("parallelism.fsdp.replicate", replicate,
                  f"data_parallel_replicate_degree {replicate}" + (" (HSDP)" if replicate > 1 else ""))
    for key, path, value in (("tensor_parallel_degree", "tp", tp), ("pipeline_parallel_degree", "pp", pp),
                             ("context_parallel_degree", "cp", cp)):
        if value != 1:
            draft.set(f"parallelism.{path}", value, origin(f"parallelism.{key}"))
    ep = take("parallelism.expert_parallel_degree", 1)
    if ep != 1:
        draft.set("parallelism.ep", ep, origin("parallelism.expert_parallel_degree"))
    etp = take("parallelism.expert_tensor_parallel_degree", 1)
    if etp != 1 or "parallelism.expert_tensor_parallel_degree" in draft.values:
        draft.set("parallelism.expert_tp", etp, origin("parallelism.expert_tensor_parallel_degree"))
    schedule = take("parallelism.pipeline_parallel_schedule", "1F1B")
    if pp > 1:
        if schedule in SCHEDULES:
            draft.set("schedule", SCHEDULES[schedule], origin("parallelism.pipeline_parallel_schedule"))
        else:
            draft.leave_out(f"[parallelism] pipeline_parallel_schedule = {schedule!r}",
                            f"not expressed: moesim runs {', '.join(sorted(set(SCHEDULES.values())))}")
        if SCHEDULES.get(schedule) in ("interleaved", "dualpipev"):
            draft.set("parallelism.virtual_stages", 2, "TorchTitan's default of 2 stages per rank for a "
                                                       "multi-stage schedule")
    else:
        draft.set("schedule", "1f1b", "no pipeline parallelism")


def _training(draft: Draft, take, origin) -> None:
    local = take("training.local_batch_size", 8)
    seq = take("training.seq_len", 2048)
    dp = draft.get("parallelism.dp")
    micro = take("parallelism.pipeline_parallel_microbatch_size", 1) if draft.get("parallelism.pp", 1) > 1 \
        else local
    draft.set("parallelism.micro_batch_size", micro,
              origin("parallelism.pipeline_parallel_microbatch_size") if draft.get("parallelism.pp", 1) > 1
              else origin("training.local_batch_size"))
    global_batch = take("training.global_batch_size", -1)
    if global_batch == -1:
        draft.set("parallelism.global_batch", local * dp, f"{origin('training.local_batch_size')} × data "
                                                          f"parallel {dp} (global_batch_size -1)")
    else:
        draft.set("parallelism.global_batch", global_batch, origin("training.global_batch_size"))
    draft.set("parallelism.seq_len", seq, origin("training.seq_len"))
    steps = take("training.steps", 10000)
    draft.set("training.tokens", float(steps * draft.get("parallelism.global_batch") * seq),
              f"{origin('training.steps')} × global batch × seq_len")
    param = take("training.mixed_precision_param", "bfloat16")
    draft.set("training.weight_dtype", "bf16" if param == "bfloat16" else "fp32",
              origin("training.mixed_precision_param"))
    take("training.mixed_precision_reduce")
    draft.set("training.grad_dtype", "fp32", "TorchTitan's mixed_precision_reduce float32")


def _recompute(draft: Draft, take, origin) -> None:
    mode = take("activation_checkpoint.mode", "selective")
    option = take("activation_checkpoint.selective_ac_option", "2")
    if mode == "full":
        draft.set("training.recompute.full", True, origin("activation_checkpoint.mode"))
    elif mode == "selective":
        text = f"[activation_checkpoint] mode = 'selective', selective_ac_option = {option!r}"
        if option == "op":
            draft.set("training.recompute.modules", ["selective"], text)
        else:  # every N-th layer checkpointed in full
            draft.leave_out(text, "not expressed: moesim recomputes the first N layers of each stage in full "
                                  "(training.recompute.layers), not every N-th layer")
    elif mode != "none":
        draft.leave_out(f"[activation_checkpoint] mode = {mode!r}", "not expressed: moesim recomputes by "
                                                                      "module or by layer")


def _precision(draft: Draft, take, origin, keys: dict) -> None:
    converters = take("model.converters", []) or []
    float8 = "float8" in converters or take("float8.enable_float8_linear", False)
    if float8:
        for path in ("attention_proj", "dense_mlp", "expert"):
            draft.set(f"training.precision.{path}", "fp8", "[model] converters = ['float8'] (torchao Float8Linear)")
        recipe = take("quantize.linear.float8.recipe_name") or take("float8.recipe_name") or "tensorwise"
        draft.set("training.fp8_recipe", "tensorwise" if recipe == "tensorwise" else recipe,
                      f"torchao float8 recipe {recipe}")
    if "mx" in converters:
        draft.set("training.fp8_recipe", "mxfp8", "[model] converters = ['mx']")
    compiled = take("compile.enable", False)
    if compiled:
        draft.leave_out("[compile] enable = true", "not expressed: torch.compile's kernel fusion is not modelled")
