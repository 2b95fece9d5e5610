"""Megatron-LM / Megatron-Core flags → a scenario :class:`Draft`, flag by flag.

Flag names and meanings from NVIDIA/Megatron-LM ``megatron/training/arguments.py`` and
``docs/user-guide/features/pipeline_parallel_layout.md``. Every flag lands in one of three places: a scenario
field (the comment names the flag), "not modelled" (it does not change a simulated step: learning rate, logging,
data paths), or "not expressed" (it changes the step, moesim cannot say it yet). An unknown flag is refused.
"""

from __future__ import annotations

import difflib
import math
import re
from importlib import resources

from moesim.workloads.errors import ScenarioError
from moesim.workloads.importers.draft import Draft

# int-valued flags that set one field as they are.
INT_FIELDS = {
    "--tensor-model-parallel-size": "parallelism.tp",
    "--pipeline-model-parallel-size": "parallelism.pp",
    "--expert-model-parallel-size": "parallelism.ep",
    "--context-parallel-size": "parallelism.cp",
    "--micro-batch-size": "parallelism.micro_batch_size",
    "--global-batch-size": "parallelism.global_batch",
    "--seq-length": "parallelism.seq_len",
    "--num-layers": "model.layers",
    "--hidden-size": "model.hidden",
    "--ffn-hidden-size": "model.ffn_intermediate",
    "--num-attention-heads": "model.attention.heads",
    "--num-experts": "model.moe.routed_experts",
    "--moe-router-topk": "model.moe.top_k",
    "--moe-ffn-hidden-size": "model.moe.expert_intermediate",
    "--moe-router-num-groups": "model.moe.groups",
    "--moe-router-group-topk": "model.moe.groups_per_token",
    "--q-lora-rank": "model.attention.q_lora_rank",
    "--kv-lora-rank": "model.attention.kv_lora_rank",
    "--qk-head-dim": "model.attention.qk_nope_head_dim",
    "--qk-pos-emb-head-dim": "model.attention.qk_rope_head_dim",
    "--v-head-dim": "model.attention.v_head_dim",
    "--mtp-num-layers": "model.mtp_depth",
    "--vocab-size": "model.vocab",
    "--num-virtual-stages-per-pipeline-rank": "parallelism.virtual_stages",
    "--virtual-pipeline-model-parallel-size": "parallelism.virtual_stages",
}
# Flags that do not change a simulated step's time (optimiser hyper-parameters, data, logging, checkpoints,
# numerics that keep shapes), matched by prefix.
NOT_MODELLED = (
    "--lr", "--min-lr", "--adam-", "--weight-decay", "--clip-grad", "--init-method", "--seed", "--data-",
    "--split", "--tokenizer-", "--vocab-file", "--merge-file", "--save", "--load", "--log", "--tensorboard",
    "--wandb-", "--eval-", "--exit-", "--distributed-timeout", "--num-workers", "--no-mmap-bin-files",
    "--no-create-attention-mask", "--dist-ckpt", "--ckpt-", "--auto-detect-ckpt", "--finetune", "--no-load",
    "--no-save", "--manual-gc", "--attention-dropout", "--hidden-dropout", "--norm-epsilon", "--rotary-",
    "--mscale", "--max-position-embeddings", "--position-embedding-type", "--use-mcore-models",
    "--enable-experimental", "--transformer-impl", "--moe-aux-loss-coeff", "--moe-router-load-balancing-type",
    "--moe-router-bias-update-rate", "--moe-router-enable-expert-bias", "--moe-router-topk-scaling-factor",
    "--moe-router-pre-softmax", "--mtp-loss-scaling-factor", "--no-check-for-nan", "--profile",
    "--moe-router-dtype", "--moe-router-fusion", "--cross-entropy", "--calculate-per-token-loss", "--use-distributed-optimizer",
    "--fp8-format",
    "--exp-avg-dtype", "--exp-avg-sq-dtype", "--main-grads-dtype", "--main-params-dtype",
    "--use-precision-aware-optimizer", "--no-gradient-accumulation-fusion",
)
DISPATCHERS = {"alltoall": "alltoall", "allgather": "allgather", "deepep": "deepep", "hybridep": "hybridep"}
FP8_RECIPES = ("delayed", "tensorwise", "blockwise", "mxfp8")


