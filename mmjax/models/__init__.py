"""Flax Linen modules: the transformer, encoders and towers."""
