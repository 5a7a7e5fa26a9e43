"""A compact ViT with timm's parameter names, and loading of local timm or Hugging Face weights.

The names follow ``timm.models.vision_transformer.VisionTransformer`` (``patch_embed.proj``,
``cls_token``, ``pos_embed``, ``blocks.N.norm1``, ``blocks.N.attn.qkv``, ``blocks.N.attn.proj``,
``blocks.N.norm2``, ``blocks.N.mlp.fc1``/``fc2``, ``norm``, ``head``), so a timm state dict
loads as is. timm itself is not used: it depends on torchvision.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ViTConfig:
    dim: int
    depth: int
    heads: int
    patch: int = 16
    mlp_ratio: float = 4.0


#: ViT-Ti/16, ViT-S/16 and ViT-B/16 as in timm; "micro" is a 2-block model for tests and CPU demos.
VARIANTS = {
    "tiny": ViTConfig(192, 12, 3),
    "small": ViTConfig(384, 12, 6),
    "base": ViTConfig(768, 12, 12),
    "micro": ViTConfig(64, 2, 2, patch=8),
}


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        x = F.scaled_dot_product_attention(q, k, v)
        return self.proj(x.transpose(1, 2).reshape(b, n, d))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(dim, hidden), nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class Block(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_ratio: float, eps: float):
        super().__init__()
        self.norm1, self.attn = nn.LayerNorm(dim, eps=eps), Attention(dim, heads)
        self.norm2, self.mlp = nn.LayerNorm(dim, eps=eps), Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class PatchEmbed(nn.Module):
    def __init__(self, patch: int, dim: int):
        super().__init__()
        self.proj = nn.Conv2d(3, dim, patch, stride=patch)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class ViT(nn.Module):
    """``ViT(VARIANTS["tiny"], image_size=224, num_classes=10)``: class-token ViT, pre-norm blocks."""

    def __init__(self, cfg: ViTConfig, image_size: int, num_classes: int, eps: float = 1e-6):
        super().__init__()
        if image_size % cfg.patch:
            raise ValueError(f"image_size={image_size} is not a multiple of the patch size {cfg.patch}")
        self.cfg, self.grid = cfg, image_size // cfg.patch
        self.patch_embed = PatchEmbed(cfg.patch, cfg.dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, cfg.dim))
        self.pos_embed = nn.Parameter(torch.randn(1, 1 + self.grid ** 2, cfg.dim) * 0.02)
        self.blocks = nn.Sequential(*[Block(cfg.dim, cfg.heads, cfg.mlp_ratio, eps) for _ in range(cfg.depth)])
        self.norm = nn.LayerNorm(cfg.dim, eps=eps)
        self.head = nn.Linear(cfg.dim, num_classes)

    def forward_features(self, x: Tensor) -> Tensor:
        x = self.patch_embed(x)
        x = torch.cat([self.cls_token.expand(len(x), -1, -1), x], dim=1) + self.pos_embed
        return self.norm(self.blocks(x))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.forward_features(x)[:, 0])


# -- pretrained weights -----------------------------------------------------------------------------

_HF_RENAMES = [
    (r"^embeddings\.cls_token$", "cls_token"),
    (r"^embeddings\.position_embeddings$", "pos_embed"),
    (r"^embeddings\.patch_embeddings\.projection\.", "patch_embed.proj."),
    (r"^encoder\.layer\.(\d+)\.layernorm_before\.", r"blocks.\1.norm1."),
    (r"^encoder\.layer\.(\d+)\.layernorm_after\.", r"blocks.\1.norm2."),
    (r"^encoder\.layer\.(\d+)\.attention\.output\.dense\.", r"blocks.\1.attn.proj."),
    (r"^encoder\.layer\.(\d+)\.intermediate\.dense\.", r"blocks.\1.mlp.fc1."),
    (r"^encoder\.layer\.(\d+)\.output\.dense\.", r"blocks.\1.mlp.fc2."),
    # transformers >= 5 names (what ViTModel.state_dict() gives there)
    (r"^layers\.(\d+)\.layernorm_before\.", r"blocks.\1.norm1."),
    (r"^layers\.(\d+)\.layernorm_after\.", r"blocks.\1.norm2."),
    (r"^layers\.(\d+)\.attention\.o_proj\.", r"blocks.\1.attn.proj."),
    (r"^layers\.(\d+)\.mlp\.(fc1|fc2)\.", r"blocks.\1.mlp.\2."),
    (r"^layernorm\.", "norm."),
    (r"^classifier\.", "head."),
]
_HF_QKV = re.compile(r"^(?:encoder\.layer|layers)\.(\d+)\.attention\.(?:attention\.)?"
                     r"(query|key|value|q_proj|k_proj|v_proj)\.(weight|bias)$")
_QKV_PART = {"q_proj": "query", "k_proj": "key", "v_proj": "value"}


def from_hf(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """Hugging Face ``ViTModel`` / ``ViTForImageClassification`` keys -> timm keys (q, k, v fused).

    Both the checkpoint files' names (``encoder.layer.N.attention.attention.query``) and
    transformers 5's module names (``layers.N.attention.q_proj``) are understood.
    """
    out: dict[str, Tensor] = {}
    qkv: dict[tuple[str, str], dict[str, Tensor]] = {}
    for key, value in state.items():
        key = key.removeprefix("vit.")
        m = _HF_QKV.match(key)
        if m:
            qkv.setdefault((m[1], m[3]), {})[_QKV_PART.get(m[2], m[2])] = value
            continue
        for pattern, repl in _HF_RENAMES:
            if re.match(pattern, key):
                out[re.sub(pattern, repl, key)] = value
                break
    for (layer, kind), parts in qkv.items():
        out[f"blocks.{layer}.attn.qkv.{kind}"] = torch.cat([parts["query"], parts["key"], parts["value"]])
    return out


def resize_pos_embed(pos: Tensor, grid: int) -> Tensor:
    """Bicubic resize of the patch positions to ``grid`` x ``grid``; the class token's is kept."""
    cls, patches = pos[:, :1], pos[:, 1:]
    old = int(round(patches.shape[1] ** 0.5))
    patches = patches.reshape(1, old, old, -1).permute(0, 3, 1, 2).float()
    patches = F.interpolate(patches, size=(grid, grid), mode="bicubic", align_corners=False)
    return torch.cat([cls, patches.permute(0, 2, 3, 1).reshape(1, grid * grid, -1).to(pos.dtype)], dim=1)


