"""The ``mmjax`` command: ``train``, ``info`` and ``convert``.

mmjax train [--config FILE[:ARG]] [--workdir DIR] [--config.KEY=VALUE ...]
mmjax info  [--config FILE[:ARG]] [--config.KEY=VALUE ...]
mmjax convert --hf DIR_OR_ID --out CKPT_DIR     (Hugging Face -> orbax checkpoint)
mmjax convert --ckpt CKPT_DIR --to-hf DIR       (orbax checkpoint -> Hugging Face)
mmjax data prepare --source SPEC --out DIR      (files / folder / tar shards -> ArrayRecord)
mmjax compile --config FILE[:ARG] --topology v5e-256 [--num-slices N] [--json PATH]
                                                (AOT-compile the train step for a TPU slice)
mmjax eval --workdir RUN [--out results.json]   (eval only: mmjax/cli/eval.py)
mmjax predict zero-shot|retrieve|caption|answer|generate --workdir RUN ...   (mmjax/cli/predict.py)
mmjax export --workdir RUN --to-hf DIR | --stablehlo DIR            (mmjax/cli/export.py)
mmjax plot --workdir RUN [--out DIR]            (loss / lr / eval curves: mmjax/cli/plot.py)
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from mmjax import config as config_lib
from mmjax.cli import eval as cli_eval
from mmjax.cli import export as cli_export
from mmjax.cli import plot
from mmjax.cli import predict as cli_predict
from mmjax.errors import debug_requested, run_command


def _split_overrides(argv: list[str]) -> tuple[list[str], list[str]]:
    """Pulls ``--config.KEY=VALUE`` / ``--config.KEY VALUE`` out of ``argv``."""
    rest, overrides = [], []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg.startswith("--config."):
            body = arg[len("--config.") :]
            if "=" not in body:
                if i + 1 >= len(argv):
                    raise config_lib.ConfigError(f"{arg} needs a value")
                body = f"{body}={argv[i + 1]}"
                i += 1
            overrides.append(body)
        else:
            rest.append(arg)
        i += 1
    return rest, overrides


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mmjax", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser("train", help="train a model (default: the built-in synthetic CLIP)")
    train.add_argument("--config", help="config file, optionally FILE:ARG for a variant")
    train.add_argument("--workdir", help="run directory (default: runs/<config>-<time>)")
    multi = train.add_argument_group(
        "multi-process (else from MMJAX_* variables, SLURM or the TPU VM; default: one process)"
    )
    multi.add_argument("--coordinator", help="HOST:PORT of process 0")
    multi.add_argument("--num_processes", type=int, help="number of processes in the job")
    multi.add_argument("--process_id", type=int, help="this process's index")
    info = sub.add_parser("info", help="JAX version, devices and a config's parameter count")
    info.add_argument("--config", help="config file, optionally FILE:ARG")
    convert = sub.add_parser(
        "convert", help="Hugging Face model directory <-> orbax checkpoint of its params"
    )
    source = convert.add_mutually_exclusive_group(required=True)
    source.add_argument("--hf", help="HF model directory (or cached Hub id) to read")
    source.add_argument("--ckpt", help="checkpoint written by `mmjax convert --hf` to read")
    convert.add_argument("--out", help="with --hf: checkpoint directory to write")
    convert.add_argument("--to-hf", dest="to_hf", help="with --ckpt: HF directory to write")
    convert.add_argument(
        "--allow-network", action="store_true", help="download a Hub id not in the cache"
    )
    data = sub.add_parser("data", help="data tools").add_subparsers(dest="data_command")
    data.required = True
    prepare = data.add_parser(
        "prepare", help="write files:/folder:/wds: records to ArrayRecord (images kept encoded)"
    )
    prepare.add_argument("--source", required=True, help="files:PATH, folder:ROOT or wds:SHARDS")
    prepare.add_argument("--out", required=True, help="directory for the .array_record files")
    prepare.add_argument("--shard-size", type=int, default=1000, help="input records per file")
    prepare.add_argument(
        "--no-verify",
        action="store_true",
        help="do not decode images, videos or audio (keep undecodable ones)",
    )
    prepare.add_argument(
        "--allow-outside-root",
        action="store_true",
        help="let a captions file name images outside its directory (absolute or ../ paths)",
    )
    _add_compile_parser(sub)
    for module in SUBCOMMANDS.values():
        module.add_parser(sub)
    return parser


# Subcommands that live in their own modules: ``add_parser(sub)`` and ``main(args, overrides)``.
SUBCOMMANDS = {"eval": cli_eval, "predict": cli_predict, "export": cli_export, "plot": plot}


def _module_command(args: argparse.Namespace, overrides: list[str]) -> int:
    """Runs a ``SUBCOMMANDS`` entry (its errors become one line through ``mmjax.errors``)."""
    try:
        return SUBCOMMANDS[args.command].main(args, overrides)
    except NotImplementedError as e:  # a model that cannot do what was asked: a usage error
        raise config_lib.ConfigError(str(e)) from e


def _add_compile_parser(sub: Any) -> None:
    aot = sub.add_parser(
        "compile", help="compile the train step for a TPU slice on this machine (needs libtpu)"
    )
    aot.add_argument("--config", help="config file, optionally FILE:ARG")
    aot.add_argument("--topology", required=True, help="v5e-256, v4-32, v5p-128, v6e-64, v5e:4x4")
    aot.add_argument("--num-slices", dest="num_slices", type=int, default=1, help="multi-slice")
    aot.add_argument("--json", help="also write the report as JSON to this path")


def _compile(args: argparse.Namespace, config: Any) -> int:
    """``mmjax compile``: exit 0 if the step fits the chip's HBM, 1 if not, 2 on bad input."""
    import json

    from mmjax.parallel.aot import DoesNotFit, compile_for_topology
    from mmjax.parallel.compile_report import topology_lines
    from mmjax.parallel.tpu_topology import parse_topology

    try:
        topology = parse_topology(args.topology, args.num_slices)
        report = compile_for_topology(config, topology, args.config or "clip_synthetic.py")
    except DoesNotFit as e:
        print(f"mmjax compile: {args.config} on {args.topology}: {e}", file=sys.stderr)
        return 1
    except ValueError as e:
        print(f"mmjax: error: {e}", file=sys.stderr)
        return 2
    print("\n".join(topology_lines(report)))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1) + "\n")
    if not report["fits"]:
        print(f"mmjax compile: {args.config} does not fit {args.topology}", file=sys.stderr)
    return 0 if report["fits"] else 1