def known_flags() -> frozenset[str]:
    text = resources.files("moesim.workloads.importers").joinpath("megatron_flags.txt").read_text()
    return frozenset(line for line in text.splitlines() if line.startswith("--"))


def check_known(flags: list[tuple[str, list[str]]]) -> None:
    """Refuse a flag Megatron-LM does not have, naming the closest real one."""
    known = known_flags()
    for name, _ in flags:
        if name not in known:
            near = difflib.get_close_matches(name, known, n=1, cutoff=0.75)
            fix = f"did you mean {near[0]}?" if near else "remove it or check its spelling"
            raise ScenarioError(f"{name}: not a Megatron-LM flag (megatron/training/arguments.py); {fix}")


# Whole-number flags that may be 0; every other one is a size or a count of at least 1.
MAY_BE_ZERO = ("--mtp-num-layers", "--decoder-first-pipeline-num-layers", "--decoder-last-pipeline-num-layers")


def _int(name: str, values: list[str]) -> int:
    try:
        value = int(values[0])
    except (IndexError, ValueError):
        raise ScenarioError(f"{name} {' '.join(values)}: expected one whole number") from None
    least = 0 if name in MAY_BE_ZERO else 1
    if value < least:
        raise ScenarioError(f"{name} {value}: must be at least {least}")
    return value


def _flag_text(name: str, values: list[str]) -> str:
    return " ".join([name, *values])


def import_megatron(flags: list[tuple[str, list[str]]], draft: Draft, gpus: int | None, gpus_per_node: int,
                    origin_gpus: str, command_defaults: bool = True) -> Draft:
    """Fill ``draft`` from Megatron ``flags`` (in command order; a later flag wins, as argparse does).
    ``gpus``: the world size (from the launcher or --gpus), named by ``origin_gpus``. ``command_defaults``:
    apply Megatron-LM's command-line defaults where a flag is absent (not for a Megatron-Bridge config, whose
    recipe sets its own: the model's config.json fills those)."""
    check_known(flags)
    seen = {name: values for name, values in flags}
    for name, values in seen.items():
        text = _flag_text(name, values)
        if name in INT_FIELDS:
            draft.set(INT_FIELDS[name], _int(name, values), text)
        elif _special(name, values, seen, draft, text):
            pass
        elif name in ALREADY_MODELLED:
            draft.leave_out(text, f"nothing to set: moesim models {ALREADY_MODELLED[name]} already")
        elif name.startswith(NOT_MODELLED):
            draft.leave_out(text, "not modelled: no effect on a simulated step")
        else:
            draft.leave_out(text, "not expressed: moesim has no field for it")
    if command_defaults:
        _model_defaults(seen, draft)
    _layout(seen, draft)
    _layout_sizes(seen, draft, gpus, gpus_per_node, origin_gpus)
    return draft


# Flags that say what moesim assumes anyway.
ALREADY_MODELLED = {"--bf16": "BF16 weights and activations", "--swiglu": "SwiGLU FFNs",
                    "--normalization": "RMSNorm-sized norms", "--disable-bias-linear": "Linear layers without bias",
                    "--moe-grouped-gemm": "the experts of a GPU as one grouped GEMM",
                    "--use-flash-attn": "fused (flash) attention kernels",
                    "--moe-permute-fusion": "one fused permute kernel per dispatch and combine",
                    "--moe-router-force-load-balancing": "balanced routing (routing.name: balanced)",
                    "--sequence-parallel": "tensor parallelism with Megatron's sequence parallelism"}


