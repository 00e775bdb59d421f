"""LLM architecture, with the derived sizes the roofline needs.

Parameter counts are in billions (``_b``); everything derived is per token.
"""

from __future__ import annotations

from functools import cached_property

from pydantic import Field, model_validator

from rackplan.models.base import Confidence, Frozen


class LLM(Frozen):
    """A transformer LLM, dense or mixture-of-experts, GQA or MLA attention."""

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]*$")
    name: str
    layers: int = Field(gt=0)
    d_model: int = Field(gt=0)
    n_heads: int = Field(gt=0)
    n_kv_heads: int = Field(gt=0)
    head_dim: int = Field(gt=0)
    params_total_b: float = Field(gt=0)
    """N_tot: all weights, billions."""
    params_active_b: float = Field(gt=0)
    """N_act: weights used per token (MoE: shared + top-k experts), billions."""
    experts_total: int = Field(default=0, ge=0)
    """E: routed experts per MoE layer (0 for a dense model)."""
    experts_routed: int = Field(default=0, ge=0)
    """k: routed experts each token activates."""
    experts_shared: int = Field(default=0, ge=0)
    """Always-active shared experts (counted in the dense part)."""
    mla_kv_lora_rank: int | None = Field(default=None, gt=0)
    """MLA latent KV width (DeepSeek); None for GQA."""
    mla_rope_dim: int | None = Field(default=None, gt=0)
    """MLA decoupled RoPE key width; None for GQA."""
    sliding_window_layers: int = Field(default=0, ge=0)
    """Layers whose attention sees only the last ``sliding_window_tokens`` tokens."""
    sliding_window_tokens: int | None = Field(default=None, gt=0)
    source: str = Field(min_length=1)
    confidence: Confidence
    notes: str = ""

    @model_validator(mode="after")
    def _check_consistency(self) -> LLM:
        if self.params_active_b > self.params_total_b:
            raise ValueError("params_active_b must not exceed params_total_b")
        if (self.experts_total == 0) != (self.experts_routed == 0):
            raise ValueError("experts_total and experts_routed are both 0 (dense) or both > 0")
        if self.experts_routed > self.experts_total:
            raise ValueError("experts_routed must not exceed experts_total")
        if self.is_moe and self.params_active_b >= self.params_total_b:
            raise ValueError("a MoE model must have params_active_b < params_total_b")
        if (self.mla_kv_lora_rank is None) != (self.mla_rope_dim is None):
            raise ValueError("give both mla_kv_lora_rank and mla_rope_dim, or neither")
        if self.sliding_window_layers > self.layers:
            raise ValueError("sliding_window_layers must not exceed layers")
        if self.sliding_window_layers and self.sliding_window_tokens is None:
            raise ValueError("sliding_window_layers > 0 needs sliding_window_tokens")
        return self

    @property
    def is_moe(self) -> bool:
        return self.experts_total > 0

    @property
    def is_mla(self) -> bool:
        return self.mla_kv_lora_rank is not None

    @cached_property
    def routed_fraction(self) -> float:
        """k/E: the share of routed experts one token activates (0 for dense)."""
        return self.experts_routed / self.experts_total if self.is_moe else 0.0

    @cached_property
    def expert_params_b(self) -> float:
        """Weights in routed experts, billions.

        From N_act = N_dense + (k/E)·N_exp and N_tot = N_dense + N_exp:
        N_exp = (N_tot − N_act) / (1 − k/E). Zero for a dense model.
        """
        if not self.is_moe:
            return 0.0
        return (self.params_total_b - self.params_active_b) / (1.0 - self.routed_fraction)

    @cached_property
    def dense_params_b(self) -> float:
        """Weights every token reads (attention, embeddings, shared experts): N_tot − N_exp."""
        return self.params_total_b - self.expert_params_b

    @cached_property
    def kv_elements_per_token_per_layer(self) -> int:
        """KV cache elements one token stores in one layer.

        GQA: 2·n_kv_heads·head_dim (keys and values). MLA: kv_lora_rank + rope_dim
        (one shared latent plus the decoupled RoPE key).
        """
        if self.is_mla:
            return int(self.mla_kv_lora_rank) + int(self.mla_rope_dim)
        return 2 * self.n_kv_heads * self.head_dim

    @cached_property
    def attention_dims(self) -> tuple[int, int]:
        """(q·k width, v width) per head for the attention FLOPs.

        GQA: (head_dim, head_dim). MLA in absorbed form attends over the latent:
        (kv_lora_rank + rope_dim, kv_lora_rank).
        """
        if self.is_mla:
            rank = int(self.mla_kv_lora_rank)
            return rank + int(self.mla_rope_dim), rank
        return self.head_dim, self.head_dim

    @cached_property
    def full_attention_layers(self) -> int:
        return self.layers - self.sliding_window_layers
