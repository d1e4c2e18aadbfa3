"""``config.mesh.rules`` overrides the default logical-axis rules by name, and the batch
sharding comes from the rules (flax's ``logical_to_mesh_axes`` is the reference)."""

import flax.linen as nn
import jax
import pytest
from jax.sharding import PartitionSpec

from mmjax.config import ConfigError
from mmjax.parallel import sharding


def test_an_override_replaces_only_the_entry_it_names():
    rules = dict(sharding.logical_rules({"rules": [("activation_length", "tensor")]}))
    expected = dict(sharding.DEFAULT_RULES)
    expected["activation_length"] = "tensor"
    assert rules == expected


def test_the_full_default_list_and_no_list_are_the_defaults():
    full = [list(r) for r in sharding.DEFAULT_RULES]  # as a JSON config would hold it
    assert sharding.logical_rules({"rules": full}) == sharding.logical_rules({})
    assert dict(sharding.logical_rules({})) == dict(sharding.DEFAULT_RULES)


def test_a_new_name_is_appended():
    rules = sharding.logical_rules({"rules": [("experts", "tensor")]})
    assert rules[-1] == ("experts", "tensor")
    assert nn.logical_to_mesh_axes(("experts",), rules) == PartitionSpec("tensor")


@pytest.mark.parametrize(
    "rules, words",
    [
        ([("embed", "fsdp"), ("embed", None)], "more than once: ['embed']"),
        ([("mlp", "model")], "'mlp' maps to unknown mesh axis 'model'"),
    ],
)
def test_bad_rules_name_the_key(rules, words):
    with pytest.raises(ConfigError, match="config.mesh.rules") as err:
        sharding.logical_rules({"rules": rules})
    assert words in str(err.value)


def test_batch_sharding_follows_the_activation_batch_rule():
    mesh = sharding.make_mesh(dict(data=1, fsdp=1, tensor=1), jax.devices()[:1])
    default = sharding.batch_sharding(mesh, sharding.logical_rules({}))
    assert default.spec == PartitionSpec(("data", "fsdp"))
    data_only = sharding.logical_rules({"rules": [("activation_batch", "data")]})
    assert sharding.batch_sharding(mesh, data_only).spec == PartitionSpec("data")


def test_params_and_activations_have_separate_names():
    """Under ZeRO-3 a param's embed axis is split over fsdp while the activations' embed
    stays whole, so the two must not share a logical name."""
    rules = sharding.DEFAULT_RULES
    param = nn.logical_to_mesh_axes(("embed", "mlp"), rules)
    act = nn.logical_to_mesh_axes(
        ("activation_batch", "activation_length", "activation_embed"), rules
    )
    assert param == PartitionSpec("fsdp", "tensor")
    assert act == PartitionSpec(("data", "fsdp"), None, None)
    assert not {n for n, _ in sharding.PARAM_RULES} & {n for n, _ in sharding.ACTIVATION_RULES}


def test_batch_sharding_reads_the_enclosing_rules():
    """Inside the loop's ``nn.logical_axis_rules`` a call without rules uses the run's."""
    mesh = sharding.make_mesh(dict(data=1, fsdp=1, tensor=1), jax.devices()[:1])
    assert sharding.batch_sharding(mesh).spec == PartitionSpec(("data", "fsdp"))
    with nn.logical_axis_rules(sharding.logical_rules({"rules": [("activation_batch", "fsdp")]})):
        assert sharding.batch_sharding(mesh).spec == PartitionSpec("fsdp")