def _data(args: argparse.Namespace, overrides: list[str]) -> int:
    """``mmjax data prepare``; bad input is one error line naming it (``mmjax.errors``)."""
    from mmjax.data.prepare import prepare

    if overrides:
        raise config_lib.ConfigError("data prepare takes no --config.KEY overrides")
    manifest = prepare(
        args.source,
        args.out,
        args.shard_size,
        verify=not args.no_verify,
        allow_outside_root=args.allow_outside_root,
    )
    print(
        f"wrote {manifest['num_records']} records in {len(manifest['shards'])} files to "
        f"{args.out} ({manifest['num_bad']} bad inputs left out, listed in manifest.json); "
        f"train on them with --config.data.source=arrayrecord:{args.out}"
    )
    return 0


def _convert(args: argparse.Namespace, overrides: list[str]) -> int:
    """``mmjax convert``; bad input (a missing file, a checkpoint that does not fit) is
    reported as one error line naming it (``mmjax.errors``)."""
    from mmjax.hf import convert

    if overrides:
        raise config_lib.ConfigError("convert takes no --config.KEY overrides")
    if args.hf and not args.out:
        raise config_lib.ConfigError("convert --hf needs --out CKPT_DIR")
    if args.ckpt and not args.to_hf:
        raise config_lib.ConfigError("convert --ckpt needs --to-hf DIR")
    if args.hf:
        out = convert.hf_to_checkpoint(args.hf, args.out, allow_network=args.allow_network)
    else:
        out = convert.checkpoint_to_hf(args.ckpt, args.to_hf)
    print(f"wrote {out}")
    return 0


def jax_process_count() -> int:
    import jax

    return jax.process_count()


def _config(spec: str | None, overrides: list[str]):
    return config_lib.apply_overrides(config_lib.load_config(spec), overrides)


def main(argv: list[str] | None = None) -> int:
    """Every subcommand's errors become one ``mmjax: error:`` line and an exit code per
    kind (``mmjax.errors``); ``--debug`` (anywhere) or ``MMJAX_DEBUG=1`` adds the traceback."""
    debug, argv = debug_requested(sys.argv[1:] if argv is None else argv)
    return run_command(lambda: _main(argv), debug)


def _main(argv: list[str]) -> int:
    rest, overrides = _split_overrides(argv)
    args = _parser().parse_args(rest)
    from mmjax.parallel import tpu_topology  # before jax starts: which platforms it may load

    if args.command == "compile":
        tpu_topology.use_cpu_backend_for_aot()
    else:
        tpu_topology.skip_tpu_probe()
    if args.command == "convert":
        return _convert(args, overrides)
    if args.command == "data":
        return _data(args, overrides)
    if args.command in SUBCOMMANDS:
        return _module_command(args, overrides)
    config = _config(args.config, overrides)
    if args.command == "train":
        from mmjax.parallel.distributed import initialize
        from mmjax.train.loop import train

        try:
            initialize(args.coordinator, args.num_processes, args.process_id)
        except ValueError as e:
            raise config_lib.ConfigError(str(e)) from e

        if args.workdir is None and jax_process_count() > 1:
            print("mmjax: error: multi-process runs need an explicit --workdir", file=sys.stderr)
            return 2
        name = Path((args.config or "clip_synthetic.py").partition(":")[0]).stem
        workdir = args.workdir or f"runs/{name}-{time.strftime('%Y%m%d-%H%M%S')}"
        print(f"workdir: {workdir}")
        result = train(config, workdir)
        import jax

        if jax.process_index() == 0 and result:
            print("final: " + ", ".join(f"{k}={v:.4g}" for k, v in sorted(result.items())))
        return 0
    if args.command == "info":
        from mmjax.cli.info import print_info

        print_info(config)
        return 0
    if args.command == "compile":
        return _compile(args, config)
    return 2


if __name__ == "__main__":
    sys.exit(main())
