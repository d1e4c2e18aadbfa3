"""Experiment configs: ``get_config(arg)`` files, dotted overrides, validation, JSON."""

from __future__ import annotations

import ast
import difflib
import importlib.util
import json
from collections.abc import Callable, Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

import ml_collections

DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "configs" / "clip_synthetic.py"
REQUIRED = (
    "model",
    "data",
    "optim",
    "mesh",
    "train",
    "train.steps",
    "train.batch_size",
    "train.seed",
    "train.log_every",
    "train.eval_every",
    "train.checkpoint_every",
)


class ConfigError(ValueError):
    """A config file, key or value that cannot be used; the message names it."""


def default_config_path() -> Path:
    """The built-in default ``configs/clip_synthetic.py``: beside the package, else under cwd."""
    for candidate in (DEFAULT_CONFIG, Path.cwd() / "configs" / "clip_synthetic.py"):
        if candidate.is_file():
            return candidate
    raise ConfigError(
        f"the default config {DEFAULT_CONFIG} is not there (a non-editable install?); "
        "pass --config PATH"
    )


def load_config(spec: str | Path | None = None) -> ml_collections.ConfigDict:
    """Loads ``path[:arg]`` by calling the file's ``get_config(arg)``."""
    if spec is None:
        spec = default_config_path()
    path_str, _, arg = str(spec).partition(":")
    path = Path(path_str)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    module_spec = importlib.util.spec_from_file_location(f"mmjax_config_{path.stem}", path)
    module = importlib.util.module_from_spec(module_spec)
    try:
        module_spec.loader.exec_module(module)
    except Exception as e:  # noqa: BLE001 - report any error in user code with its file
        raise ConfigError(f"config file {path} failed to load: {type(e).__name__}: {e}") from e
    if not hasattr(module, "get_config"):
        raise ConfigError(f"config file {path} has no get_config(arg) function")
    try:
        config = module.get_config(arg) if arg else module.get_config()
    except ConfigError:
        raise  # already names the file (``Variants``) or the key
    except (ValueError, KeyError, TypeError) as e:
        raise ConfigError(f"{path}: get_config({arg!r}) failed: {e}") from e
    if not isinstance(config, ml_collections.ConfigDict):
        raise ConfigError(f"{path}: get_config() must return an ml_collections.ConfigDict")
    validate(config, source=str(path))
    return config


def validate(config: ml_collections.ConfigDict, source: str = "config") -> None:
    """Checks that the sections and keys every run needs exist."""
    for key in REQUIRED:
        if not has_key(config, key):
            raise ConfigError(f"{source}: missing required key {key!r}")


def has_key(config: ml_collections.ConfigDict, dotted: str) -> bool:
    node: Any = config
    for part in dotted.split("."):
        if not isinstance(node, (ml_collections.ConfigDict, dict)) or part not in node:
            return False
        node = node[part]
    return True


def _all_keys(config: Any, prefix: str = "") -> list[str]:
    keys = []
    for k, v in config.items():
        keys.append(prefix + k)
        if isinstance(v, (ml_collections.ConfigDict, dict)):
            keys.extend(_all_keys(v, prefix + k + "."))
    return keys


def _parse_value(text: str, old: Any, key: str, label: str = "") -> Any:
    """Parses ``text`` to the type of the value it replaces; errors name ``label``
    (default ``--config.KEY``)."""
    label = label or f"--config.{key}"
    if isinstance(old, str):
        return text
    if isinstance(old, bool):
        low = text.lower()
        if low in ("true", "1", "yes"):
            return True
        if low in ("false", "0", "no"):
            return False
        raise ConfigError(f"{label}: expected true/false, got {text!r}")
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        if old is None:
            return text
        raise ConfigError(f"{label}: cannot parse {text!r} as {type(old).__name__}") from None
    if isinstance(old, float) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if old is not None and not isinstance(value, type(old)):
        if isinstance(old, (tuple, list)) and isinstance(value, (tuple, list)):
            return type(old)(value)
        raise ConfigError(
            f"{label}: expected {type(old).__name__}, got {text!r} ({type(value).__name__})"
        )
    return value


def apply_overrides(
    config: ml_collections.ConfigDict, overrides: list[str]
) -> ml_collections.ConfigDict:
    """Applies ``['train.steps=10', ...]``; an unknown key is an error naming it."""
    config = ml_collections.ConfigDict(config.to_dict(), type_safe=False)
    known = _all_keys(config)
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep:
            raise ConfigError(f"override {item!r} is not KEY=VALUE")
        if not has_key(config, key):
            close = difflib.get_close_matches(key, known, n=3)
            hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
            raise ConfigError(f"unknown config key {key!r}{hint}")
        *parents, leaf = key.split(".")
        node = config
        for part in parents:
            node = node[part]
        if isinstance(node[leaf], ml_collections.ConfigDict):
            raise ConfigError(f"config key {key!r} is a section; set one of its keys instead")
        node[leaf] = _parse_value(text, node[leaf], key)
    return config


