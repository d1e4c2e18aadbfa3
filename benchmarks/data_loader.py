"""JPEG input throughput: mmjax's grain pipeline next to a torch DataLoader, same files, same work.

    python benchmarks/data_loader.py [--files 512] [--dir DIR] [--workers 0 1 2]
        [--images 1024] [--batch 64] [--size 224] [--threads 2 ...] [--repeats 2]
        [--config FILE[:ARG]] [--no-step] [--json PATH] [--smoke]

Writes ``--files`` JPEGs (480x360, quality 90, smooth structure + noise so decoding is
real work) into a temporary directory (or reuses ``--dir``), then measures images/s for
JPEG decode (PIL) + random-resized crop to ``--size`` (``mmjax.data.augment``, PIL
bicubic) + normalize to float32 with the CLIP mean/std (on the host, in both loaders)
+ batching, with each worker count for

- ``grain``: the mmjax path: ``grain.MapDataset`` over the records (shuffled, repeated)
  -> ``map_with_index(decode + augment + normalize)`` -> ``batch`` -> ``to_iter_dataset
  (ReadOptions(num_threads=--threads))`` -> ``mmjax.data.workers.with_workers``;
- ``torch``: ``torch.utils.data.DataLoader(num_workers=w, batch_size=--batch)`` over a
  map-style ``Dataset`` calling the same per-image function.

Both read the same records in the same order with the same per-record generators
(seeded from the position), so they produce the same pixels. Each (loader, workers)
runs in its own subprocess, one after the other, alternating over ``--repeats`` rounds;
the first batches (worker start-up, imports) are not timed. Finally the train step of
``--config`` (default ``configs/clip_synthetic.py``) is compiled and timed with
``benchmarks/train_step.py``'s helpers: ``batch / step time`` is the images/s training
consumes, which the loader must match to keep the accelerator busy.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from mmjax.data.augment import RandomResizedCrop, normalize_host
from mmjax.data.transforms import decode_image

HERE = Path(__file__).resolve().parent
LOADERS = ("grain", "torch")
UNTIMED_PER_WORKER = 4
FILE_SIZE = (480, 360)  # width, height: a typical web / COCO-sized photo
QUALITY = 90
SEED = 0


def write_jpegs(directory: Path, count: int, size: tuple[int, int] = FILE_SIZE) -> list[Path]:
    """``count`` JPEGs ``img_00000.jpg ...`` in ``directory`` (existing ones are reused):
    smooth colour gradients, a few filled shapes and Gaussian noise, quality ``QUALITY``."""
    from PIL import Image, ImageDraw

    directory.mkdir(parents=True, exist_ok=True)
    paths = [directory / f"img_{i:05d}.jpg" for i in range(count)]
    w, h = size
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    for i, path in enumerate(paths):
        if path.exists():
            continue
        rng = np.random.default_rng([SEED, i])
        a, b, c = rng.uniform(0.5, 3, 3)
        base = np.stack(
            [
                128 + 100 * np.sin(a * x / w * np.pi + c),
                128 + 100 * np.cos(b * y / h * np.pi),
                128 + 100 * np.sin((x + y) / (w + h) * np.pi * c),
            ],
            -1,
        )
        img = Image.fromarray(np.clip(base, 0, 255).astype(np.uint8))
        draw = ImageDraw.Draw(img)
        for _ in range(6):
            x0, y0 = rng.integers(0, w), rng.integers(0, h)
            x1, y1 = x0 + rng.integers(20, w // 2), y0 + rng.integers(20, h // 2)
            fill = tuple(int(v) for v in rng.integers(0, 256, 3))
            shape = draw.ellipse if rng.random() < 0.5 else draw.rectangle
            shape((x0, y0, x1, y1), fill=fill)
        pixels = np.asarray(img, np.float32) + rng.normal(0, 12, (h, w, 3))
        tmp = path.with_suffix(".tmp")
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(
            tmp, format="JPEG", quality=QUALITY
        )
        tmp.replace(path)  # whole files only, so an interrupted run can be resumed
    return paths


class LoadImage:
    """``(position, file index) -> float32 [size, size, 3]``: read, decode (PIL), random-resized
    crop with the position's generator, CLIP-normalize. The one per-image function both
    loaders call."""

    def __init__(self, paths: list[str], size: int):
        self.paths = paths
        self.crop = RandomResizedCrop(size)

    def __call__(self, position: int, index: int) -> np.ndarray:
        data = Path(self.paths[index]).read_bytes()
        rng = np.random.default_rng([SEED, 1, position])
        return normalize_host(self.crop(decode_image(data), rng), "clip")


def order(count: int, total: int) -> np.ndarray:
    """File indices for ``total`` positions: shuffled epochs of ``count`` files (grain's own
    shuffle, so both loaders read the files in the grain pipeline's order)."""
    import grain

    ds = grain.MapDataset.range(count).shuffle(seed=SEED).repeat(None)
    return np.array([ds[i] for i in range(total)], np.int64)


def grain_batches(spec: dict):
    """mmjax's path: MapDataset -> map -> batch -> to_iter_dataset -> with_workers."""
    import grain

    from mmjax.data.workers import with_workers

    load = LoadImage(spec["paths"], spec["size"])
    ds = grain.MapDataset.range(len(spec["paths"])).shuffle(seed=SEED).repeat(None)
    ds = ds.map_with_index(lambda position, index: {"image": load(position, index)})
    ds = ds.batch(spec["batch"], drop_remainder=True)
    options = grain.ReadOptions(
        num_threads=spec["threads"], prefetch_buffer_size=spec["grain_prefetch"]
    )
    it = iter(with_workers(ds.to_iter_dataset(options), spec["workers"]))
    return it, it.close


def torch_batches(spec: dict):
    """``torch.utils.data.DataLoader`` over a map-style Dataset doing the same per-image work."""
    from torch.utils.data import DataLoader, Dataset

    load = LoadImage(spec["paths"], spec["size"])
    total = spec["batch"] * (spec["warmup"] + spec["timed"])
    files = order(len(spec["paths"]), total)

    class Images(Dataset):
        def __len__(self) -> int:
            return total

        def __getitem__(self, position: int) -> dict[str, np.ndarray]:
            return {"image": load(position, int(files[position]))}

    workers = spec["workers"]
    loader = DataLoader(
        Images(),
        batch_size=spec["batch"],
        num_workers=workers,
        drop_last=True,
        prefetch_factor=spec["torch_prefetch"] if workers else None,
    )
    return iter(loader), lambda: None


def run_loader(spec: dict) -> dict:
    """Images/s of one loader over ``timed`` batches, after ``warmup`` untimed ones."""
    make = grain_batches if spec["loader"] == "grain" else torch_batches
    it, close = make(spec)
    try:
        for _ in range(spec["warmup"]):
            next(it)
        t0 = time.perf_counter()
        first = next(it)
        for _ in range(spec["timed"] - 1):
            next(it)
        seconds = time.perf_counter() - t0
    finally:
        close()
    image = np.asarray(first["image"])
    return {
        "images_per_s": spec["batch"] * spec["timed"] / seconds,
        "seconds": seconds,
        "shape": list(image.shape),
        "dtype": str(image.dtype),
        "batch_sha1": hashlib.sha1(image.tobytes()).hexdigest(),
    }


def run_worker(spec: dict) -> dict | None:
    """One (loader, workers) measurement in a fresh interpreter; ``None`` with a note on failure."""
    from step_timer import parse_report

    proc = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--worker", json.dumps(spec)],
        capture_output=True,
        text=True,
        cwd=HERE.parent,
    )
    result = parse_report(proc.stdout)
    if proc.returncode or result is None:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
        print(f"note: {spec['loader']} w{spec['workers']} failed: {' | '.join(tail)}", flush=True)
        return None
    return result


