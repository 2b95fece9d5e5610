"""The Scenario: cluster + model + parallelism + schedule + training + run options.

A scenario is plain, validated data (pydantic v2, strict, no unknown fields). Units are in the field names:
``_gb`` gigabytes (1e9 bytes), ``_gbytes_per_s`` gigabytes (not gigabits) per second, ``_tbps`` terabytes per
second, ``_tflops`` 1e12 FLOP/s, ``_us`` microseconds. Numbers are checked by the shared rules of
:mod:`moesim.workloads.quantities` (finite, in range; bandwidths and latencies also as strings with units, e.g.
``nic_gbytes_per_s: 400Gb/s``). Layout rules that need several sections at once (divisibility, EP against
the expert count, GPU totals) are checked in :func:`Scenario._check_layout`, so every error names one field.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveInt, field_validator, model_validator

from moesim.topologies.gpus import gpu_spec
from moesim.workloads import quantities as q

Dtype = Literal["fp8", "bf16", "fp32"]
# What a step captures in CUDA graphs, as Megatron-LM names it: per-layer modules (--cuda-graph-modules attn, mlp,
# moe, moe_router, moe_preprocess) or the whole forward-backward (--cuda-graph-impl full_iteration);
# docs.nvidia.com/megatron/user-guide/features/cuda-graph.
CudaGraphScope = Literal["attn", "mlp", "moe", "moe_router", "moe_preprocess", "full_iteration"]
Fraction = q.FRACTION.field()
# Fields renamed so that their unit cannot be misread; the old name gets this hint instead of "unknown field".
RENAMED = {
    "nic_gbps": "renamed nic_gbytes_per_s (gigaBYTES per second per NIC per direction); a 400 Gb/s NIC is "
                "nic_gbytes_per_s: 50 or nic_gbytes_per_s: 400Gb/s",
    "storage_gbps_per_node": "renamed storage_gbytes_per_s_per_node (gigaBYTES per second); a 400 Gb/s NIC is "
                             "50 or 400Gb/s",
}


class _Strict(BaseModel):
    # allow_inf_nan=False: inf and nan are refused by every float field, whatever its other bounds.
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True, allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _renamed(cls, data):
        if isinstance(data, dict):
            for old in data:
                if old in RENAMED and old not in cls.model_fields:
                    raise ValueError(f"{old} was {RENAMED[old]}")
        return data


class GpuSpec(_Strict):
    """One GPU: dense tensor peaks, HBM and NVLink (per direction); the catalogue (topologies/data/gpus.yaml) cites
    each number."""

    name: str = Field(description="The GPU's name, as reports print it (text), e.g. H800-SXM5.")
    sms: PositiveInt = Field(description="Streaming multiprocessors on the GPU (count), e.g. 132 on an H800.")
    bf16_tflops: q.TFLOPS.field() = Field(description=(
        "Dense BF16 tensor-core peak (TFLOPS, 1e12 FLOP/s), e.g. 989.4 on an H800."))
    # None: no FP8 tensor cores (A100); an FP8 GEMM on such a GPU is refused (Scenario._check_layout).
    fp8_tflops: q.TFLOPS.field() | None = Field(description=(
        "Dense FP8 tensor-core peak (TFLOPS, 1e12 FLOP/s), e.g. 1979 on an H800; null where the GPU has no FP8 "
        "tensor cores (A100)."))
    hbm_gb: q.MEMORY_GB.field() = Field(description="HBM capacity (GB, 1e9 bytes), e.g. 80.")
    hbm_tbps: q.TFLOPS.field() = Field(description="HBM bandwidth (TB/s, 1e12 bytes per second), e.g. 3.35 on an H800.")
    nvlink_gbps: q.BANDWIDTH_GBYTES_PER_S.field() = Field(description=(  # GB/s per direction (the catalogue's name)
        "NVLink bandwidth per direction (GB/s, gigabytes per second), e.g. 200 on an H800."))
    l2_mb: q.MEMORY_GB.field() | None = Field(50.0, description=(
        "L2 cache size (MB, 1e6 bytes), e.g. 50; null where not published."))
    fp4_tflops: q.TFLOPS.field() | None = Field(None, description="Dense FP4 tensor peak (TFLOPS), e.g. 9000 "
                                                "for a B200; None where the GPU has no FP4 or none is published")
    tdp_w: q.TFLOPS.field() | None = Field(None, description="Maximum board power (W), the GPU's power under load "
                                           "for energy where nothing better is published, e.g. 1000 for a B200")


class NodeSpec(_Strict):
    gpus_per_node: PositiveInt = Field(8, description="GPUs in one node, joined by NVLink (count), e.g. 8.")
    nics_per_node: PositiveInt = Field(8, description=(
        "Scale-out NICs in one node, one per GPU on DeepSeek's nodes (count), e.g. 8."))


class NetworkSpec(_Strict):
    """The scale-out network and the achievable fraction of each link's nominal bandwidth."""

    topology: Literal["mpft", "mrft", "ft2", "ft3", "rail", "dragonfly", "slimfly"] = Field(
        "mpft", description=(
        "Scale-out network shape (name): mpft, mrft, ft2, ft3, rail, dragonfly or slimfly, e.g. mpft."))
    planes: PositiveInt = Field(8, description="Independent network planes of a multi-plane fat-tree (count), e.g. 8.")
    switch_radix: PositiveInt = Field(64, description="Ports per switch (count), e.g. 64.")
    # per NIC per direction: 400 Gb/s CX-7 (hardware.md)
    nic_gbytes_per_s: q.BANDWIDTH_GBYTES_PER_S.field() = Field(50.0, description=(
        "NIC bandwidth per direction (GB/s, gigabytes not gigabits; also '400Gb/s'), e.g. 50."))
    # "Insights into DeepSeek-V3" §4.3: ~40 GB/s effective of 50 GB/s nominal IB per GPU.
    nic_efficiency: Fraction = Field(0.8, description=(
        "Achievable fraction of a NIC's nominal bandwidth (0–1), e.g. 0.8."))
    # DeepSeek-V3 TR §3.2.2 / DeepEP README: ~160 GB/s achievable of 200 GB/s NVLink per direction on H800.
    nvlink_efficiency: Fraction = Field(0.8, description=(
        "Achievable fraction of NVLink's nominal bandwidth (0–1), e.g. 0.8."))
    # What DeepEP's dispatch/combine kernels reach per GPU in training (EP traffic moves at the lower of this
    # and the link's usable rate). NIC: its kernels in DeepSeek's profiler trace, beside compute, 30.7 of
    # 50 GB/s; NVLink: DeepEP's intranode benchmark (DeepEP docs/legacy.md), 136.6 of 200 GB/s. Derived by
    # `moesim calibrate deepep` (calibration/deepep.py); a test checks these against the derivation.
    ep_nic_efficiency: Fraction = Field(0.613, description=(
        "Fraction of NIC bandwidth that expert-parallel dispatch/combine kernels reach (0–1), e.g. 0.613."))
    ep_nvlink_efficiency: Fraction = Field(0.683, description=(
        "Fraction of NVLink bandwidth that expert-parallel dispatch/combine kernels reach (0–1), e.g. 0.683."))
    # "Insights" Table 5, 64-byte message end to end: IB 2.8 µs same leaf, 3.7 µs across leaves; NVLink 3.33 µs.
    nic_latency_us: q.LATENCY_US.field() = Field(3.7, description=(
        "End-to-end latency of a small message over the NIC (µs; also '3.7us'), e.g. 3.7."))
    nvlink_latency_us: q.LATENCY_US.field() = Field(3.33, description=(
        "End-to-end latency of a small message over NVLink (µs; also '3.33us'), e.g. 3.33."))
    oversubscription: q.OVERSUBSCRIPTION.field() = Field(1.0, description=(
        "Downlink to uplink bandwidth ratio of a leaf switch (ratio, 1 = non-blocking), e.g. 2.0."))