def _special(name: str, values: list[str], seen: dict, draft: Draft, text: str) -> bool:
    """Flags that set a field by a rule of their own; True where ``name`` is one (handled or left out)."""
    if name == "--num-query-groups":
        if "--group-query-attention" in seen:
            draft.set("model.attention.kv_heads", _int(name, values), f"{text} (with --group-query-attention)")
        else:
            draft.leave_out(text, "not used: Megatron applies it only with --group-query-attention")
    elif name == "--kv-channels":
        if "--multi-latent-attention" not in seen:
            draft.set("model.attention.head_dim", _int(name, values), text)
        else:
            draft.leave_out(text, "not modelled: MLA's head sizes come from --qk-head-dim and --v-head-dim")
    elif name == "--moe-shared-expert-intermediate-size":
        draft.set("model.moe.shared_experts", 1, text)
        draft.set("model.moe.shared_intermediate", _int(name, values), text)
    elif name == "--moe-layer-freq":
        _moe_layer_freq(values, draft, text)
    elif name == "--moe-router-score-function":
        draft.set("model.moe.gating", values[0] if values else "softmax", text)
    elif name == "--fp8-recipe":
        draft.set("training.fp8_recipe", values[0] if values else "", text)
    elif name in ("--recompute-granularity", "--recompute-modules", "--recompute-method", "--recompute-num-layers"):
        granularity = (seen.get("--recompute-granularity") or [""])[0]
        if name == "--recompute-granularity":
            _recompute(granularity, seen, draft, text)
        elif not granularity or (granularity == "selective" and name != "--recompute-modules") or \
                (granularity == "full" and name == "--recompute-modules"):
            draft.leave_out(text, f"not used: Megatron ignores it with --recompute-granularity {granularity or 'unset'}")
    elif name in ("--moe-flex-dispatcher-num-sms", "--moe-deepep-num-sms", "--moe-hybridep-num-sms"):
        if "--moe-token-dispatcher-type" not in seen:
            draft.leave_out(text, "not used without --moe-token-dispatcher-type flex")
    elif name in ("--moe-token-dispatcher-type", "--moe-flex-dispatcher-backend", "--moe-enable-deepep"):
        if name == "--moe-token-dispatcher-type":
            _dispatcher(values[0] if values else "", seen, draft)
        elif "--moe-token-dispatcher-type" not in seen:
            draft.leave_out(text, "not used without --moe-token-dispatcher-type (Megatron's default: allgather)")
    elif name == "--moe-expert-capacity-factor":
        draft.set("training.capacity_factor", float(values[0]), text)
    elif name == "--overlap-moe-expert-parallel-comm":
        draft.set("training.ep_overlap", True, text)
    elif name == "--expert-tensor-parallel-size":
        # Megatron's expert TP; the expert-data-parallel size follows from it (parallel folding).
        draft.set("parallelism.expert_tp", _int(name, values), text)
    elif name == "--tp-comm-overlap":
        draft.set("training.tp_comm_overlap", True, text)
    elif name in ("--use-megatron-fsdp", "--data-parallel-sharding-strategy"):
        if name == "--use-megatron-fsdp":
            strategy = (seen.get("--data-parallel-sharding-strategy") or ["optim_grads_params"])[0]
            stage = {"no_shard": 0, "optim": 1, "optim_grads": 2, "optim_grads_params": 3}.get(strategy, 3)
            draft.set("parallelism.zero_stage", stage,
                      f"--use-megatron-fsdp --data-parallel-sharding-strategy {strategy}")
        elif "--use-megatron-fsdp" not in seen:
            draft.leave_out(text, "not used without --use-megatron-fsdp")
    elif name in ("--train-samples", "--train-iters", "--make-vocab-size-divisible-by", "--group-query-attention",
                  "--account-for-embedding-in-pipeline-split", "--account-for-loss-in-pipeline-split"):
        pass  # _layout_sizes, pad_vocab and --num-query-groups use them
    elif name in ("--pipeline-model-parallel-layout", "--decoder-first-pipeline-num-layers",
                  "--decoder-last-pipeline-num-layers", "--num-layers-per-virtual-pipeline-stage"):
        pass  # _layout
    elif name == "--fp8-format":
        for path in ("attention_proj", "dense_mlp", "expert"):
            draft.set(f"training.precision.{path}", "fp8", f"{text} (Transformer Engine Linear layers)")
        return True  # e4m3 or hybrid: the same GEMM rates
    elif name == "--exp-avg-dtype":
        draft.set("training.optimizer_moment_dtype", _dtype(values), text)
        return True
    elif name == "--main-grads-dtype":
        draft.set("training.grad_dtype", _dtype(values), text)
        return True
    elif name == "--use-distributed-optimizer":
        if "--use-megatron-fsdp" not in seen:
            draft.set("parallelism.zero_stage", 1, text)
        return True
    elif name == "--untie-embeddings-and-output-weights":
        draft.set("model.tied_embeddings", False, text)
        return True
    elif name == "--multi-latent-attention":
        draft.set("model.attention.kind", "mla", text)
        return True
    else:
        return False
    return True


