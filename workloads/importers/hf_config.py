"""A model's shapes from its Hugging Face ``config.json`` (Llama, Qwen3, Qwen3-MoE, DeepSeek-V3, Mixtral keys).

Keys as the ``transformers`` configuration classes name them (LlamaConfig, Qwen3MoeConfig, DeepseekV3Config,
MixtralConfig); each field set names the key it came from. Fields already set by the framework's own flags are
kept: the flags describe the model that trained, the config.json fills what they leave out (the vocabulary, say).
"""

from __future__ import annotations

from pathlib import Path

from moesim.workloads.documents import read_document
from moesim.workloads.errors import ScenarioError
from moesim.workloads.importers.draft import Draft

MAX_CONFIG_BYTES = 1_000_000


def read_hf_config(path: str | Path) -> dict:
    """The parsed config.json, or a one-line ScenarioError."""
    data = read_document(path, "--hf-config", MAX_CONFIG_BYTES, "json")
    if not isinstance(data, dict) or "hidden_size" not in data:
        raise ScenarioError(f"--hf-config {path}: not a Hugging Face model config (no hidden_size); give the "
                            "model's config.json")
    return data


def apply_hf_config(draft: Draft, config: dict, name: str) -> None:
    """Fill the draft's model section from ``config`` where the flags did not set a field; ``name`` is the
    file name used in the comments."""

    def put(path: str, value, key: str) -> None:
        if path not in draft.values and value is not None:
            draft.set(path, value, f"{name} {key}")

    put("model.layers", config.get("num_hidden_layers"), "num_hidden_layers")
    put("model.hidden", config["hidden_size"], "hidden_size")
    put("model.vocab", config.get("vocab_size"), "vocab_size")
    put("model.ffn_intermediate", config.get("intermediate_size"), "intermediate_size")
    put("model.tied_embeddings", config.get("tie_word_embeddings", False), "tie_word_embeddings")
    heads = config.get("num_attention_heads")
    if "model.attention.kind" in draft.values:  # the flags described the attention: keep theirs whole
        heads = None
    else:
        put("model.attention.heads", heads, "num_attention_heads")
    if heads is None:
        pass
    elif "kv_lora_rank" in config:  # MLA (DeepSeek-V2/V3)
        put("model.attention.kind", "mla", "kv_lora_rank")
        for key, target in (("q_lora_rank", "q_lora_rank"), ("kv_lora_rank", "kv_lora_rank"),
                            ("qk_nope_head_dim", "qk_nope_head_dim"), ("qk_rope_head_dim", "qk_rope_head_dim"),
                            ("v_head_dim", "v_head_dim")):
            put(f"model.attention.{target}", config.get(key), key)
    elif heads:
        kv = config.get("num_key_value_heads", heads)
        put("model.attention.kind", "gqa" if kv != heads else "mha", "num_key_value_heads")
        if kv != heads:
            put("model.attention.kv_heads", kv, "num_key_value_heads")
        head_dim = config.get("head_dim") or config["hidden_size"] // heads
        put("model.attention.head_dim", head_dim, "head_dim" if "head_dim" in config else "hidden_size / heads")
    if "model.moe.routed_experts" not in draft.values:
        _moe(put, config)
    put("model.mtp_depth", config.get("num_nextn_predict_layers") or None, "num_nextn_predict_layers")


def _moe(put, config: dict) -> None:
    """The MoE keys, unless the flags set the experts (then theirs stand whole)."""
    experts = config.get("n_routed_experts") or config.get("num_experts") or config.get("num_local_experts")
    if not experts:
        return
    key = next(k for k in ("n_routed_experts", "num_experts", "num_local_experts") if config.get(k))
    put("model.moe.routed_experts", experts, key)
    put("model.moe.top_k", config.get("num_experts_per_tok"), "num_experts_per_tok")
    inter = config.get("moe_intermediate_size") or config.get("intermediate_size")
    put("model.moe.expert_intermediate", inter,
        "moe_intermediate_size" if config.get("moe_intermediate_size") else "intermediate_size")
    if config.get("n_shared_experts"):
        put("model.moe.shared_experts", config["n_shared_experts"], "n_shared_experts")
    put("model.moe.first_dense_layers", config.get("first_k_dense_replace") or None, "first_k_dense_replace")
    if config.get("n_group"):
        put("model.moe.groups", config["n_group"], "n_group")
        put("model.moe.groups_per_token", config.get("topk_group"), "topk_group")
    scoring = config.get("scoring_func")
    if scoring in ("softmax", "sigmoid"):
        put("model.moe.gating", scoring, "scoring_func")