class Cluster(_Strict):
    gpus: q.GPU_COUNT.field() = Field(description="GPUs in the cluster; must equal dp·tp·pp·cp (count), e.g. 2048.")
    gpu: GpuSpec = Field(description="The GPU: a catalogue name (topologies/data/gpus.yaml) or a full spec, e.g. h800.")
    node: NodeSpec = Field(NodeSpec(), description="What one node holds: GPUs and NICs.")
    network: NetworkSpec = Field(NetworkSpec(), description=(
        "The scale-out network and its achievable bandwidths and latencies."))

    @field_validator("gpu", mode="before")
    @classmethod
    def _gpu_by_name(cls, value):
        """Accept a catalogue key (``h800``) in place of a full spec."""
        if isinstance(value, (list, tuple)) or (isinstance(value, str) and "," in value):
            kinds = [str(k).strip() for k in (value.split(",") if isinstance(value, str) else value)]
            kinds = [k for k in kinds if k]
            if len(set(kinds)) > 1:
                raise ValueError(f"one job runs on one GPU kind, got {', '.join(kinds)}: every pipeline "
                                 "stage and data-parallel replica waits for its slowest member, and the simulator "
                                 "prices every rank with one spec; simulate each kind as its own scenario and "
                                 "`moesim compare` them, or `moesim plan --gpu` several kinds")
            value = kinds[0] if kinds else value
        if isinstance(value, str):
            try:
                return gpu_spec(value.lower())
            except KeyError as err:
                raise ValueError(err.args[0]) from None
        return value


class Attention(_Strict):
    """MLA (DeepSeek) or GQA/MHA attention. For MHA, ``kv_heads`` equals ``heads``."""

    kind: Literal["mla", "gqa", "mha"] = Field(description=(
        "Attention kind (name): mla (DeepSeek), gqa or mha, e.g. mla."))
    heads: PositiveInt = Field(description="Query heads (count), e.g. 128.")
    kv_heads: PositiveInt | None = Field(None, description=(
        "Key/value heads, for gqa; equals heads for mha (count), e.g. 8."))
    head_dim: PositiveInt | None = Field(None, description="Width of one head, for gqa and mha (elements), e.g. 128.")
    q_lora_rank: PositiveInt | None = Field(None, description=(
        "MLA: rank of the low-rank query projection; empty for none (elements), e.g. 1536."))
    kv_lora_rank: PositiveInt | None = Field(None, description=(
        "MLA: rank of the compressed key/value latent (elements), e.g. 512."))
    qk_nope_head_dim: PositiveInt | None = Field(None, description=(
        "MLA: per-head query/key width without rotary embedding (elements), e.g. 128."))
    qk_rope_head_dim: PositiveInt | None = Field(None, description=(
        "MLA: per-head query/key width with rotary embedding (elements), e.g. 64."))
    v_head_dim: PositiveInt | None = Field(None, description="MLA: per-head value width (elements), e.g. 128.")
    # Attention variants (workloads/attention.py prices them).
    sliding_window: PositiveInt | None = Field(None, description=(
        "Keys a query attends to in a sliding-window layer, itself included (tokens); e.g. 128 (GPT-OSS), 4096 "
        "(Mistral 7B v0.1). None: every layer attends to the whole causal prefix"))
    sliding_window_pattern: PositiveInt | list[Literal["sliding", "full"]] | None = Field(None, description=(
        "Which layers use the window: an integer N makes every N-th layer full and the others sliding (Gemma 3's "
        "sliding_window_pattern: layer i slides unless (i+1) % N == 0; 2 is GPT-OSS's alternation, sliding first), "
        "or one entry per layer, 'sliding' or 'full' (Hugging Face layer_types); e.g. 2. None: every layer slides"))
    sinks: bool = Field(False, description=(
        "Attention sinks: one learned logit per head added to each softmax's denominator (GPT-OSS); e.g. true"))
    qk_norm: bool = Field(False, description=(
        "RMSNorm over head_dim on every query and key head before RoPE (Qwen3's q_norm and k_norm); e.g. true"))

    @model_validator(mode="after")
    def _fields_for_kind(self):
        need = {
            "mla": ("kv_lora_rank", "qk_nope_head_dim", "qk_rope_head_dim", "v_head_dim"),
            "gqa": ("kv_heads", "head_dim"),
            "mha": ("head_dim",),
        }[self.kind]
        for name in need:
            if getattr(self, name) is None:
                raise ValueError(f"{name} is required for {self.kind} attention")
        if self.kind == "gqa" and self.heads % self.kv_heads:
            raise ValueError(f"heads={self.heads} must be a multiple of kv_heads={self.kv_heads}")
        if self.qk_norm and self.kind == "mla":
            raise ValueError("qk_norm is for gqa/mha attention (MLA normalises its latents already); remove it")
        if self.sliding_window_pattern is not None and self.sliding_window is None:
            raise ValueError("sliding_window_pattern needs sliding_window (tokens); set it or remove the pattern")
        return self

    def slides(self, layer: int, layers: int) -> bool:
        """Whether transformer layer ``layer`` of ``layers`` attends within :attr:`sliding_window` (MTP layers,
        index ≥ layers, attend fully)."""
        pattern = self.sliding_window_pattern
        if self.sliding_window is None or layer >= layers:
            return False
        if pattern is None:
            return True
        if isinstance(pattern, int):
            return (layer + 1) % pattern != 0
        return pattern[layer] == "sliding"