def step_consumption(config_spec: str, overrides: list[str], steps: int) -> dict:
    """Images/s the train step of ``config_spec`` consumes: ``batch / median step time``."""
    from train_step import compile_step, time_step

    from mmjax import config as config_lib

    config = config_lib.apply_overrides(config_lib.load_config(config_spec), overrides)
    batch = config.train.batch_size
    compiled, state, data, _ = compile_step(config, batch)
    times, _ = time_step(compiled, state, data, steps, warmup=2)
    step_s = statistics.median(times)
    import jax

    return {
        "step_config": config_spec,
        "step_batch": batch,
        "step_image_size": config.data.image_size,
        "step_s": step_s,
        "step_images_per_s": batch / step_s,
        "step_device": f"{jax.devices()[0].device_kind} x{jax.device_count()}",
    }


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    from mmjax.cli.app import _split_overrides

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=512, help="JPEG files to write / read")
    parser.add_argument("--dir", type=Path, default=None, help="keep the JPEGs here (reused)")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--loaders", nargs="+", default=list(LOADERS), choices=LOADERS)
    parser.add_argument("--images", type=int, default=1024, help="timed images per run")
    parser.add_argument(
        "--warmup", type=int, default=2, help="untimed batches first (+ 4 per worker)"
    )
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--size", type=int, default=224, help="output side (pixels)")
    parser.add_argument(
        "--threads",
        type=int,
        nargs="+",
        default=[2],
        help="grain ReadOptions.num_threads (per process; mmjax's default config: 2)",
    )
    parser.add_argument(
        "--grain-prefetch", type=int, default=4, help="grain ReadOptions.prefetch_buffer_size"
    )
    parser.add_argument(
        "--torch-prefetch", type=int, default=2, help="DataLoader prefetch_factor (workers > 0)"
    )
    parser.add_argument("--repeats", type=int, default=2, help="rounds over all configs")
    parser.add_argument("--config", default="configs/clip_synthetic.py", help="train step config")
    parser.add_argument("--step-steps", type=int, default=10, help="timed train steps")
    parser.add_argument("--no-step", action="store_true", help="skip the train-step timing")
    parser.add_argument("--json", type=Path, help="also write the rows here as a JSON list")
    parser.add_argument("--smoke", action="store_true", help="tiny: seconds, 0 workers")
    parser.add_argument("--worker", help=argparse.SUPPRESS)  # internal: one measurement
    rest, overrides = _split_overrides(argv)
    args = parser.parse_args(rest)
    if args.smoke:
        args.files, args.images, args.batch, args.size = 8, 8, 4, 32
        args.workers, args.warmup, args.repeats, args.step_steps = [0], 1, 1, 2
        args.config = "configs/clip_synthetic.py:tiny"
    return args, overrides


