"""Optimization: ``optimizer`` (optax optimizers over the trainable params, EMA),
``schedules`` (learning-rate schedules) and ``param_rules`` (regex rules over param
paths: freezing, lr / weight-decay multipliers, layer-wise decay)."""
