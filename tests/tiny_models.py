"""Tiny random-initialised models of every supported family, built from transformers config classes.

3 blocks, hidden 64, MLP width 128 (experts: 8 x 32 units, top-2), the bundled tokenizer's
vocabulary: no download, a few MB each. Used by tests/test_families.py and tests/test_moe.py.
"""

from __future__ import annotations

from typing import Any

N_LAYERS, HIDDEN, WIDTH = 3, 64, 128
N_EXPERTS, EXPERT_WIDTH, TOP_K = 8, 32, 2
VOCAB = 49152  # SmolLM2 tokenizer

COMMON = dict(
    vocab_size=VOCAB,
    hidden_size=HIDDEN,
    intermediate_size=WIDTH,
    num_hidden_layers=N_LAYERS,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=512,
)
MOE = dict(num_local_experts=N_EXPERTS, num_experts_per_tok=TOP_K)

# family -> (config class name, CausalLM class name, overrides)
DENSE: dict[str, tuple[str, str, dict[str, Any]]] = {
    "llama": ("LlamaConfig", "LlamaForCausalLM", {}),
    "mistral": ("MistralConfig", "MistralForCausalLM", {}),
    "qwen2": ("Qwen2Config", "Qwen2ForCausalLM", {}),
    "qwen3": ("Qwen3Config", "Qwen3ForCausalLM", {"head_dim": 16}),
    "gemma": ("GemmaConfig", "GemmaForCausalLM", {"head_dim": 16}),
    "gemma2": ("Gemma2Config", "Gemma2ForCausalLM", {"head_dim": 16}),
    "gemma3": ("Gemma3TextConfig", "Gemma3ForCausalLM", {"head_dim": 16}),
    "phi": ("PhiConfig", "PhiForCausalLM", {}),
    "phi3": ("Phi3Config", "Phi3ForCausalLM", {}),
    "gpt2": ("GPT2Config", "GPT2LMHeadModel", {"n_embd": HIDDEN, "n_layer": N_LAYERS, "n_head": 4, "n_inner": WIDTH,
                                              "n_positions": 512}),
    "gpt_neox": ("GPTNeoXConfig", "GPTNeoXForCausalLM", {}),
    "falcon": ("FalconConfig", "FalconForCausalLM", {"ffn_hidden_size": WIDTH, "new_decoder_architecture": True,
                                                     "num_kv_heads": 2}),
    "olmo2": ("Olmo2Config", "Olmo2ForCausalLM", {}),
    "granite": ("GraniteConfig", "GraniteForCausalLM", {}),
    "smollm3": ("SmolLM3Config", "SmolLM3ForCausalLM", {"pad_token_id": None, "bos_token_id": 1, "eos_token_id": 2}),
    "stablelm": ("StableLmConfig", "StableLmForCausalLM", {}),
    "opt": ("OPTConfig", "OPTForCausalLM", {"ffn_dim": WIDTH, "word_embed_proj_dim": HIDDEN}),
    "bert": ("BertConfig", "BertModel", {}),
}