def print_rows(rows: list[dict], step: dict | None) -> None:
    """The table: each run's images/s, the median, and grain's median over torch's."""
    header = (
        f"{'loader':<7} {'workers':>7} {'threads':>7} {'images/s (each run)':>20} "
        f"{'median':>7} {'vs torch':>8} {'load (1 min)':>13}"
    )
    print(header)
    print("-" * len(header))
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        key = (r["workers"], r["loader"] == "torch", r["grain_threads"] or 0)
        groups.setdefault(key, []).append(r)
    medians = {k: statistics.median(r["images_per_s"] for r in g) for k, g in groups.items()}
    for key, group in sorted(groups.items()):
        workers, is_torch, threads = key
        torch_median = next((m for k, m in medians.items() if k[:2] == (workers, True)), None)
        ratio = f"{medians[key] / torch_median:.2f}x" if torch_median and not is_torch else ""
        each = " ".join(f"{r['images_per_s']:.0f}" for r in group)
        load = "/".join(f"{r['load_avg_1min']:.1f}" for r in group)
        print(
            f"{group[0]['loader']:<7} {workers:>7} {threads or '-':>7} {each:>20} "
            f"{medians[key]:>7.0f} {ratio:>8} {load:>13}"
        )
    # Same warm-up at the same worker count, so the first timed batches must be equal.
    same = all(
        len({r["batch_sha1"] for r in rows if r["workers"] == w}) == 1
        for w in {r["workers"] for r in rows}
    )
    print(f"same pixels from grain and torch (first timed batch): {'yes' if same else 'NO'}")
    if step:
        best = max(medians.values(), default=0.0)
        print(
            f"train step ({step['step_config']}, batch {step['step_batch']}, "
            f"{step['step_image_size']} px, {step['step_device']}): "
            f"{step['step_s'] * 1e3:.1f} ms/step = {step['step_images_per_s']:.0f} images/s "
            f"consumed; the fastest loader above gives {best:.0f} images/s "
            f"({'keeps up' if best >= step['step_images_per_s'] else 'does NOT keep up'})"
        )