def to_json(config: ml_collections.ConfigDict) -> str:
    """The config as JSON (tuples become lists), for ``config.json`` and checkpoints."""
    return json.dumps(config.to_dict(), indent=2, sort_keys=True, default=str)


def parse_options(items: list[str], defaults: Mapping[str, Any], where: str) -> dict[str, Any]:
    """``['k=2', ...]`` -> ``defaults`` updated, each value parsed to its default's type."""
    options = dict(defaults)
    for item in items:
        key, _, text = item.partition("=")
        if key not in defaults:
            known = f"known: {', '.join(defaults)}" if defaults else "it takes none"
            raise ConfigError(f"{where}: unknown option {key!r}; {known}")
        options[key] = _parse_value(text, defaults[key], key, f"{where}: option {key}")
    return options


Variant = Callable[[ml_collections.ConfigDict], None]


class Variants:
    """The ``ARG`` of ``--config FILE:ARG``: comma-separated variant names (``tiny,siglip``),
    ``KEY=VALUE`` options (``k=2``) and, where a file takes one, a leading value (a model
    directory), checked against what ``where`` (the config file) knows.

        VARIANTS = {"siglip": base.siglip, "tiny": base.two_tower_tiny}

        def get_config(arg=None):
            return Variants(arg, __file__, VARIANTS).apply(base.two_tower())

    A name the file does not know, an option it does not take, or two names of one
    ``exclusive`` group are a ``ConfigError`` naming the file and listing the known ones.
    ``apply`` runs the named variants in the file's order (that of ``known``), not the
    order they were given in, so ``tiny,siglip`` and ``siglip,tiny`` are one config.
    """

    def __init__(
        self,
        arg: str | None,
        where: str | Path,
        known: Mapping[str, Variant | None],
        options: Mapping[str, Any] | None = None,
        exclusive: Sequence[Collection[str]] = (),
        first: str = "",
    ) -> None:
        self.where = f"config {_shown(where)}"
        self.known = dict(known)
        items = [a for a in (arg or "").split(",") if a]
        self.first = ""
        if first:  # e.g. the model directory of clip_hf_finetune.py:DIR
            if not items or "=" in items[0] or items[0] in self.known:
                raise ConfigError(f"{self.where}: give {first} first: {Path(where).name}:{first}")
            self.first = items.pop(0)
        self.options = parse_options([a for a in items if "=" in a], options or {}, self.where)
        names = {a for a in items if "=" not in a}
        unknown = sorted(names - set(self.known))
        if unknown:
            raise ConfigError(
                f"{self.where}: unknown variant{'s' * (len(unknown) > 1)} "
                f"{', '.join(map(repr, unknown))}; "
                f"known: {', '.join(self.known) or 'none'}"
                + (f"; options: {', '.join(f'{k}=' for k in options)}" if options else "")
            )
        for group in exclusive:
            if len(names & set(group)) > 1:
                raise ConfigError(f"{self.where}: at most one of {', '.join(group)}")
        self.names = tuple(n for n in self.known if n in names)

    def __contains__(self, name: str) -> bool:
        return name in self.names

    def __getitem__(self, option: str) -> Any:
        return self.options[option]

    def apply(self, config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
        """Runs each named variant's function on ``config`` (in place), in the file's order."""
        for name in self.names:
            if self.known[name] is not None:
                self.known[name](config)
        return config


def _shown(path: str | Path) -> str:
    """``path`` relative to the working directory when it is under it."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def load_with_options(
    base: str | Path, arg: str | None, defaults: dict[str, Any], where: str
) -> tuple[ml_collections.ConfigDict, dict[str, Any]]:
    """``base`` loaded with the variants in ``arg`` (``k=2,tiny``), and the ``KEY=VALUE``
    options of ``arg`` (keys of ``defaults``, parsed to their types): for scripts that take
    a ``FILE:ARG`` and set options of their own."""
    items = [a for a in (arg or "").split(",") if a]
    options = parse_options([a for a in items if "=" in a], defaults, where)
    variants = ",".join(a for a in items if "=" not in a)
    return load_config(f"{base}:{variants}" if variants else base), options
