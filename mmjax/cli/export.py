"""``mmjax export``: a run as a Hugging Face directory and / or serving artifacts.

mmjax export --workdir RUN --to-hf DIR [--push-to-hub REPO]   (transformers CLIP / SigLIP)
mmjax export --workdir RUN --stablehlo DIR [--platforms cpu,cuda,tpu]   (jax.export files)
"""

from __future__ import annotations

import argparse
from typing import Any


def add_parser(sub: Any) -> None:
    p = sub.add_parser("export", help="export a run: --to-hf DIR (transformers), --stablehlo DIR")
    p.add_argument("--workdir", required=True, help="run workdir, checkpoints/ or a step dir")
    p.add_argument("--to-hf", dest="to_hf", help="write a complete Hugging Face directory")
    p.add_argument(
        "--push-to-hub",
        dest="push_to_hub",
        help="with --to-hf: upload the directory to this Hub repo (huggingface_hub; network)",
    )
    p.add_argument("--stablehlo", help="write encode_image/encode_text .jax_export + manifest")
    p.add_argument(
        "--platforms", default="", help="--stablehlo lowering targets (default: this backend)"
    )


def push_to_hub(directory: Any, repo: str) -> str:
    """Uploads ``directory`` to the Hub repo ``repo`` (created if missing); the only network
    use of ``mmjax export``, and only when ``--push-to-hub`` asks for it."""
    from huggingface_hub import HfApi  # the [hf] extra

    api = HfApi()
    api.create_repo(repo, exist_ok=True)
    info = api.upload_folder(folder_path=str(directory), repo_id=repo)
    return str(getattr(info, "commit_url", info))


def main(args: argparse.Namespace, overrides: list[str]) -> int:
    from mmjax.config import ConfigError

    if overrides:
        raise ConfigError("export takes no --config.KEY overrides (it exports the run as saved)")
    if not args.to_hf and not args.stablehlo:
        raise ConfigError("export needs --to-hf DIR and/or --stablehlo DIR")
    if args.push_to_hub and not args.to_hf:
        raise ConfigError("--push-to-hub needs --to-hf DIR")
    if args.to_hf:
        from mmjax.hf.run_export import export_run

        out = export_run(args.workdir, args.to_hf)
        print(f"wrote {out}")
        if args.push_to_hub:
            print(f"pushed to {push_to_hub(out, args.push_to_hub)}")
    if args.stablehlo:
        from mmjax.inference import load
        from mmjax.inference.export_stablehlo import export_pipeline

        platforms = [p for p in args.platforms.split(",") if p] or None
        manifest = export_pipeline(load(args.workdir), args.stablehlo, platforms)
        print(f"wrote {args.stablehlo} ({', '.join(manifest['functions'])})")
    return 0