def _dtype(values: list[str]) -> str:
    return {"fp32": "fp32", "bf16": "bf16", "fp16": "bf16", "fp8": "fp8"}.get(values[0] if values else "", "fp32")


def _moe_layer_freq(values: list[str], draft: Draft, text: str) -> None:
    """``1`` (every layer MoE) or a list expression such as ``([0]*3+[1]*58)``: leading dense layers only."""
    raw = "".join(values).strip().strip("()")
    if raw == "1":
        draft.set("model.moe.first_dense_layers", 0, text)
        return
    parts = re.fullmatch(r"\[0\]\*(\d+)\+\[1\]\*(\d+)", raw.replace(" ", ""))
    if parts:
        draft.set("model.moe.first_dense_layers", int(parts.group(1)), text)
    else:
        draft.leave_out(text, "not expressed: moesim's MoE layers follow a run of first_dense_layers dense ones")


def _recompute(granularity: str, seen: dict, draft: Draft, text: str) -> None:
    if granularity == "full":
        method = (seen.get("--recompute-method") or ["uniform"])[0]
        count = (seen.get("--recompute-num-layers") or ["1"])[0]
        draft.set("training.recompute.full", True, " ".join(
            [text] + [_flag_text(n, seen[n]) for n in ("--recompute-method", "--recompute-num-layers") if n in seen]))
        if method == "block":  # the first N layers of each stage recompute, the others keep their activations
            draft.set("training.recompute.layers", int(count), f"--recompute-method block --recompute-num-layers "
                                                               f"{count}")
        elif count != "1":
            draft.leave_out(f"--recompute-method uniform --recompute-num-layers {count}",
                            f"not expressed: moesim checkpoints each layer's input, not one per {count} layers "
                            "(every layer recomputes either way)")
        return
    modules = seen.get("--recompute-modules") or ["core_attn"]  # Megatron's default selective module
    joined = " ".join(modules)
    if granularity != "selective":
        draft.leave_out(text, "not expressed: recompute granularity must be full or selective")
    else:
        draft.set("training.recompute.modules", list(modules), f"{text} --recompute-modules {joined}")


def _dispatcher(kind: str, seen: dict, draft: Draft) -> None:
    text = f"--moe-token-dispatcher-type {kind}"
    if kind == "flex":
        backend = (seen.get("--moe-flex-dispatcher-backend") or ["deepep"])[0]
        text += f" --moe-flex-dispatcher-backend {backend}"
        kind = backend
    elif "--moe-enable-deepep" in seen:
        kind, text = "deepep", text + " --moe-enable-deepep"
    if kind not in DISPATCHERS:
        draft.leave_out(text, f"not expressed: dispatcher {kind!r} is none of {', '.join(DISPATCHERS)}")
        return
    draft.set("training.dispatcher", DISPATCHERS[kind], text)
    if kind in ("deepep", "hybridep"):  # its kernels hold SMs while they run
        for flag in ("--moe-flex-dispatcher-num-sms", f"--moe-{kind}-num-sms"):
            if flag in seen:
                draft.set("training.comm_sms", int(seen[flag][0]), _flag_text(flag, seen[flag]))
                return
        if kind == "deepep":
            draft.set("training.comm_sms", 20, "Megatron's DeepEP default of 20 SMs (moe_deepep_num_sms)")