def read_state_dict(path: Path) -> dict[str, Tensor]:
    if not path.is_file():
        raise FileNotFoundError(f"--pretrained {path}: no such file; pass a local timm or Hugging Face "
                                "ViT state dict (.pth/.bin/.safetensors), e.g. timm's ViT-Ti/16: hf download "
                                "timm/vit_tiny_patch16_224.augreg_in21k_ft_in1k model.safetensors --local-dir "
                                "weights/vit_tiny, then --pretrained weights/vit_tiny/model.safetensors")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file  # installed with transformers; only needed here
        return load_file(str(path))
    state = torch.load(path, map_location="cpu", weights_only=True)
    for wrapper in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
            state = state[wrapper]
    return state


def load_pretrained(model: ViT, path: Path) -> None:
    """Load a timm or HF ViT state dict into ``model``: pos_embed resized, a head of another size skipped."""
    state = read_state_dict(path)
    if any(k.startswith(("embeddings.", "vit.", "encoder.", "layers.")) for k in state):
        state = from_hf(state)
    own = model.state_dict()
    if "pos_embed" in state and state["pos_embed"].shape != own["pos_embed"].shape:
        state["pos_embed"] = resize_pos_embed(state["pos_embed"], model.grid)
    for key in ("head.weight", "head.bias"):
        if key in state and state[key].shape != own[key].shape:
            logger.info("%s: %s has shape %s, the model %s; keeping a fresh head", path, key,
                        tuple(state[key].shape), tuple(own[key].shape))
            del state[key]
    wrong = [k for k, v in own.items() if not k.startswith("head.") and (k not in state or state[k].shape != v.shape)]
    if wrong:
        raise ValueError(f"{path} lacks {len(wrong)} weights of a ViT with dim {model.cfg.dim}, depth "
                         f"{model.cfg.depth}, patch {model.cfg.patch} (missing or of another shape, first: "
                         f"{wrong[:3]}); pick the matching --vit variant")
    _, unexpected = model.load_state_dict(state, strict=False)
    if unexpected:
        logger.info("%s: ignored %d keys not in this ViT (first: %s)", path, len(unexpected), unexpected[:3])
