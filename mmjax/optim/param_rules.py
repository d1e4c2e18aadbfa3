"""Parameter rules: ordered ``(regex, rule)`` pairs over param paths -> a ``ParamPlan``.

``config.optim.rules = [(regex, rule), ...]`` is matched (``re.fullmatch``) against
``/``-joined param paths such as ``image/encoder/layer_0/mlp/wi/kernel``; the first
match wins. A rule is ``None`` (frozen: no gradient, no optimizer state, never
written) or a dict with

- ``lr_mult`` (default 1): multiplies the learning rate;
- ``wd_mult`` (default 1): multiplies ``config.optim.weight_decay``;
- ``decay`` (default ``None``): ``True`` / ``False`` forces weight decay on / off
  instead of the default mask (``default_decays``);
- ``schedule``: a dict of schedule keys (``mmjax.optim.schedules.SCHEDULE_KEYS``)
  overriding ``config.optim``'s for the params of this rule.

Every param must be covered, and every rule must match at least one param.
``config.optim.llrd`` (< 1) multiplies in layer-wise LR decay (``llrd_multipliers``).
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

import flax.traverse_util

from mmjax.optim.schedules import SCHEDULE_KEYS

RULE_KEYS = frozenset({"lr_mult", "wd_mult", "decay", "schedule"})
DEFAULT_RULES = [(".*", {})]

# Leaf names never decayed by default: biases, norm scales, embeddings, learned
# positions / tokens / probes, and the temperature (must not shrink toward 0).
NO_DECAY_NAMES = frozenset(
    {"bias", "scale", "embedding", "pos_embed", "cls_token", "probe", "logit_scale", "logit_bias"}
)
# Direct children of a tower that belong to its embedding stage (lowest LLRD rate).
EMBEDDING_NAMES = frozenset(
    {"patch_embed", "pos_embed", "cls_token", "token_embed", "word_embed", "type_embed"}
    | {"ln_pre", "ln_embed"}
)
# A tower's own layer stack: ``TOWER/encoder/layer_<i>/`` (unrolled) or ``TOWER/encoder/layers/``
# (``scan_layers``: params stacked on a leading ``[depth]`` axis); the CoCa decoder's unimodal
# (text) layers are ``decoder/unimodal/...``. Only towers with an embedding stage count (so a
# fusion encoder, which has none, and CoCa's multimodal layers train at the heads' rate).
_LAYER = re.compile(
    r"(?P<tower>[^/]+)/(?:encoder|unimodal)/(?:layer_(?P<index>\d+)|(?P<stacked>layers))/.*"
)


def flat_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """``{'a/b/kernel': leaf}`` for a nested param dict (boxed leaves stay leaves)."""
    return flax.traverse_util.flatten_dict(dict(params), sep="/")


def unflat_params(flat: Mapping[str, Any]) -> dict[str, Any]:
    return flax.traverse_util.unflatten_dict(dict(flat), sep="/")


def merge_params(trainable: Mapping[str, Any], frozen: Mapping[str, Any]) -> dict[str, Any]:
    """The full param tree from its trainable and frozen parts (disjoint leaves)."""
    if not frozen:
        return trainable
    return unflat_params({**flat_params(trainable), **flat_params(frozen)})


def default_decays(path: str, shape: Sequence[int]) -> bool:
    """Default weight-decay mask: matrices / kernels (ndim >= 2) not named in ``NO_DECAY_NAMES``."""
    return len(shape) >= 2 and path.split("/")[-1] not in NO_DECAY_NAMES


def llrd_multipliers(
    shapes: Mapping[str, Sequence[int]], decay: float
) -> dict[str, float | tuple[float, ...]]:
    """Layer-wise LR decay per tower: ``decay ** (L - i)`` for layer ``i`` of a tower's ``L``
    layers, ``decay ** (L + 1)`` for its embeddings (``EMBEDDING_NAMES``), 1 for everything
    else (final norms, pooling, projections, heads, fusion encoders, CoCa's multimodal layers).

    A tower is a top-level module with an embedding stage and a layer stack (``_LAYER``). A
    stacked (``scan_layers``) param ``[depth, ...]`` gets a tuple of ``depth`` multipliers,
    one per slice of its leading axis, equal to the unrolled ``layer_<i>``'s; ``L`` is then
    the leading axis's size.
    """
    towers = {
        p.split("/")[0] for p in shapes if p.count("/") and p.split("/")[1] in EMBEDDING_NAMES
    }
    depth: dict[str, int] = {}
    for path, shape in shapes.items():
        m = _LAYER.fullmatch(path)
        if m and m["tower"] in towers:
            n = int(shape[0]) if m["stacked"] else int(m["index"]) + 1
            depth[m["tower"]] = max(depth.get(m["tower"], 0), n)
    mult: dict[str, float | tuple[float, ...]] = {}
    for path, shape in shapes.items():
        parts = path.split("/")
        m = _LAYER.fullmatch(path)
        if m and m["tower"] in depth:
            n = depth[m["tower"]]
            if m["stacked"]:
                mult[path] = tuple(decay ** (n - i) for i in range(int(shape[0])))
            else:
                mult[path] = decay ** (n - int(m["index"]))
        elif len(parts) > 1 and parts[0] in depth and parts[1] in EMBEDDING_NAMES:
            mult[path] = decay ** (depth[parts[0]] + 1)
        else:
            mult[path] = 1.0
    return mult


@dataclasses.dataclass(frozen=True)
class ParamPlan:
    """What the rules decided for each param path (``shapes`` holds every param)."""

    rules: tuple[tuple[str, dict | None], ...]
    shapes: dict[str, tuple[int, ...]]
    rule_of: dict[str, int]  # path -> index of the rule that covers it
    # trainable paths only (rule lr_mult x LLRD); a stacked (scan_layers) param's is a tuple,
    # one multiplier per slice of its leading layers axis
    lr_mult: dict[str, float | tuple[float, ...]]
    weight_decay: dict[str, float]  # trainable paths only (0 = no decay)

    @property
    def trainable(self) -> list[str]:
        return [p for p in self.shapes if self.rules[self.rule_of[p]][1] is not None]

    @property
    def frozen(self) -> list[str]:
        return [p for p in self.shapes if self.rules[self.rule_of[p]][1] is None]

    def schedule_rule(self, path: str) -> int | None:
        """Index of the rule whose own ``schedule`` applies to ``path``, else ``None``."""
        index = self.rule_of[path]
        return index if self.rules[index][1].get("schedule") else None

    def split(self, params: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        """``(trainable, frozen)`` nested dicts of ``params``' leaves."""
        flat = flat_params(params)
        if set(flat) != set(self.shapes):
            missing = sorted(set(self.shapes) - set(flat))[:5]
            extra = sorted(set(flat) - set(self.shapes))[:5]
            raise ValueError(f"params do not match the plan: missing {missing}, extra {extra}")
        frozen = set(self.frozen)
        return (
            unflat_params({k: v for k, v in flat.items() if k not in frozen}),
            unflat_params({k: v for k, v in flat.items() if k in frozen}),
        )

    def num_params(self, paths: Sequence[str]) -> int:
        return sum(math.prod(self.shapes[p]) for p in paths)

    def table(self) -> str:
        """Rule -> tensors / parameters, then frozen and trainable totals."""
        names = [repr(p) if len(repr(p)) <= 48 else repr(p)[:45] + "..." for p, _ in self.rules]
        width = max(5, *(len(n) for n in names))
        lines = [f"{'rule':<{width}}  {'':<9} {'tensors':>8} {'params':>12}"]
        for i, ((_, rule), name) in enumerate(zip(self.rules, names, strict=True)):
            paths = [p for p in self.shapes if self.rule_of[p] == i]
            kind = "frozen" if rule is None else "trainable"
            lines.append(
                f"{name:<{width}}  {kind:<9} {len(paths):>8} {self.num_params(paths):>12,}"
            )
        for kind, paths in (("frozen", self.frozen), ("trainable", self.trainable)):
            lines.append(
                f"{'total':<{width}}  {kind:<9} {len(paths):>8} {self.num_params(paths):>12,}"
            )
        return "\n".join(lines)


def _check_rule(index: int, item: Any) -> tuple[str, dict | None]:
    where = f"config.optim.rules[{index}]"
    if not isinstance(item, (tuple, list)) or len(item) != 2 or not isinstance(item[0], str):
        raise ValueError(f"{where} must be a (regex, rule) pair, got {item!r}")
    pattern, rule = item
    try:
        re.compile(pattern)
    except re.error as e:
        raise ValueError(f"{where}: bad regex {pattern!r}: {e}") from None
    if rule is None:
        return pattern, None
    if not isinstance(rule, Mapping):
        raise ValueError(f"{where} ({pattern!r}): a rule is None (frozen) or a dict, got {rule!r}")
    rule = dict(rule)
    unknown = set(rule) - RULE_KEYS
    if unknown:
        raise ValueError(
            f"{where} ({pattern!r}): unknown keys {sorted(unknown)}; known: {sorted(RULE_KEYS)}"
        )
    schedule = rule.get("schedule")
    if schedule is not None:
        if not isinstance(schedule, Mapping):
            raise ValueError(f"{where} ({pattern!r}).schedule must be a dict, got {schedule!r}")
        bad = set(schedule) - SCHEDULE_KEYS
        if bad:
            raise ValueError(
                f"{where} ({pattern!r}).schedule: unknown keys {sorted(bad)}; "
                f"known: {sorted(SCHEDULE_KEYS)}"
            )
        rule["schedule"] = dict(schedule)
    return pattern, rule


def make_param_plan(optim_cfg: Any, shapes: Mapping[str, Sequence[int]]) -> ParamPlan:
    """Resolves ``optim_cfg.rules`` (default: everything trainable) over ``shapes``.

    Raises ``ValueError`` naming uncovered params or rules that match nothing.
    """
    shapes = {p: tuple(s) for p, s in shapes.items()}
    rules = tuple(
        _check_rule(i, item) for i, item in enumerate(optim_cfg.get("rules", DEFAULT_RULES))
    )
    if not rules:
        raise ValueError("config.optim.rules is empty; use [('.*', {})] to train everything")
    compiled = [re.compile(pattern) for pattern, _ in rules]
    rule_of: dict[str, int] = {}
    for path in shapes:
        for i, regex in enumerate(compiled):
            if regex.fullmatch(path):
                rule_of[path] = i
                break
    uncovered = [p for p in shapes if p not in rule_of]
    if uncovered:
        raise ValueError(
            f"config.optim.rules cover no rule for {len(uncovered)} params, e.g. "
            f"{', '.join(uncovered[:5])}; add a rule for them (e.g. ('.*', {{}}) last)"
        )
    for (pattern, _), regex in zip(rules, compiled, strict=True):
        if not any(regex.fullmatch(p) for p in shapes):
            raise ValueError(
                f"config.optim.rules: {pattern!r} matches no parameter (a typo?); "
                f"params look like {', '.join(list(shapes)[:3])}"
            )
    llrd = float(optim_cfg.get("llrd", 1.0) or 1.0)
    if not 0.0 < llrd <= 1.0:
        raise ValueError(f"config.optim.llrd must be in (0, 1] (1 = off), got {llrd}")
    layer_mult = llrd_multipliers(shapes, llrd)
    if llrd < 1.0 and all(m == 1.0 for m in layer_mult.values()):
        raise ValueError(
            f"config.optim.llrd = {llrd} reaches no layer: no tower with an embedding stage "
            "and TOWER/encoder/layer_<i> or TOWER/encoder/layers params; params look like "
            f"{', '.join(list(shapes)[:3])}"
        )
    base_wd = float(optim_cfg.get("weight_decay", 0.0))
    lr_mult, weight_decay = {}, {}
    for path, i in rule_of.items():
        rule = rules[i][1]
        if rule is None:
            continue
        scale = float(rule.get("lr_mult", 1.0))
        m = layer_mult[path]
        lr_mult[path] = tuple(scale * x for x in m) if isinstance(m, tuple) else scale * m
        decays = rule.get("decay")
        if decays is None:
            decays = default_decays(path, shapes[path])
        weight_decay[path] = base_wd * float(rule.get("wd_mult", 1.0)) if decays else 0.0
    return ParamPlan(rules, shapes, rule_of, lr_mult, weight_decay)
