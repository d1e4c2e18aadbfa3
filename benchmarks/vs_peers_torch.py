"""The PyTorch worker of ``vs_peers.py``: open_clip or transformers, one train-step timing.

    /work/peers-venv/bin/python benchmarks/vs_peers_torch.py '{"impl": "open_clip", ...}'

Runs in the peers' environment (torch, open_clip, transformers; no JAX). Builds the
architecture given in the spec with random weights (``open_clip.CLIP`` with
quick_gelu, or ``transformers.CLIPModel(CLIPConfig(...))``), AdamW over the parameters
that require gradients (the ``locked`` variant freezes the image tower and its
projection), and times forward + CLIP loss + backward + ``optimizer.step()`` on one
fixed random batch, under ``torch.autocast`` for bf16. Prints one ``RESULT`` line.
"""

from __future__ import annotations

import json
import sys

import torch
from step_timer import median_step_seconds, report


def build_open_clip(arch: dict) -> tuple[torch.nn.Module, object]:
    import open_clip

    img, txt = arch["image"], arch["text"]
    model = open_clip.CLIP(
        embed_dim=arch["embed_dim"],
        vision_cfg=open_clip.model.CLIPVisionCfg(
            layers=img["depth"],
            width=img["width"],
            head_width=img["width"] // img["num_heads"],
            patch_size=img["patch_size"],
            image_size=img["image_size"],
        ),
        text_cfg=open_clip.model.CLIPTextCfg(
            context_length=txt["context_length"],
            vocab_size=txt["vocab_size"],
            width=txt["width"],
            heads=txt["num_heads"],
            layers=txt["depth"],
        ),
        quick_gelu=True,
    )
    clip_loss = open_clip.ClipLoss()

    def loss(images: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        return clip_loss(*model(images, tokens))

    return model, loss


def hf_tower_config(tower: dict) -> dict:
    """The keys transformers' CLIP text and vision configs share, from one tower's spec."""
    return dict(
        hidden_size=tower["width"],
        intermediate_size=tower["mlp_dim"],
        num_hidden_layers=tower["depth"],
        num_attention_heads=tower["num_heads"],
        hidden_act="quick_gelu",
    )


def build_transformers(arch: dict) -> tuple[torch.nn.Module, object]:
    from transformers import CLIPConfig, CLIPModel

    img, txt = arch["image"], arch["text"]
    config = CLIPConfig(
        text_config=dict(
            hf_tower_config(txt),
            vocab_size=txt["vocab_size"],
            max_position_embeddings=txt["context_length"],
            eos_token_id=txt["eos_id"],
        ),
        vision_config=dict(
            hf_tower_config(img), image_size=img["image_size"], patch_size=img["patch_size"]
        ),
        projection_dim=arch["embed_dim"],
    )
    model = CLIPModel._from_config(config, attn_implementation="sdpa")

    def loss(images: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        return model(input_ids=tokens, pixel_values=images, return_loss=True).loss

    return model, loss


def lock_image_tower(impl: str, model: torch.nn.Module) -> None:
    """Freezes the image tower and its projection (open_clip's ``lock_image_tower``)."""
    if impl == "open_clip":
        model.lock_image_tower()
        return
    for module in (model.vision_model, model.visual_projection):
        module.requires_grad_(False)


def matmul_peak(dtype: torch.dtype, device: str, n: int, repeats: int = 5) -> float:
    """Best FLOP/s of an ``[n, n] @ [n, n]`` torch matmul in ``dtype`` (after warm-up)."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    seconds = median_step_seconds(lambda: a @ b, lambda _: sync(), 2, repeats)
    return 2 * n**3 / seconds


def main(spec: dict) -> None:
    torch.manual_seed(0)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    arch = spec["arch"]
    build = build_open_clip if spec["impl"] == "open_clip" else build_transformers
    model, loss_fn = build(arch)
    if spec["variant"] == "locked":
        lock_image_tower(spec["impl"], model)
    trainable = [p for p in model.parameters() if p.requires_grad]
    counts = {
        "params": sum(p.numel() for p in model.parameters()),
        "trainable_params": sum(p.numel() for p in trainable),
    }
    if spec.get("count_only"):
        report(counts)
        return
    model.to(device).train()
    adamw = spec["adamw"]
    opt = torch.optim.AdamW(
        trainable,
        lr=adamw["lr"],
        betas=(adamw["b1"], adamw["b2"]),
        eps=adamw["eps"],
        weight_decay=adamw["weight_decay"],
    )
    gen = torch.Generator().manual_seed(spec.get("seed", 0))
    batch, size, txt = spec["batch"], arch["image"]["image_size"], arch["text"]
    images = torch.randn(batch, 3, size, size, generator=gen).to(device)
    tokens = torch.randint(1, txt["vocab_size"] - 1, (batch, txt["context_length"]), generator=gen)
    tokens[:, -1] = txt["eos_id"]
    tokens = tokens.to(device)
    dtype = torch.bfloat16 if spec["precision"] == "bf16" else torch.float32

    def step() -> torch.Tensor:
        with torch.autocast(device, dtype=torch.bfloat16, enabled=dtype == torch.bfloat16):
            loss = loss_fn(images, tokens)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss

    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    step_s = median_step_seconds(step, lambda _: sync(), spec["warmup"], spec["steps"])
    n = spec.get("peak_n") or (8192 if device == "cuda" else 2048)
    report(
        {
            **counts,
            "step_s": step_s,
            "compile_s": 0.0,
            "peak_flops": matmul_peak(dtype, device, n),
            "device": torch.cuda.get_device_name() if device == "cuda" else "cpu",
            "version": f"torch {torch.__version__}",
        }
    )


if __name__ == "__main__":
    main(json.loads(sys.argv[1]))