def _model_defaults(seen: dict, draft: Draft) -> None:
    """Megatron's defaults where a flag was not given: attention kind, tied embeddings, the padded vocabulary."""
    if "model.attention.kind" not in draft.values and "--num-attention-heads" in seen:
        gqa = "--group-query-attention" in seen
        draft.set("model.attention.kind", "gqa" if gqa else "mha",
                  "--group-query-attention" if gqa else "Megatron default: no --group-query-attention, "
                                                        "no --multi-latent-attention")
    if "--untie-embeddings-and-output-weights" not in seen:
        draft.set("model.tied_embeddings", True, "Megatron default: without --untie-embeddings-and-output-weights")
    kind = draft.get("model.attention.kind")
    if kind in ("gqa", "mha") and "model.attention.head_dim" not in draft.values and \
            draft.get("model.hidden") and draft.get("model.attention.heads"):
        draft.set("model.attention.head_dim", draft.get("model.hidden") // draft.get("model.attention.heads"),
                  "Megatron default --kv-channels: hidden-size / num-attention-heads")


def pad_vocab(draft: Draft, seen: dict) -> None:
    """Megatron pads the vocabulary to a multiple of --make-vocab-size-divisible-by (default 128) × TP
    (megatron/training/tokenizer: _vocab_size_with_padding)."""
    vocab = draft.get("model.vocab")
    if vocab is None:
        return
    divisible = int((seen.get("--make-vocab-size-divisible-by") or ["128"])[0])
    multiple = divisible * (draft.get("parallelism.tp") or 1)
    padded = math.ceil(vocab / multiple) * multiple
    origin = draft.values["model.vocab"][1]
    rule = f"a multiple of --make-vocab-size-divisible-by {divisible} × TP {draft.get('parallelism.tp') or 1}"
    draft.set("model.vocab", padded, f"{origin}, padded to {rule}" if padded != vocab else f"{origin} ({rule})")