def loader_runs(args: argparse.Namespace) -> list[tuple[str, int, int | None]]:
    """``(loader, workers, grain threads)`` of one round, grain and torch side by side."""
    runs = []
    for workers in args.workers:
        for loader in args.loaders:
            threads = args.threads if loader == "grain" else [None]
            runs += [(loader, workers, t) for t in threads]
    return runs


def main(argv: list[str] | None = None) -> None:
    args, overrides = parse_args(sys.argv[1:] if argv is None else argv)
    if args.worker:
        from step_timer import report

        report(run_loader(json.loads(args.worker)))
        return
    with tempfile.TemporaryDirectory(prefix="mmjax_jpegs_") as tmp:
        directory = args.dir or Path(tmp)
        t0 = time.perf_counter()
        paths = write_jpegs(directory, args.files)
        mb = sum(p.stat().st_size for p in paths) / 2**20
        print(
            f"{len(paths)} JPEGs {FILE_SIZE[0]}x{FILE_SIZE[1]} q{QUALITY} in {directory} "
            f"({mb:.1f} MiB, ready in {time.perf_counter() - t0:.1f} s); {os.cpu_count()} CPUs, "
            f"load average {os.getloadavg()[0]:.2f}",
            flush=True,
        )
        timed = max(1, args.images // args.batch)
        common = dict(paths=[str(p) for p in paths], size=args.size, batch=args.batch)
        common.update(timed=timed, grain_prefetch=args.grain_prefetch)
        common.update(torch_prefetch=args.torch_prefetch)
        rows = []
        for repeat in range(args.repeats):
            for loader, workers, threads in loader_runs(args):
                load = os.getloadavg()[0]
                # The batches the workers buffer while the first one is made come out at
                # once; untimed, so the timed ones come at the steady rate (both loaders
                # buffer 2 per worker; grain's interleave 2 more).
                warmup = args.warmup + UNTIMED_PER_WORKER * workers
                spec = dict(common, loader=loader, workers=workers, threads=threads)
                spec["warmup"] = warmup
                r = run_worker(spec)
                if r is None:
                    continue
                name = f"{loader} w{workers}" + (f" t{threads}" if threads else "")
                print(f"  {name}: {r['images_per_s']:.0f} images/s", flush=True)
                rows.append(
                    {
                        "loader": loader,
                        "workers": workers,
                        "images_per_s": r["images_per_s"],
                        "grain_threads": threads,
                        "repeat": repeat,
                        "images": args.batch * timed,
                        "batch": args.batch,
                        "size": args.size,
                        "files": len(paths),
                        "grain_prefetch": args.grain_prefetch,
                        "torch_prefetch": args.torch_prefetch,
                        "load_avg_1min": load,
                        "cpus": os.cpu_count(),
                        "batch_sha1": r["batch_sha1"],
                    }
                )
                if args.json:  # kept up to date, so an interrupted run leaves its rows
                    args.json.write_text(json.dumps(rows, indent=2) + "\n")
    step = None if args.no_step else step_consumption(args.config, overrides, args.step_steps)
    for r in rows:
        r.update(step or {})
    print_rows(rows, step)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
