"""Configs stored by older jaxpcam versions (config.json, a checkpoint's config item) in today's
shape, for whatever reads them back: resume's comparison, evaluate/predict/export building the
model, the report's and sweeps' grouping.

Up to commit f528f22 every model shared one flat section: a run stored all six model keys
(name, hidden_units, dropout_rate, num_classes, conv_features, resnet_blocks) whatever its
model. Today the section holds exactly the keys its model takes (jaxpcam/models/__init__.py).
"""

import ml_collections

from jaxpcam.config import base_config
from jaxpcam.models import model_defaults, model_names


def migrate(config: dict | ml_collections.ConfigDict) -> dict:
    """``config`` as today's code writes it: the model keys its model does not take dropped (they
    never changed what it built). A config already in today's shape, or naming a model this code
    does not have, comes back equal. Pure: ``config`` itself is left as it was."""
    out = config.to_dict() if isinstance(config, ml_collections.ConfigDict) else dict(config)
    model = out.get("model")
    if not isinstance(model, dict) or model.get("name") not in model_names():
        return out
    takes = {"name", *model_defaults(model["name"])}
    out["model"] = {key: value for key, value in model.items() if key in takes}
    return out


def with_defaults(config: dict | ml_collections.ConfigDict) -> dict:
    """migrate(config) with any key it lacks (a run made before the key existed) at its
    base_config() value: how a stored config compares with today's. The model section stays as
    stored: each model key has existed as long as its model, and base_config() holds only the MLP's."""
    stored, defaults = migrate(config), base_config().to_dict()
    del defaults["model"]
    merged = {**defaults, **stored}
    for section, values in defaults.items():
        if isinstance(values, dict) and isinstance(stored.get(section), dict):
            merged[section] = {**values, **stored[section]}
    return merged