def _layout(seen: dict, draft: Draft) -> None:
    """Pipeline split: the layout string as is, or first/last stage layer counts, or layers per virtual stage."""
    layout = seen.get("--pipeline-model-parallel-layout")
    if layout:
        text = " ".join(layout)
        draft.set("parallelism.pipeline_layout", text, f"--pipeline-model-parallel-layout {text}")
        return
    per_virtual = seen.get("--num-layers-per-virtual-pipeline-stage")
    layers, pp = draft.get("model.layers"), draft.get("parallelism.pp", 1)
    counted = ("--account-for-embedding-in-pipeline-split" in seen) + ("--account-for-loss-in-pipeline-split" in seen)
    if per_virtual and layers:
        draft.set("parallelism.virtual_stages", (layers + counted) // pp //
                  _int("--num-layers-per-virtual-pipeline-stage", per_virtual),
                  f"--num-layers-per-virtual-pipeline-stage {per_virtual[0]}: num-layers"
                  f"{' (+ embedding and loss counted)' if counted else ''} / pp / it")
    first, last = seen.get("--decoder-first-pipeline-num-layers"), seen.get("--decoder-last-pipeline-num-layers")
    embedding = "--account-for-embedding-in-pipeline-split" in seen
    loss = "--account-for-loss-in-pipeline-split" in seen
    if (embedding or loss) and layers and not (first or last):
        # The embedding and/or the loss count as one layer each in an even split (Megatron's
        # account_for_embedding/loss_in_pipeline_split): the first/last stage holds one decoder layer fewer.
        stages = pp * draft.get("parallelism.virtual_stages", 1)
        total = layers + embedding + loss
        text = " ".join(f for f, on in (("--account-for-embedding-in-pipeline-split", embedding),
                                        ("--account-for-loss-in-pipeline-split", loss)) if on)
        if total % stages:
            raise ScenarioError(f"{text}: --num-layers {layers} plus {embedding + loss} does not split evenly over "
                                f"{stages} pipeline stages; Megatron requires it to")
        split = [total // stages] * stages
        split[0] -= embedding
        split[-1] -= loss
        draft.set("parallelism.stage_layers", split, text)
        return
    if not (first or last) or not layers:
        return
    stages = pp * draft.get("parallelism.virtual_stages", 1)
    a = _int("--decoder-first-pipeline-num-layers", first) if first else None
    b = _int("--decoder-last-pipeline-num-layers", last) if last else None
    middle = stages - (a is not None) - (b is not None)
    rest = layers - (a or 0) - (b or 0)
    text = " ".join(f"{n} {v[0]}" for n, v in (("--decoder-first-pipeline-num-layers", first),
                                                ("--decoder-last-pipeline-num-layers", last)) if v)
    if middle <= 0 or rest < 0 or rest % middle:
        raise ScenarioError(f"{text}: the other {rest} layers do not split evenly over the {middle} other "
                            f"stages; change them so num-layers minus them divides by the stage count")
    split = [rest // middle] * middle
    draft.set("parallelism.stage_layers", ([a] if a is not None else []) + split + ([b] if b is not None else []),
              text)


def _layout_sizes(seen: dict, draft: Draft, gpus: int | None, gpus_per_node: int, origin_gpus: str) -> None:
    """The world size and what follows from it: data parallelism, the schedule, the padded vocabulary."""
    if gpus is None:
        raise ScenarioError("the world size is not in the flags; paste the torchrun line (--nnodes, "
                            "--nproc-per-node) or pass --gpus N")
    draft.set("cluster.gpus", gpus, origin_gpus)
    draft.set("cluster.node.gpus_per_node", gpus_per_node, origin_gpus.split(" × ")[-1])
    draft.set("cluster.node.nics_per_node", gpus_per_node, "one NIC per GPU (not in the command)")
    tp, pp, cp = (draft.get(f"parallelism.{k}", 1) for k in ("tp", "pp", "cp"))
    if gpus % (tp * pp * cp):
        raise ScenarioError(f"--tensor-model-parallel-size {tp} × --pipeline-model-parallel-size {pp} × "
                            f"--context-parallel-size {cp} does not divide the world size {gpus}; fix one of them")
    draft.set("parallelism.dp", gpus // (tp * pp * cp), "world size / (TP × PP × CP), as Megatron derives it")
    virtual = draft.get("parallelism.virtual_stages", 1)
    layout = draft.get("parallelism.pipeline_layout")
    if layout is not None:
        from moesim.workloads.pipeline_layout import FIELD, check_layout, parse_layout

        stages = len(parse_layout(layout))
        if stages % pp:
            raise ScenarioError(f"--pipeline-model-parallel-layout has {stages} stages, not a multiple of "
                                f"--pipeline-model-parallel-size {pp}; give pp × virtual stages of them")
        virtual = stages // pp
        try:
            check_layout(layout, stages, draft.get("model.layers", 0), draft.get("model.mtp_depth", 0))
        except ScenarioError as err:  # name the flag the user wrote, not the field
            raise ScenarioError(str(err).replace(FIELD, "--pipeline-model-parallel-layout")
                                .replace("model.layers", "--num-layers").replace("model.mtp_depth",
                                                                                 "--mtp-num-layers")) from None
        if virtual > 1:
            draft.set("parallelism.virtual_stages", virtual,
                      f"--pipeline-model-parallel-layout: {stages} stages / PP {pp}")
    layers = draft.get("model.layers")
    if layout is None and "parallelism.stage_layers" not in draft.values and layers and layers % (pp * virtual):
        raise ScenarioError(f"--num-layers {layers} does not split evenly over {pp * virtual} pipeline stages; add "
                            "--decoder-first-pipeline-num-layers / --decoder-last-pipeline-num-layers or "
                            "--pipeline-model-parallel-layout, as Megatron requires")
    draft.set("schedule", "interleaved" if virtual > 1 else "1f1b",
              "Megatron's interleaved 1F1B (virtual stages)" if virtual > 1 else "Megatron's 1F1B")
    pad_vocab(draft, seen)
    if "training.tokens" not in draft.values:
        samples = seen.get("--train-samples")
        iters = seen.get("--train-iters")
        seq = draft.get("parallelism.seq_len")
        if samples and seq:
            draft.set("training.tokens", float(_int("--train-samples", samples) * seq),
                      f"--train-samples {samples[0]} × --seq-length {seq}")
        elif iters and seq and draft.get("parallelism.global_batch"):
            draft.set("training.tokens", float(_int("--train-iters", iters) * seq * draft.get("parallelism.global_batch")),
                      f"--train-iters {iters[0]} × --global-batch-size × --seq-length")


# Megatron-Bridge ConfigContainer fields whose Megatron-LM flag is spelled differently.
BRIDGE_RENAMES = {"num_moe_experts": "--num-experts", "virtual_pipeline_model_parallel_size":
                  "--num-virtual-stages-per-pipeline-rank", "train_iters": "--train-iters",
                  "seq_length": "--seq-length"}


def flags_from_config(data: dict) -> tuple[list[tuple[str, list[str]]], list[str], dict[str, str]]:
    """Flags from a YAML configuration: Megatron-MoE-ModelZoo's ``MODEL_ARGS: {--flag: value}`` or a Megatron-Bridge
    ConfigContainer (sections ``model``, ``train``, … of field names). Returns (flags, Bridge keys that are no
    Megatron-LM flag, and for a Bridge config each flag's text → its key as written, for the comments; empty for
    MODEL_ARGS)."""
    flags: list[tuple[str, list[str]]] = []
    unknown: list[str] = []
    names: dict[str, str] = {}  # a Bridge key's flag text → the key as the config writes it
    known = known_flags()

    def add(name: str, value, key: str = "") -> None:
        if value is None or value is False:
            return
        values = [] if value is True else [str(v) for v in value] if isinstance(value, list) else [str(value)]
        if any("${" in v for v in values):
            raise ScenarioError(f"{name} {' '.join(values)}: an unexpanded shell variable; substitute its value "
                                "(the launch script's envsubst does)")
        flags.append((name, values))
        if key:
            names[_flag_text(name, values)] = f"{key}: {value}"

    if isinstance(data.get("MODEL_ARGS"), dict):
        for key, value in data["MODEL_ARGS"].items():
            add(str(key), value)
        return flags, unknown, {}
    for section, fields in data.items():
        if not isinstance(fields, dict):
            continue
        for key, value in fields.items():
            name = BRIDGE_RENAMES.get(key, "--" + str(key).replace("_", "-"))
            if name in known:
                add(name, value, f"{section}.{key}")
            elif value not in (None, False, [], {}):
                unknown.append(f"{section}.{key}: {value!r}")
    given = {name for name, _ in flags}
    if "--num-query-groups" in given and "--group-query-attention" not in given:
        flags.append(("--group-query-attention", []))  # a Bridge config's num_query_groups is GQA by itself
        names["--group-query-attention"] = "model.num_query_groups (GQA)"
    return flags, unknown, names


def name_config_keys(draft: Draft, keys: dict[str, str]) -> None:
    """Comments of a Bridge config's import name its keys (``train.global_batch_size: 8``), not the flags they
    stand for."""
    def rename(text: str) -> str:
        for flag_text in sorted(keys, key=len, reverse=True):
            if flag_text in text:
                text = text.replace(flag_text, keys[flag_text])
        return text

    draft.values = {path: (value, rename(origin)) for path, (value, origin) in draft.values.items()}
    draft.left_out = [(rename(flag), why) for flag, why in draft.left_out]
