"""``mmjax predict``: a trained model on files, one JSON line per input (stdout or ``--out``).

mmjax predict zero-shot --workdir RUN --images DIR_OR_GLOB --labels a,b,c [--templates imagenet]
mmjax predict retrieve  --workdir RUN --texts FILE --images DIR_OR_GLOB [--k 5]
mmjax predict caption   --workdir RUN --images ...           (captioning models)
mmjax predict answer    --workdir RUN --images ... --questions FILE   (VQA models)
mmjax predict generate  --workdir RUN --prompts FILE [--out-dir DIR] [--guidance S]
                        (text-to-image: one PNG per prompt + grid.png, default RUN/samples/)

``--model PATH`` takes a checkpoint step or HF directory instead of ``--workdir``.
"""

from __future__ import annotations

import argparse
import glob
import json
import sys
from pathlib import Path
from typing import Any

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}


def add_parser(sub: Any) -> None:
    p = sub.add_parser("predict", help="run a trained model on image / text files (JSONL)")
    kinds = p.add_subparsers(dest="predict_command", required=True)

    def common(name: str, help: str) -> argparse.ArgumentParser:
        q = kinds.add_parser(name, help=help)
        src = q.add_mutually_exclusive_group(required=True)
        src.add_argument("--workdir", help="run workdir (latest checkpoint)")
        src.add_argument("--model", help="checkpoint step directory or HF model directory")
        q.add_argument("--images", required=True, help="a directory of images or a glob")
        q.add_argument("--out", help="write the JSON lines here instead of stdout")
        q.add_argument("--batch-size", dest="batch_size", type=int, default=32)
        return q

    zs = common("zero-shot", help="zero-shot classification: top label and probabilities")
    labels = zs.add_mutually_exclusive_group(required=True)
    labels.add_argument("--labels", help="comma-separated class names")
    labels.add_argument("--labels-file", dest="labels_file", help="one class name per line")
    zs.add_argument("--templates", help="'imagenet', 'simple_imagenet' or one 'a photo of {}.'")
    rt = common("retrieve", help="for each text (one per line of --texts) its best images")
    rt.add_argument("--texts", required=True, help="file with one query text per line")
    rt.add_argument("--k", type=int, default=5)
    common("caption", help="caption each image").add_argument("--beam-size", type=int, default=1)
    gen = kinds.add_parser("generate", help="text-to-image: a PNG per prompt")
    src = gen.add_mutually_exclusive_group(required=True)
    src.add_argument("--workdir", help="run workdir (latest checkpoint)")
    src.add_argument("--model", help="checkpoint step directory")
    gen.add_argument("--prompts", required=True, help="file with one caption per line")
    gen.add_argument("--out-dir", dest="out_dir", help="PNG directory (default RUN/samples)")
    gen.add_argument("--out", help="write the JSON lines here instead of stdout")
    gen.add_argument("--guidance", type=float, help="guidance scale (default: the run's; 0 off)")
    gen.add_argument("--seed", type=int, default=0)
    gen.add_argument("--batch-size", dest="batch_size", type=int, default=32)
    common("answer", help="answer questions about images").add_argument(
        "--questions", required=True, help="file with one question per image, in image order"
    )


def image_paths(spec: str) -> list[Path]:
    """A directory's image files (sorted) or a glob's matches; an error when there are none."""
    path = Path(spec)
    if path.is_dir():
        paths = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    else:
        paths = sorted(Path(p) for p in glob.glob(spec, recursive=True) if Path(p).is_file())
    if not paths:
        raise FileNotFoundError(f"--images {spec}: no image files ({sorted(IMAGE_SUFFIXES)})")
    return paths


def _lines(path: str, flag: str) -> list[str]:
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{flag} {path}: no such file")
    lines = [line.strip() for line in p.read_text().splitlines() if line.strip()]
    if not lines:
        raise ValueError(f"{flag} {path}: no non-empty lines")
    return lines


def predict_rows(args: argparse.Namespace) -> list[dict[str, Any]]:
    if args.predict_command == "generate":
        from mmjax.inference.generate_images import generate_images

        run = args.workdir or args.model
        out_dir = args.out_dir or Path(args.workdir or Path(args.model).parent.parent) / "samples"
        prompts = _lines(args.prompts, "--prompts")
        return generate_images(run, prompts, out_dir, args.guidance, args.seed, args.batch_size)
    from mmjax.inference import load

    pipe = load(args.workdir or args.model, batch_size=args.batch_size)
    paths = image_paths(args.images)
    kind = args.predict_command
    if kind == "zero-shot":
        labels = (
            [x.strip() for x in args.labels.split(",") if x.strip()]
            if args.labels
            else _lines(args.labels_file, "--labels-file")
        )
        probs = pipe.zero_shot(paths, labels, templates=args.templates)
        return [
            {
                "image": str(p),
                "label": labels[int(row.argmax())],
                "score": float(row.max()),
                "probs": {lab: float(v) for lab, v in zip(labels, row, strict=True)},
            }
            for p, row in zip(paths, probs, strict=True)
        ]
    if kind == "retrieve":
        texts = _lines(args.texts, "--texts")
        idx, scores = pipe.retrieve(texts, paths, args.k)
        return [
            {
                "text": t,
                "images": [
                    {"image": str(paths[int(i)]), "score": float(s)}
                    for i, s in zip(ir, sr, strict=True)
                ],
            }
            for t, ir, sr in zip(texts, idx, scores, strict=True)
        ]
    if kind == "caption":
        captions = pipe.caption(paths, beam_size=args.beam_size)
        return [{"image": str(p), "caption": c} for p, c in zip(paths, captions, strict=True)]
    questions = _lines(args.questions, "--questions")
    if len(questions) != len(paths):
        raise ValueError(f"--questions has {len(questions)} lines for {len(paths)} images")
    answers = pipe.answer(paths, questions)
    return [
        {"image": str(p), "question": q, "answer": a}
        for p, q, a in zip(paths, questions, answers, strict=True)
    ]


def main(args: argparse.Namespace, overrides: list[str]) -> int:
    from mmjax.config import ConfigError

    if overrides:
        raise ConfigError("predict takes no --config.KEY overrides")
    rows = predict_rows(args)
    text = "".join(json.dumps(r) + "\n" for r in rows)
    if args.out:
        Path(args.out).write_text(text)
    else:
        sys.stdout.write(text)
    return 0