MOE_FAMILIES: dict[str, tuple[str, str, dict[str, Any]]] = {
    "mixtral": ("MixtralConfig", "MixtralForCausalLM", {**MOE, "intermediate_size": EXPERT_WIDTH}),
    "qwen2_moe": ("Qwen2MoeConfig", "Qwen2MoeForCausalLM", {"num_experts": N_EXPERTS, "num_experts_per_tok": TOP_K,
                  "moe_intermediate_size": EXPERT_WIDTH, "shared_expert_intermediate_size": 48}),
    "qwen3_moe": ("Qwen3MoeConfig", "Qwen3MoeForCausalLM", {"num_experts": N_EXPERTS, "num_experts_per_tok": TOP_K,
                  "moe_intermediate_size": EXPERT_WIDTH, "head_dim": 16}),
    "olmoe": ("OlmoeConfig", "OlmoeForCausalLM", {"num_experts": N_EXPERTS, "num_experts_per_tok": TOP_K,
              "intermediate_size": EXPERT_WIDTH}),
    "deepseek_v2": ("DeepseekV2Config", "DeepseekV2ForCausalLM", {"n_routed_experts": N_EXPERTS,
                    "num_experts_per_tok": TOP_K, "moe_intermediate_size": EXPERT_WIDTH, "n_shared_experts": 1,
                    "first_k_dense_replace": 1, "kv_lora_rank": 16, "q_lora_rank": None, "qk_rope_head_dim": 8,
                    "qk_nope_head_dim": 8, "v_head_dim": 16, "n_group": 1, "topk_group": 1,
                    "num_key_value_heads": 4}),
    "deepseek_v3": ("DeepseekV3Config", "DeepseekV3ForCausalLM", {"n_routed_experts": N_EXPERTS,
                    "num_experts_per_tok": TOP_K, "moe_intermediate_size": EXPERT_WIDTH, "n_shared_experts": 1,
                    "first_k_dense_replace": 1, "kv_lora_rank": 16, "q_lora_rank": 16, "qk_rope_head_dim": 8,
                    "qk_nope_head_dim": 8, "v_head_dim": 16, "n_group": 1, "topk_group": 1,
                    "num_key_value_heads": 4}),
    "granitemoe": ("GraniteMoeConfig", "GraniteMoeForCausalLM", {**MOE, "intermediate_size": EXPERT_WIDTH}),
    "phimoe": ("PhimoeConfig", "PhimoeForCausalLM", {**MOE, "intermediate_size": EXPERT_WIDTH}),
    "gpt_oss": ("GptOssConfig", "GptOssForCausalLM", {**MOE, "intermediate_size": EXPERT_WIDTH, "head_dim": 16,
                "layer_types": ["full_attention"] * N_LAYERS}),
    "llama4": ("Llama4TextConfig", "Llama4ForCausalLM", {**MOE, "intermediate_size": EXPERT_WIDTH,
               "intermediate_size_mlp": WIDTH, "interleave_moe_layer_step": 2, "head_dim": 16}),
    "gemma4": ("Gemma4TextConfig", "Gemma4ForCausalLM", {"enable_moe_block": True, "num_experts": N_EXPERTS,
               "top_k_experts": TOP_K, "moe_intermediate_size": EXPERT_WIDTH, "head_dim": 16}),
}

ENCODER_DECODER: dict[str, tuple[str, str, dict[str, Any]]] = {
    "t5": ("T5Config", "T5ForConditionalGeneration", {"d_model": HIDDEN, "d_ff": WIDTH, "num_layers": N_LAYERS,
           "num_heads": 4, "d_kv": 16}),
    "bart": ("BartConfig", "BartForConditionalGeneration", {"d_model": HIDDEN, "encoder_ffn_dim": WIDTH,
             "decoder_ffn_dim": WIDTH, "encoder_layers": N_LAYERS, "decoder_layers": N_LAYERS,
             "encoder_attention_heads": 4, "decoder_attention_heads": 4}),
}


def make_config(family: str) -> Any:
    import transformers

    table = {**DENSE, **MOE_FAMILIES, **ENCODER_DECODER}
    config_cls, _, overrides = table[family]
    kwargs = {**COMMON, **overrides}
    if family in ENCODER_DECODER or family == "gpt2":
        for key in ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                    "num_key_value_heads", "max_position_embeddings"):
            kwargs.pop(key, None)
    return getattr(transformers, config_cls)(**kwargs)


def make_model(family: str, seed: int = 0) -> Any:
    """A tiny random-initialised model of ``family`` in eval mode (float32, CPU)."""
    import torch
    import transformers

    table = {**DENSE, **MOE_FAMILIES, **ENCODER_DECODER}
    config = make_config(family)
    torch.manual_seed(seed)
    model = getattr(transformers, table[family][1])(config)
    model.eval()
    _spread_router(model)
    return model


def _spread_router(model: Any) -> None:
    """Random init gives near-uniform routing; scale router weights so experts are picked unevenly."""
    import torch

    with torch.no_grad():
        for name, param in model.named_parameters():
            if any(part in name for part in ("mlp.gate.weight", "router.weight", "router.proj.weight")):
                param.mul_(20.0)
