"""VideoViT: the UMT video transformer (tubelet patches, no CLS token, q/v-bias attention on SDPA)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from timm.layers import DropPath, Mlp, trunc_normal_
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from umt.models.config import ModelConfig
from umt.models.pos_embed import extended_table, interpolated_table, resized_table, sinusoid_table


@dataclass
class EncoderOutput:
    """What the encoder returns.

    Attributes:
        tokens: last-block tokens after the final norm, ``[B, N_vis, C]`` (N_vis = N without a mask).
        layers: the requested block outputs in ascending block order, each through the final norm,
            ``[B, N_vis, C]`` each.
        grid: token grid ``(T, h, w)`` of the input (before masking).
    """

    tokens: Tensor
    layers: tuple[Tensor, ...]
    grid: tuple[int, int, int]

    def mean(self, per_frame: bool = False) -> Tensor:
        """Token mean ``[B, C]``, or per frame ``[B, T, C]`` (needs every token: no mask)."""
        if not per_frame:
            return self.tokens.mean(1)
        frames, h, w = self.grid
        if self.tokens.shape[1] != frames * h * w:
            raise ValueError("per-frame pooling needs all tokens (no mask)")
        return self.tokens.reshape(self.tokens.shape[0], frames, h * w, -1).mean(2)


class PatchEmbed3D(nn.Module):
    """Tubelet patch embedding: ``[B, 3, T, H, W] -> [B, T/t * H/p * W/p, C]`` in (t, h, w) order."""

    def __init__(self, in_chans: int, embed_dim: int, patch_size: int, tubelet_size: int) -> None:
        super().__init__()
        kernel = (tubelet_size, patch_size, patch_size)
        self.proj = nn.Conv3d(in_chans, embed_dim, kernel_size=kernel, stride=kernel)

    def forward(self, video: Tensor) -> Tensor:
        return self.proj(video).flatten(2).transpose(1, 2)


class Attention(nn.Module):
    """Multi-head self-attention with one bias-free ``qkv`` projection plus learnable ``q_bias`` and
    ``v_bias`` (k unbiased), computed by ``scaled_dot_product_attention``. ``[B, N, C] -> [B, N, C]``."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=False)
        self.q_bias = nn.Parameter(torch.zeros(dim)) if qkv_bias else None
        self.v_bias = nn.Parameter(torch.zeros(dim)) if qkv_bias else None
        self.proj = nn.Linear(dim, dim)

    def qkv_heads(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Project ``[B, N, C]`` to q, k, v of shape ``[B, heads, N, C/heads]`` each."""
        bias = None
        if self.q_bias is not None and self.v_bias is not None:
            bias = torch.cat((self.q_bias, torch.zeros_like(self.q_bias), self.v_bias))
        b, n, _ = x.shape
        qkv = F.linear(x, self.qkv.weight, bias).reshape(b, n, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
        return qkv[0], qkv[1], qkv[2]

    def forward(self, x: Tensor) -> Tensor:
        q, k, v = self.qkv_heads(x)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).flatten(2))


class Block(nn.Module):
    """Pre-norm transformer block: ``x + DropPath(Attn(LN(x)))``, then ``x + DropPath(MLP(LN(x)))``."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, qkv_bias: bool, norm_eps: float,
                 drop_path: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.attn = Attention(dim, num_heads, qkv_bias)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class VideoViT(nn.Module):
    """The UMT video encoder: tubelet embedding, fixed sinusoid positions, pre-norm blocks, optional
    final LayerNorm. Runs on all tokens or only on the visible ones of a mask."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        self.patch_embed = PatchEmbed3D(c.in_chans, c.embed_dim, c.patch_size, c.tubelet_size)
        rates = [c.drop_path_rate * i / max(c.depth - 1, 1) for i in range(c.depth)]
        self.blocks = nn.ModuleList(
            Block(c.embed_dim, c.num_heads, c.mlp_ratio, c.qkv_bias, c.norm_eps, rate) for rate in rates
        )
        self.norm = nn.LayerNorm(c.embed_dim, eps=c.norm_eps) if c.final_norm else nn.Identity()
        self.register_buffer("pos_embed", self._video_table()[None], persistent=c.pos_embed == "checkpoint")
        if c.pos_embed == "extend":
            image_table = sinusoid_table(c.grid[0] * c.grid[1], c.embed_dim)[None]
            self.register_buffer("image_pos_embed", image_table, persistent=False)
        else:
            self.image_pos_embed = None
        self.apply(_init_weights)

    def _video_table(self) -> Tensor:
        c = self.config
        frames = c.num_frames // c.tubelet_size
        if c.pos_embed == "extend":
            return extended_table(frames, c.grid, c.embed_dim, c.ckpt_num_frames)
        base_side = 224 // c.patch_size  # the official tables start from the 8 x 224px pre-training grid
        return interpolated_table(frames, c.grid, c.embed_dim, base_frames=8, base_grid=(base_side, base_side))

    def position_table(self, grid: tuple[int, int, int]) -> Tensor:
        """The position table ``[1, T*h*w, C]`` added to the tokens of an input of token grid ``(T, h, w)``: the
        image table for one frame of a stage-2 encoder, the table resized to ``(h, w)`` with the ``online``
        policy, else the model's table."""
        if grid[0] == 1 and self.image_pos_embed is not None:
            return self.image_pos_embed
        if self.config.pos_embed == "online":
            return resized_table(self.pos_embed[0], grid[0], grid[1:], grid[0], self.config.grid)[None]
        return self.pos_embed

    def check_input(self, video: Tensor) -> None:
        """Raise ``ValueError`` unless ``video`` is ``[B, in_chans, T, img_size, img_size]`` with T the
        configured frames (or 1, an image, for stage-2 encoders); with the ``online`` table, any H and W that
        are multiples of ``patch_size``."""
        c = self.config
        if c.pos_embed == "online":
            if video.ndim != 5 or video.shape[1:3] != (c.in_chans, c.num_frames) or any(
                    side % c.patch_size for side in video.shape[3:]):
                raise ValueError(f"expected a video [B, {c.in_chans}, {c.num_frames}, H, W] with H and W multiples "
                                 f"of {c.patch_size}, got {list(video.shape)}")
            return
        frames_ok = video.ndim == 5 and (
            video.shape[2] == c.num_frames or (video.shape[2] == 1 and self.image_pos_embed is not None)
        )
        if not frames_ok or tuple(video.shape[1:2] + video.shape[3:]) != (c.in_chans, c.img_size, c.img_size):
            images = " (or 1 frame: an image)" if self.image_pos_embed is not None else ""
            raise ValueError(
                f"expected a video [B, {c.in_chans}, {c.num_frames}, {c.img_size}, {c.img_size}]{images}, "
                f"got {list(video.shape)}; build the model with num_frames/img_size matching the input"
            )

    def forward(self, video: Tensor, mask: Tensor | None = None,
                return_layers: Sequence[int] = ()) -> EncoderOutput:
        """Encode ``video [B, 3, T, H, W]``.

        Args:
            mask: optional bool ``[B, N]``, True = masked (dropped); every sample must keep the same count.
            return_layers: block indices (0-based, negative allowed) whose outputs are also returned.
        """
        self.check_input(video)
        x = self.patch_embed(video)
        grid = (video.shape[2] // self.config.tubelet_size, video.shape[3] // self.config.patch_size,
                video.shape[4] // self.config.patch_size)
        x = x + self.position_table(grid).to(dtype=x.dtype)
        batch, num_tokens, dim = x.shape
        if mask is not None:
            if mask.shape != (batch, num_tokens) or mask.dtype != torch.bool:
                raise ValueError(f"mask must be bool [{batch}, {num_tokens}], got {mask.dtype} {list(mask.shape)}")
            x = x[~mask].reshape(batch, -1, dim)
        wanted = {i % len(self.blocks) for i in return_layers}
        layers = []
        for index, block in enumerate(self.blocks):
            if self.training and index < self.config.checkpoint_blocks:
                x = checkpoint(block, x, use_reentrant=False)
            else:
                x = block(x)
            if index in wanted:
                layers.append(x)
        return EncoderOutput(self.norm(x), tuple(self.norm(layer) for layer in layers), grid)


def _init_weights(module: nn.Module) -> None:
    """Official fine-tuning init: Linear trunc-normal(0.02) with zero bias, LayerNorm 1/0."""
    if isinstance(module, nn.Linear):
        trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