class MoE(_Strict):
    """Routed + shared experts; ``groups``/``groups_per_token`` give group-limited (node-limited) routing."""

    routed_experts: q.WIDTH.field() = Field(description="Routed experts per MoE layer (count), e.g. 256.")
    shared_experts: Annotated[int, Field(ge=0, le=10_000)] = Field(0, description=(
        "Shared experts every token passes through (count), e.g. 1."))
    top_k: q.WIDTH.field() = Field(description="Routed experts each token picks (count), e.g. 8.")
    expert_intermediate: q.WIDTH.field() = Field(description=(
        "Intermediate width of one routed expert's SwiGLU FFN (elements), e.g. 2048."))
    shared_intermediate: PositiveInt | None = Field(None, description=(
        "Intermediate width of the shared experts; empty: expert_intermediate × shared_experts (elements), e.g. "
        "2048."))
    first_dense_layers: Annotated[int, Field(ge=0)] = Field(0, description=(
        "Leading layers with a dense FFN instead of experts (count), e.g. 3."))
    groups: PositiveInt = Field(1, description=(
        "Expert groups for group-limited routing, e.g. one per node (count), e.g. 8."))
    groups_per_token: PositiveInt = Field(1, description="Groups a token's experts may come from (count), e.g. 4.")
    gating: Literal["softmax", "sigmoid"] = Field("softmax", description=(
        "Gate function over the expert scores (name): softmax or sigmoid, e.g. sigmoid."))

    @model_validator(mode="after")
    def _routing(self):
        if self.top_k > self.routed_experts:
            raise ValueError(f"top_k={self.top_k} exceeds routed_experts={self.routed_experts}")
        if self.routed_experts % self.groups:
            raise ValueError(f"routed_experts={self.routed_experts} must divide into groups={self.groups}")
        if self.groups_per_token > self.groups:
            raise ValueError(f"groups_per_token={self.groups_per_token} exceeds groups={self.groups}")
        if self.top_k > self.groups_per_token * (self.routed_experts // self.groups):
            raise ValueError("top_k exceeds the experts in groups_per_token groups")
        return self


class Model(_Strict):
    name: str = Field(description="The model's name, as reports print it (text), e.g. DeepSeek-V3.")
    layers: q.LAYERS.field() = Field(description="Transformer layers (count), e.g. 61.")
    hidden: q.WIDTH.field() = Field(description="Hidden size (elements), e.g. 7168.")
    vocab: q.WIDTH.field() = Field(description="Vocabulary size (tokens), e.g. 129280.")
    ffn_intermediate: q.WIDTH.field() = Field(description=(  # dense FFN (SwiGLU); in an MoE model, of its dense layers
        "Intermediate width of a dense SwiGLU FFN; in an MoE model, of its dense layers (elements), e.g. 18432."))
    attention: Attention = Field(description="The attention block: kind and head shapes.")
    moe: MoE | None = Field(None, description="The mixture-of-experts block; empty for a dense model.")
    mtp_depth: Annotated[int, Field(ge=0, le=100)] = Field(0, description=(
        "Multi-token-prediction modules after the last layer (count), e.g. 1."))
    tied_embeddings: bool = Field(False, description=(
        "Whether the output head shares the input embedding's weights (true/false), e.g. false."))

    @model_validator(mode="after")
    def _dense_layers(self):
        if self.moe and self.moe.first_dense_layers > self.layers:
            raise ValueError(f"moe.first_dense_layers={self.moe.first_dense_layers} exceeds layers={self.layers}")
        pattern = self.attention.sliding_window_pattern
        if isinstance(pattern, list) and len(pattern) != self.layers:
            raise ValueError(f"attention.sliding_window_pattern has {len(pattern)} entries; layers = {self.layers} "
                             "(one 'sliding' or 'full' per layer, or an integer N: every N-th layer full)")
        return self


class Fsdp(_Strict):
    """FSDP2 / HSDP as TorchTitan composes it with TP and PP (``--parallelism.data_parallel_shard_degree`` and
    ``data_parallel_replicate_degree``): the data-parallel group is ``shard`` × ``replicate`` GPUs. Without
    pipeline parallelism each layer is gathered and reduced per micro-batch (:mod:`moesim.workloads.fsdp`); with it,
    once per step (PyTorch's pipelining keeps the gathered parameters across micro-batches and syncs gradients
    after the last backward)."""

    shard: PositiveInt = Field(description="GPUs a parameter is sharded over (FSDP group size, GPUs), all-gathered "
                                           "per layer in forward and backward, e.g. 8")
    replicate: PositiveInt = Field(1, description="Replicas of each shard (HSDP; GPUs), whose gradients are "
                                                  "all-reduced per layer; 1 = plain FSDP, e.g. 2")


class Parallelism(_Strict):
    """The parallel layout. Rank order, fastest first: tp, cp, dp, pp; EP groups are carved from dp×cp×tp."""

    dp: PositiveInt = Field(1, description="Data-parallel degree (count), e.g. 128.")
    tp: PositiveInt = Field(1, description="Tensor-parallel degree, within a node (count), e.g. 1.")
    pp: PositiveInt = Field(1, description="Pipeline-parallel degree: pipeline ranks (count), e.g. 16.")
    ep: PositiveInt = Field(1, description=(
        "Expert-parallel degree: GPUs an MoE layer's experts are spread over (count), e.g. 64."))
    cp: PositiveInt = Field(1, description="Context-parallel degree: GPUs a sequence is split over (count), e.g. 1.")
    virtual_stages: PositiveInt = Field(1, description=(
        "Model chunks per pipeline rank, for interleaved schedules (count), e.g. 2."))
    zero_stage: Literal[0, 1, 2, 3] = Field(1, description=(
        "ZeRO stage: 0 none, 1 optimizer states, 2 and gradients, 3 and weights sharded (0–3), e.g. 1."))
    micro_batch_size: PositiveInt = Field(1, description=(  # sequences per micro-batch
        "Sequences per micro-batch (count), e.g. 1."))
    # sequences per optimizer step (micro-batches are guarded in moesim.simulator.limits)
    global_batch: PositiveInt = Field(description=(
        "Sequences per optimizer step, over all data-parallel ranks (count), e.g. 15360."))
    seq_len: q.SEQUENCE.field() = Field(description="Tokens per sequence (tokens), e.g. 4096.")
    # Transformer layers per pipeline stage (pp × virtual_stages entries); default: an even split.
    stage_layers: list[Annotated[int, Field(ge=0)]] | Literal["auto"] | None = Field(
        None, description="Decoder layers per pipeline stage (count per stage, pp × virtual_stages entries), or "
                          "auto: the split (MTP layers included) with the slowest rank fastest by the cost model, "
                          "chosen when simulating, e.g. [3, 4, 4, 2]")
    pipeline_layout: str | None = Field(
        None, description="Megatron-Core's --pipeline-model-parallel-layout (units per stage: E embedding, "
                          "t decoder layer, m MTP layer, L loss; | between stages), e.g. Et*3|(tt|)*29,m|L")
    expert_tp: PositiveInt = Field(1, description="Tensor parallelism of the routed experts (GPUs; Megatron's "
                                                  "--expert-tensor-parallel-size, parallel folding): each expert's "
                                                  "intermediate dimension split over this many GPUs, e.g. 2")
    expert_dp: PositiveInt | None = Field(None, description="Data parallelism of the routed experts (GPUs): "
                                                            "dp·cp·tp / (ep·expert_tp); derived when unset, "
                                                            "checked when set, e.g. 16")
    fsdp: Fsdp | None = Field(None, description="FSDP2/HSDP sharding of the data-parallel group (GPUs; shard × "
                                                "replicate = dp), e.g. {shard: 8, replicate: 2}; set, it replaces "
                                                "zero_stage; unset: ZeRO by zero_stage")

    @property
    def expert_dp_size(self) -> int:
        """GPUs of one expert-data-parallel group: dp·cp·tp / (ep·expert_tp) (Megatron's expert DP)."""
        return max(1, self.stage_gpus // (self.ep * self.expert_tp))

    @property
    def stage_gpus(self) -> int:
        """GPUs of one pipeline stage: dp·cp·tp (EP groups are carved from them)."""
        return self.dp * self.cp * self.tp

    @property
    def gpus(self) -> int:
        """GPUs of the whole layout: dp·tp·pp·cp."""
        return self.stage_gpus * self.pp

    @property
    def dense_shards(self) -> int:
        """Ways a dense parameter's ZeRO-sharded state is split (:func:`state_shards`); with ``fsdp``, its shard
        group (×cp)."""
        if self.fsdp is not None:
            return self.fsdp.shard * self.cp
        return state_shards(self.dp, self.cp, self.tp, self.ep, self.expert_tp)[0]

    @property
    def expert_shards(self) -> int:
        """Ways a routed expert's ZeRO-sharded state is split (:func:`state_shards`); with ``fsdp`` too: experts are
        FSDP-sharded over their whole expert-DP group."""
        return state_shards(self.dp, self.cp, self.tp, self.ep, self.expert_tp)[1]


def state_shards(dp: int, cp: int, tp: int, ep: int, expert_tp: int = 1) -> tuple[int, int]:
    """Ways ZeRO splits a parameter's state: (dense: its data-parallel group dp·cp, routed expert: its
    expert-data-parallel group dp·cp·tp / (ep·expert_tp)). For layouts that are not a :class:`Parallelism` yet
    (the planner)."""
    return dp * cp, max(1, dp * cp * tp // (ep * expert_tp))


# Hopper GPUs (sm_90): FP8 tensor cores with per-tensor scales only, no MXFP8 block scaling (NVIDIA Blackwell
# architecture technical brief: MXFP8/MXFP6/MXFP4 are new in its fifth-generation tensor cores).
HOPPER_NAMES = ("H100", "H800", "H200", "H20", "GH200")
# Megatron-Core's --recompute-modules (megatron/core/transformer/transformer_config.py, recompute_modules), plus
# TorchTitan's per-op policy (selective) and the whole layer (full); workloads/recompute.py prices each.
RECOMPUTE_MODULES = ("core_attn", "moe_act", "layernorm", "mla_up_proj", "mlp", "moe", "shared_experts",
                     "selective", "full")


class Recompute(_Strict):
    """What backward recomputes instead of storing (DeepSeek-V3 TR §3.4). The booleans are DeepSeek's own
    policy; ``modules`` names Megatron-Core's modules and TorchTitan's policies (workloads/recompute.py)."""

    norm: bool = Field(False, description=(
        "Recompute RMSNorm outputs in backward instead of storing them (true/false), e.g. true."))
    mla_up_proj: bool = Field(False, description=(
        "Recompute MLA up-projections in backward instead of storing them (true/false), e.g. true."))
    swiglu: bool = Field(False, description=(
        "Recompute SwiGLU outputs in backward instead of storing them (true/false), e.g. true."))
    full: bool = Field(False, description=(
        "Recompute each layer's whole forward in backward, storing only its input (true/false), e.g. false."))

    modules: list[str] = Field([], description=(
        "Modules recomputed in backward instead of stored: Megatron-Core's --recompute-modules (core_attn, moe_act, "
        "layernorm, mla_up_proj, mlp, moe, shared_experts), or TorchTitan's per-op policy (selective: every op but "
        "the saved matmuls and attention), or full (the whole layer); e.g. [core_attn, moe_act]"))

    layers: PositiveInt | None = Field(None, description=(
        "With full recomputation, only the first N transformer layers of each pipeline stage recompute (Megatron's "
        "--recompute-method block --recompute-num-layers N); the others keep their activations; e.g. 2. None: every "
        "layer"))

    @field_validator("modules")
    @classmethod
    def _known_modules(cls, value):
        for name in value:
            if name not in RECOMPUTE_MODULES:
                raise ValueError(f"unknown recompute module {name!r}; choose from {', '.join(RECOMPUTE_MODULES)}")
        if "selective" in value and set(value) - {"selective"}:
            raise ValueError("selective (TorchTitan's per-op policy) already recomputes every op but the saved "
                             "matmuls and attention; list it alone")
        return value

    @model_validator(mode="after")
    def _layers_need_full(self):
        if self.layers is not None and not (self.full or "full" in self.modules):
            raise ValueError("layers counts the layers recomputed fully; set full: true (or modules: [full]) or "
                             "remove layers")
        return self


class Precision(_Strict):
    """GEMM precision per class (DeepSeek-V3 TR §3.3 keeps embedding, head, gating and attention in BF16)."""

    attention_proj: Dtype = Field("bf16", description=(
        "Precision of attention projection GEMMs (fp8, bf16 or fp32), e.g. fp8."))
    dense_mlp: Dtype = Field("bf16", description="Precision of dense FFN GEMMs (fp8, bf16 or fp32), e.g. fp8.")
    expert: Dtype = Field("bf16", description="Precision of expert GEMMs (fp8, bf16 or fp32), e.g. fp8.")
    gate: Dtype = Field("bf16", description="Precision of the MoE gate GEMM (fp8, bf16 or fp32), e.g. bf16.")
    head: Dtype = Field("bf16", description=(
        "Precision of the output head and embedding GEMMs (fp8, bf16 or fp32), e.g. bf16."))
    attention_core: Dtype = Field("bf16", description=(
        "Precision of the attention core, scores and weighted sum (fp8, bf16 or fp32), e.g. bf16."))


class Training(_Strict):
    tokens: q.TOKENS.field() = Field(description=(  # token budget of the whole run
        "Token budget of the whole run (tokens), e.g. 14.8e12."))
    precision: Precision = Field(Precision(), description="GEMM precision per operation class.")
    dispatch_dtype: Dtype = Field("bf16", description=(
        "Precision of tokens sent in MoE dispatch (fp8, bf16 or fp32), e.g. fp8."))
    combine_dtype: Dtype = Field("bf16", description=(
        "Precision of tokens sent back in MoE combine (fp8, bf16 or fp32), e.g. bf16."))
    recompute: Recompute = Field(Recompute(), description="What backward recomputes instead of storing.")
    comm_sms: Annotated[int, Field(ge=0)] = Field(0, description=(  # SMs reserved for communication kernels
        "SMs reserved for communication kernels; compute runs on the rest while they run (count), e.g. 20."))
    # The FP8 GEMM kernel generation: DeepGEMM (public since 2025-02) or the internal CUTLASS-based kernels
    # that preceded it; a profile's GEMM points of the other generation are not used.
    kernels: Literal["deepgemm", "cutlass"] = Field("deepgemm", description=(
        "FP8 GEMM kernel generation the run used (name): deepgemm or cutlass, e.g. deepgemm."))
    optimizer_moment_dtype: Dtype = Field("fp32", description=(
        "Precision of the AdamW moments (fp8, bf16 or fp32), e.g. bf16."))
    master_weights: bool = Field(True, description=(  # fp32 master copy beside the working weights
        "Whether an fp32 master copy of the weights is kept beside the working weights (true/false), e.g. true."))
    weight_dtype: Dtype = Field("bf16", description="Precision of the working weights (fp8, bf16 or fp32), e.g. bf16.")
    grad_dtype: Dtype = Field("fp32", description=(
        "Precision of the accumulated gradients (fp8, bf16 or fp32), e.g. fp32."))
    # A what-if: the regions captured in CUDA graphs (CudaGraphScope); each captured run of kernels costs the host
    # one graph launch instead of one launch per kernel, and cannot synchronise with the host (a graph replays
    # static shapes: Megatron's moe scope needs --moe-pad-expert-input-to-capacity, DeepEP a num_worst_tokens).
    # Empty: nothing captured, Megatron's default (--cuda-graph-impl none).
    cuda_graphs: list[CudaGraphScope] = Field([], description=(
        "Regions captured in CUDA graphs, as Megatron-LM names them (list of attn, mlp, moe, moe_router, "
        "moe_preprocess, full_iteration; empty: none), e.g. [attn, moe_router]."))
    # The forward dispatch waits on the host for the token counts it receives before sizing its buffers: DeepEP's
    # normal-mode dispatch polls a host-mapped counter (moe_recv_counter, csrc/deep_ep.cpp intranode_dispatch /
    # internode_dispatch) unless given a cached layout or num_worst_tokens; Megatron's alltoall dispatcher copies
    # tokens_per_expert to the host (megatron/core/transformer/moe/token_dispatcher.py). False: a worst-case token
    # count sizes the buffers and the host does not wait.
    dispatch_host_sync: bool = Field(True, description=(
        "Whether the forward dispatch waits on the host for the received token counts (true/false), e.g. true."))
    fp8_recipe: Literal["blockwise", "delayed", "tensorwise", "mxfp8"] | None = Field(None, description=(
        "How FP8 GEMM operands are scaled (workloads/fp8.py): blockwise (DeepSeek-V3's 1x128 activation and "
        "128x128 weight tiles, DeepGEMM), delayed (per tensor, scale from the amax history: Transformer Engine's "
        "DelayedScaling), tensorwise (per tensor, current amax: TE's Float8CurrentScaling, torchao's tensorwise), "
        "mxfp8 (1x32 blocks with E8M0 scales, Blackwell only); e.g. tensorwise. None: blockwise where a precision "
        "field is fp8"))
    # Megatron-LM's --tp-comm-overlap (Transformer Engine userbuffers): each tensor-parallel collective split into
    # chunks pipelined with the chunks of its row-parallel GEMM on fewer SMs (simulator/tp_overlap.py).
    tp_comm_overlap: bool = Field(False, description=(
        "Megatron-LM's --tp-comm-overlap: tensor-parallel collectives pipelined with their GEMMs (true/false), "
        "e.g. false."))
    dispatcher: Literal["deepep", "alltoall", "allgather", "hybridep"] = Field(
        "deepep", description="The MoE token dispatcher (Megatron's --moe-token-dispatcher-type; deepep = "
                              "--moe-enable-deepep, hybridep = flex with HybridEP): how tokens reach their experts "
                              "and which kernels and host syncs that takes, e.g. alltoall")
    ep_overlap: bool = Field(False, description="Megatron's --overlap-moe-expert-parallel-comm: interleaved 1F1B "
                                                "runs each steady-state forward beside a backward of another "
                                                "micro-batch so that one's EP all-to-all hides under the other's "
                                                "compute (on/off; needs schedule: interleaved), e.g. true")
    capacity_factor: Annotated[float, Field(gt=0, le=1000)] | None = Field(
        None, description="Megatron's --moe-expert-capacity-factor: an expert takes at most capacity_factor × "
                          "its balanced share of tokens (tokens) and drops the rest; unset: no dropping, e.g. 1.0")


class Straggler(_Strict):
    """A GPU whose kernels run ``slowdown`` times longer than its peers' (thermal throttling, a bad part)."""

    gpu: Annotated[int, Field(ge=0)] = Field(description=(  # global rank
        "Global rank of the slow GPU (index from 0), e.g. 17."))
    slowdown: q.SLOWDOWN.field() = Field(description=(
        "How many times longer its kernels run than its peers' (factor ≥ 1), e.g. 1.2."))


class Reliability(_Strict):
    """Failure rates and checkpoint/restart costs for the expected goodput of a long run."""

    # Llama 3 paper (arXiv 2407.21783) §3.3.4: 419 unexpected interruptions in a 54-day snapshot on 16,384 H100
    # GPUs, i.e. 16,384 × 54 × 24 / 419 = 50,680 GPU-hours per interruption, all causes charged per GPU.
    gpu_mtbf_hours: q.HOURS.field() = Field(50_680.0, description=(
        "Mean time between interruptions charged to one GPU, all causes (GPU-hours), e.g. 50680."))
    # host-level failures, if counted apart from the GPUs
    node_mtbf_hours: q.HOURS.field() | None = Field(None, description=(
        "Mean time between host-level failures of one node, if counted apart (node-hours; empty: none), e.g. "
        "100000."))
    # None: Young's optimum sqrt(2·C·MTBF)
    checkpoint_interval_min: q.MINUTES.field() | None = Field(None, description=(
        "Minutes between checkpoints (minutes; empty: Young's optimum sqrt(2·C·MTBF)), e.g. 30."))
    # None: checkpoint bytes per node / storage bandwidth
    checkpoint_s: q.SECONDS.field() | None = Field(None, description=(
        "Time to write one checkpoint (seconds; also '2min'; empty: checkpoint bytes per node / storage "
        "bandwidth), e.g. 60."))
    # hardware.md: one more 400 Gb/s Ethernet NIC per DeepSeek node serves storage (50 GB/s).
    storage_gbytes_per_s_per_node: q.BANDWIDTH_GBYTES_PER_S.field() = Field(50.0, description=(
        "Bandwidth from one node to storage (GB/s, gigabytes; also '400Gb/s'), e.g. 50."))
    # rescheduling + reloading; not published for these runs, so 0 unless given
    restart_s: q.SECONDS.field() = Field(0.0, description=(
        "Time to reschedule and reload after a failure (seconds; also '10min'), e.g. 600."))


class LinkFault(_Strict):
    """A failed (``bandwidth_factor`` 0) or degraded cable or switch, named as in the cluster graph.

    ``link`` is a cable's two ends (e.g. ``[n3.nic0, p0.leaf1]``); ``switch`` a switch (e.g. ``p0.spine2``).
    Names are those ``moesim topology describe`` and ``moesim topology route`` print.
    """

    link: list[str] | None = Field(None, description=(
        "A cable's two ends, as `moesim topology describe` names them (two names), e.g. [n3.nic0, p0.leaf1]."))
    switch: str | None = Field(None, description=(
        "A switch, as `moesim topology describe` names it (name), e.g. p0.spine2."))
    bandwidth_factor: Annotated[float, Field(ge=0, lt=1)] = Field(0.0, description=(
        "Fraction of its bandwidth left: 0 failed, 0.25 degraded to a quarter (0 ≤ x < 1), e.g. 0.25."))

    @model_validator(mode="after")
    def _one_target(self):
        if (self.link is None) == (self.switch is None):
            raise ValueError("give exactly one of link: [u, v] or switch: NAME")
        if self.link is not None and len(self.link) != 2:
            raise ValueError(f"link must name two ends, got {len(self.link)}")
        return self


class Faults(_Strict):
    stragglers: list[Straggler] = Field([], description=(
        "GPUs whose kernels run slower than their peers' (list), e.g. [{gpu: 17, slowdown: 1.2}]."))
    links: list[LinkFault] = Field([], description=(
        "Failed or degraded cables and switches (list), e.g. [{switch: p0.spine2}]."))
    reliability: Reliability = Field(Reliability(), description=(
        "Failure rates and checkpoint/restart costs, for the expected goodput of a long run."))


class Routing(_Strict):
    """How tokens choose experts: a routing model by name (``workloads/routing.py``) and its options.

    ``zipf_alpha`` skews the ``zipf`` model (0 = balanced); ``file`` feeds the ``file`` model expert ids
    (tokens × layers × top_k); ``gate_weights`` optionally loads the ``gate`` model's (experts × hidden)
    matrix; ``redundant_experts`` extra copies of the hottest experts per EP group, placed within their node.
    """

    name: str = Field("balanced", description="Routing model (name): balanced, zipf, gate or file, e.g. zipf.")
    zipf_alpha: q.ROUTING_SKEW.field() = Field(1.0, description=(
        "Skew of the zipf model's expert popularity (exponent, 0 = balanced), e.g. 1.0."))
    file: str | None = Field(None, description=(
        "For the file model: expert ids, tokens × layers × top_k (.npy, .npz or .json path), e.g. ids.npy."))
    gate_weights: str | None = Field(None, description=(
        "For the gate model: its experts × hidden weight matrix (.npy or torch file path; empty: drawn from the "
        "seed), e.g. gate.npy."))
    redundant_experts: Annotated[int, Field(ge=0)] = Field(0, description=(
        "Extra copies of the hottest experts per EP group, placed within their node (count), e.g. 32."))

    @model_validator(mode="after")
    def _known(self):
        from moesim.workloads.routing import routing_names

        if self.name not in routing_names():
            raise ValueError(f"unknown routing model {self.name!r}; known: {', '.join(routing_names())}")
        if self.name == "file" and not self.file:
            raise ValueError("the file routing model needs routing.file (a .npy, .npz or .json of expert ids)")
        return self


class Run(_Strict):
    seed: int = Field(0, description="Random seed for routing samples and jitter (integer), e.g. 0.")
    fidelity: Literal["representative", "full"] = Field("representative", description=(
        "representative: one process per distinct role; full: every GPU (name), e.g. representative."))
    network: Literal["analytic", "flow"] = Field("analytic", description=(
        "Network model (name): analytic (per-link load) or flow (max-min fair flows in time), e.g. analytic."))
    check_memory: bool = Field(True, description=(  # refuse a layout whose peak memory on some rank exceeds HBM
        "Refuse a layout whose peak memory on some rank exceeds HBM (true/false), e.g. true."))
    # > 1: repeat with jittered kernels and routing
    samples: Annotated[int, Field(ge=1, le=10_000)] = Field(1, description=(
        "Steps to simulate with jittered kernels and routing, for p50/p95 step time (count), e.g. 100."))
    # Spread of one kernel's time (coefficient of variation) for --samples: the 4 same-shape FlashAttention
    # forward kernels of DeepSeek's profiler trace (profile-data train.json, 4 MoE layers) vary by 2.45%.
    kernel_time_cv: q.UNIT_INTERVAL.field() = Field(0.0245, description=(
        "Spread of one kernel's time for samples (coefficient of variation, 0–1), e.g. 0.0245."))


class Energy(_Strict):
    """Power and prices for the energy (kWh) and cost (USD) of a step and of the whole run.

    GPU power defaults to the catalogue's TDP (the maximum board power: an upper bound for a GPU under load, used
    because no measured training power is published for these GPUs); node and network power are per GPU.
    """

    gpu_power_w: q.WATTS.field() | None = Field(
        None, description="Each GPU's power under load (W); None: its catalogue TDP, e.g. 1000 for a B200")
    node_overhead_w_per_gpu: q.WATTS.field() = Field(
        0.0, description="Host power per GPU beyond the GPU: CPUs, memory, NICs, NVSwitches, fans (W), e.g. 575 "
                         "for a DGX H100 (10.2 kW maximum system power less 8 × 700 W GPUs, over 8)")
    network_w_per_gpu: q.WATTS.field() = Field(
        0.0, description="Scale-out switches' power per GPU (W), e.g. 30")
    pue: q.PUE.field() = Field(1.0, description="Facility power usage effectiveness (ratio, ≥ 1), e.g. 1.2")
    usd_per_gpu_hour: q.USD_PER_HOUR.field() | None = Field(
        None, description="Price of one GPU-hour (USD per GPU-hour), e.g. 2.0; None: no cost is reported")
    usd_per_kwh: q.USD_PER_HOUR.field() | None = Field(
        None, description="Price of electricity (USD per kWh) when not included in the GPU-hour price, e.g. 0.08")


class Scenario(_Strict):
    name: str = Field("custom", description="The scenario's name (text), e.g. deepseek-v3-h800.")
    description: str = Field("", description=(
        "One line on what the scenario is (text), e.g. DeepSeek-V3 pre-training on 2048 H800."))
    cluster: Cluster = Field(description="The machine: GPU count and kind, nodes and the scale-out network.")
    model: Model = Field(description="The model: layers, widths, attention and experts.")
    parallelism: Parallelism = Field(description="The parallel layout: dp, tp, pp, ep, cp, batch and sequence length.")
    schedule: str = Field("1f1b", description=(
        "Pipeline schedule (name): gpipe, 1f1b, dualpipe, dualpipev, interleaved or zb-h1, e.g. dualpipe."))
    training: Training = Field(description=(
        "Training: token budget, precisions, recomputation, communication SMs, host options."))
    faults: Faults = Field(Faults(), description=(
        "Stragglers, failed or degraded links and switches, and failure rates."))
    routing: Routing = Field(Routing(), description="How tokens choose experts: the routing model and its options.")
    run: Run = Field(Run(), description="How to simulate: seed, fidelity, network model, memory check, samples.")
    energy: Energy | None = Field(None, description=(
        "Power and prices for the energy (kWh) and cost (USD) of the run; null: not reported (simulator/energy.py)."))

    @model_validator(mode="after")
    def _check_layout(self):
        par, model, cluster = self.parallelism, self.model, self.cluster
        product = par.gpus
        if product != cluster.gpus:
            raise ValueError(
                f"parallelism: dp·tp·pp·cp = {par.dp}·{par.tp}·{par.pp}·{par.cp} = {product} "
                f"but cluster.gpus = {cluster.gpus}; make them equal"
            )
        gpn = cluster.node.gpus_per_node
        if cluster.gpus > gpn and cluster.gpus % gpn:  # a cluster smaller than a node is part of one node
            raise ValueError(f"cluster.gpus={cluster.gpus} is not a whole number of nodes of "
                             f"cluster.node.gpus_per_node={gpn}; make gpus a multiple of it")
        if par.tp > gpn:
            raise ValueError(f"parallelism.tp={par.tp} exceeds gpus_per_node={gpn}")
        if gpn % par.tp:
            raise ValueError(f"parallelism.tp={par.tp} must divide cluster.node.gpus_per_node={gpn} "
                             "(a TP group stays inside a node)")
        if par.ep > gpn and par.ep % gpn:
            raise ValueError(f"parallelism.ep={par.ep} spans nodes, so it must be a multiple of "
                             f"cluster.node.gpus_per_node={gpn}")
        if model.moe is None and (self.routing.name != "balanced" or self.routing.redundant_experts):
            raise ValueError("routing: only MoE models route tokens; remove the routing section")
        if model.moe is None and par.ep > 1:
            raise ValueError("parallelism.ep > 1 needs a model with moe; set ep=1")
        if model.moe is not None:
            if self.routing.redundant_experts > model.moe.routed_experts:
                raise ValueError(f"routing.redundant_experts={self.routing.redundant_experts} exceeds "
                                 f"model.moe.routed_experts={model.moe.routed_experts}; lower it")
            if par.ep > model.moe.routed_experts:
                raise ValueError(
                    f"parallelism.ep={par.ep} exceeds model.moe.routed_experts={model.moe.routed_experts}; lower ep"
                )
            if model.moe.routed_experts % par.ep:
                raise ValueError(
                    f"parallelism.ep={par.ep} must divide model.moe.routed_experts={model.moe.routed_experts}"
                )
            if par.stage_gpus % par.ep:
                raise ValueError(f"parallelism.ep={par.ep} must divide dp·cp·tp={par.stage_gpus}")
            if par.ep < gpn and gpn % par.ep and cluster.gpus > gpn:
                raise ValueError(f"parallelism.ep={par.ep} does not divide cluster.node.gpus_per_node={gpn}, so "
                                 f"EP groups would straddle NVLink domains; use an ep that divides {gpn}, or set "
                                 "gpus_per_node to a multiple of ep (the GPUs of each domain the job uses, e.g. 64 "
                                 "of an NVL72 rack's 72)")
        self._check_expert_layout()
        heads = model.attention.heads
        if heads % par.tp:
            raise ValueError(f"parallelism.tp={par.tp} must divide model.attention.heads={heads}")
        if par.seq_len % par.cp:
            raise ValueError(f"parallelism.cp={par.cp} must divide parallelism.seq_len={par.seq_len}")
        if par.global_batch % (par.dp * par.micro_batch_size):
            raise ValueError(
                f"parallelism.global_batch={par.global_batch} must be a multiple of "
                f"dp·micro_batch_size={par.dp * par.micro_batch_size}"
            )
        stages = par.pp * par.virtual_stages
        if par.pipeline_layout is not None:
            from moesim.workloads.pipeline_layout import check_layout

            if par.stage_layers is not None:
                raise ValueError("parallelism.pipeline_layout and parallelism.stage_layers both split the "
                                 "pipeline; keep one")
            try:
                check_layout(par.pipeline_layout, stages, model.layers, model.mtp_depth)
            except ValueError as err:
                raise ValueError(str(err)) from None
        elif par.stage_layers == "auto":
            if model.layers + 2 < stages:
                raise ValueError(f"parallelism.stage_layers: auto cannot fill {stages} stages with "
                                 f"{model.layers} layers; lower pp·virtual_stages")
        elif par.stage_layers is not None:
            if len(par.stage_layers) != stages:
                raise ValueError(
                    f"parallelism.stage_layers has {len(par.stage_layers)} entries; pp·virtual_stages = {stages}"
                )
            if sum(par.stage_layers) != model.layers:
                raise ValueError(
                    f"parallelism.stage_layers sums to {sum(par.stage_layers)}; model.layers = {model.layers}"
                )
        elif model.layers % stages:
            raise ValueError(
                f"model.layers={model.layers} does not split evenly over pp·virtual_stages={stages} stages; "
                "change pp or set parallelism.stage_layers"
            )
        for i, straggler in enumerate(self.faults.stragglers):
            if straggler.gpu >= cluster.gpus:
                raise ValueError(f"faults.stragglers[{i}].gpu={straggler.gpu} is not a GPU of the "
                                 f"{cluster.gpus}-GPU cluster (0 … {cluster.gpus - 1})")
        if par.fsdp is not None and par.fsdp.shard * par.fsdp.replicate != par.dp:
            raise ValueError(f"parallelism.fsdp: shard·replicate = {par.fsdp.shard}·{par.fsdp.replicate} = "
                             f"{par.fsdp.shard * par.fsdp.replicate} but parallelism.dp = {par.dp}; make them equal")
        if par.fsdp is not None and par.pp == 1 and (self.schedule in ("dualpipe", "dualpipev")
                                                      or self.training.ep_overlap):
            raise ValueError("parallelism.fsdp: FSDP's per-layer prefetch is modelled on chunks run one at a time, "
                             "not on overlapped F&B pairs; use schedule 1f1b, interleaved, zb-h1 or gpipe "
                             "(ep_overlap: false), or remove fsdp")
        if self.training.ep_overlap and self.schedule != "interleaved":
            raise ValueError(f"training.ep_overlap overlaps EP communication across micro-batches of interleaved "
                             f"1F1B; set schedule: interleaved (not {self.schedule}) or ep_overlap: false")
        if cluster.gpu.fp8_tflops is None:
            fp8 = [f"training.precision.{k}" for k, v in self.training.precision.model_dump().items() if v == "fp8"]
            fp8 += [f"training.{k}" for k in ("dispatch_dtype", "combine_dtype") if getattr(self.training, k) == "fp8"]
            if fp8:
                raise ValueError(f"{fp8[0]}=fp8 but {cluster.gpu.name} has no FP8 tensor cores; use bf16")
        if self.energy is not None and self.energy.gpu_power_w is None and cluster.gpu.tdp_w is None:
            raise ValueError(f"energy.gpu_power_w: {cluster.gpu.name} has no published power in the GPU catalogue; "
                             "give its power under load in watts, e.g. energy.gpu_power_w=1100")
        if self.training.comm_sms >= cluster.gpu.sms:
            raise ValueError(f"training.comm_sms={self.training.comm_sms} leaves no SMs of {cluster.gpu.sms}")
        recipe, prec = self.training.fp8_recipe, self.training.precision
        if recipe is not None and "fp8" not in (prec.attention_proj, prec.dense_mlp, prec.expert, prec.gate, prec.head):
            raise ValueError(f"training.fp8_recipe={recipe} but no training.precision GEMM field is fp8; set one "
                             "(e.g. training.precision.dense_mlp=fp8) or remove fp8_recipe")
        if recipe == "mxfp8" and cluster.gpu.name.upper().startswith(HOPPER_NAMES):
            raise ValueError(f"training.fp8_recipe=mxfp8 needs Blackwell tensor cores (MXFP8's 1x32 block scales); "
                             f"cluster.gpu {cluster.gpu.name} is Hopper: use blockwise or tensorwise")
        return self

    def _check_expert_layout(self) -> None:
        """Expert TP and expert DP (Megatron's parallel folding): ep·expert_tp·expert_dp = dp·cp·tp."""
        par, moe = self.parallelism, self.model.moe
        etp = par.expert_tp
        if etp > 1 and moe is None:
            raise ValueError("parallelism.expert_tp > 1 needs a model with moe; set expert_tp=1")
        if moe is not None and moe.expert_intermediate % etp:
            raise ValueError(f"parallelism.expert_tp={etp} must divide model.moe.expert_intermediate="
                             f"{moe.expert_intermediate}; pick a divisor of it")
        if par.stage_gpus % (par.ep * etp):
            raise ValueError(f"parallelism.expert_tp={etp}: ep·expert_tp = {par.ep * etp} must divide "
                             f"dp·cp·tp = {par.stage_gpus}; lower expert_tp or ep")
        if par.expert_dp is not None and par.expert_dp != par.expert_dp_size:
            raise ValueError(f"parallelism.expert_dp={par.expert_dp} but dp·cp·tp / (ep·expert_tp) = "
                             f"{par.stage_gpus}/({par.ep}·{etp}) = {par.expert_dp_size}; set expert_dp="
                             f"{par.expert_dp_size} or leave it unset")

    # Derived quantities used across layers.
    @property
    def micro_batches(self) -> int:
        """Micro-batches per pipeline per step."""
        par = self.parallelism
        return par.global_batch // (par.dp * par.micro_batch_size)

    @property
    def tokens_per_step(self) -> int:
        return self.parallelism.global_batch * self.parallelism.seq_len

    def layers_per_stage(self) -> list[int]:
        """Transformer layers on each of the pp × virtual_stages stages, in model order. ``auto`` before the
        simulator has resolved it (moesim.simulator.auto_split): the near-even split, the larger stages first."""
        par = self.parallelism
        if par.pipeline_layout is not None:
            return [units.layers for units in self.stage_units()]
        stages = par.pp * par.virtual_stages
        if par.stage_layers == "auto":
            base, extra = divmod(self.model.layers, stages)
            return [base + (i < extra) for i in range(stages)]
        if par.stage_layers is not None:
            return list(par.stage_layers)
        return [self.model.layers // stages] * stages

    def stage_units(self):
        """What each stage holds (:class:`moesim.workloads.pipeline_layout.StageUnits`): from ``pipeline_layout``, else
        the embedding on the first stage and the MTP layers and the loss on the last."""
        from moesim.workloads.pipeline_layout import default_units, parse_layout

        if self.parallelism.pipeline_layout is not None:
            return parse_layout(self.parallelism.pipeline_layout)
        return default_units(self.layers_per_stage(), self.model.mtp_depth)
