"""The model a run's settings describe, and whether a saved model is that model.

A run folder's ``config.json`` is a file on disk and may have been edited after the run's
model was saved. Every reader that takes both (a resume, ``evaluate``, ``sample``,
``explore``) builds the model the settings describe and compares it with the saved one —
each layer's settings and every weight's shape — so that neither can speak for the other.
"""

from __future__ import annotations

import json

from vaelab.core.config import TrainConfig, UsageError
from vaelab.core.convolutions import KERAS_EQUIVALENTS
from vaelab.core.keras_seam import seeded
from vaelab.core.models.mlp import build_vae
from vaelab.core.models.vae import VAE

REMEDY = "put back the config.json the run was made with, or train the run again"


def build_described(config: TrainConfig, input_dim: int) -> VAE:
    """An uncompiled VAE as ``config`` describes it for images of ``input_dim`` pixels; its
    initial weights depend on ``config.seed`` only (the output bias is not set from data)."""
    config = config.for_data(input_dim)
    with seeded(config.seed):
        return build_vae(input_dim, config.hidden, config.latents[0],
                         config.effective_kl_scale(input_dim), seed=config.seed,
                         likelihood=config.likelihood, activation=config.activation,
                         model=config.model, classes=config.classes or 0,
                         free_bits=config.free_bits, objective=config.objective,
                         upper=list(zip(config.latents[1:], config.hidden_groups[1:])),
                         flow_steps=config.flow_steps, components=config.pseudo_inputs,
                         flow_context=config.flow_context)


def _settings(vae: VAE) -> dict:
    """The model's settings as JSON would hold them (tuples as lists), without what does not
    change the model: Keras' record of the shapes it was built on, and where a layer's class
    is defined (vaelab's convolutions stand for Keras' own: models saved before them hold
    those)."""

    def plain(value):
        if isinstance(value, dict):
            value = {k: plain(v) for k, v in value.items()
                     if k not in ("build_config", "module", "registered_name")}
            if value.get("class_name") in KERAS_EQUIVALENTS:
                value["class_name"] = KERAS_EQUIVALENTS[value["class_name"]]
            return value
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        return value

    return json.loads(json.dumps(plain(vae.model.get_config()), default=str))


def _layer_names(settings) -> list[str]:
    """Every layer's name in ``settings``, nested models included, in their order."""
    if isinstance(settings, list):
        return [name for item in settings for name in _layer_names(item)]
    if not isinstance(settings, dict):
        return []
    own = ([settings["name"]] if "class_name" in settings and isinstance(settings.get("name"), str)
           else [])
    return own + [name for key, item in settings.items() if key != "inbound_nodes"
                  for name in _layer_names(item)]


def _renamed(settings, names: dict):
    """``settings`` with the layer names of ``names`` replaced (strings only)."""
    if isinstance(settings, dict):
        return {k: _renamed(v, names) for k, v in settings.items()}
    if isinstance(settings, list):
        return [_renamed(v, names) for v in settings]
    return names.get(settings, settings) if isinstance(settings, str) else settings


def _named_alike(saved, described):
    """``saved`` with its layers named as the same layers of ``described``: a layer without
    a name of its own is named by a counter Keras keeps per process (``reshape_39``), so two
    builds of one model differ in those names. Layers pair up by their order."""
    ours, theirs = _layer_names(saved), _layer_names(described)
    names = dict(zip(ours, theirs))
    if len(ours) != len(theirs) or any(names[a] != b for a, b in zip(ours, theirs)):
        return saved  # not the same layers: the difference shows without renaming
    return _renamed(saved, {a: b for a, b in names.items() if a != b})


def _first_difference(saved, described, layers: tuple = (), key: str = "") -> str | None:
    """Where two models' settings first differ, in words (``layers``: the names of the
    layers around, ``key``: the setting; a layer's plain settings before its sub-layers);
    ``None`` when they agree."""
    at = f"{'/'.join(layers)}'s " if layers else "the model's "
    if isinstance(saved, dict) and isinstance(described, dict):
        inner = saved.get("config")
        if isinstance(inner, dict) and isinstance(inner.get("name"), str):
            layers = (*layers, inner["name"])
        names = [*saved, *(k for k in described if k not in saved)]
        for name in sorted(names, key=lambda n: isinstance(saved.get(n), (dict, list))):
            if name not in saved or name not in described:
                holder = "the saved model" if name in saved else "config.json"
                return f"{at}{name} is only in {holder}"
            found = _first_difference(saved[name], described[name], layers,
                                      key if name == "config" else name)
            if found:
                return found
        return None
    if isinstance(saved, list) and isinstance(described, list):
        if len(saved) != len(described):
            return f"{at}{key}: {len(saved)} in the saved model, {len(described)} in config.json"
        return next((found for a, b in zip(saved, described)
                     if (found := _first_difference(a, b, layers, key))), None)
    if saved != described:
        return f"{at}{key} is {saved!r} in the saved model, {described!r} in config.json"
    return None


def _weight_difference(saved: VAE, described: VAE) -> str | None:
    """The first weight whose shape differs (weights pair up by their order)."""
    ours, theirs = saved.model.weights, described.model.weights
    for mine, other in zip(ours, theirs):
        if tuple(mine.shape) != tuple(other.shape):
            return (f"weight {other.path} has shape {tuple(mine.shape)} in the saved model, "
                    f"{tuple(other.shape)} in config.json")
    if len(ours) != len(theirs):
        return f"the model has {len(ours)} weights in the saved model, {len(theirs)} in config.json"
    return None


def check_described(vae: VAE, config: TrainConfig, source, config_path) -> None:
    """``UsageError`` naming the first difference when ``vae`` (read from ``source``) is not
    the model ``config`` (read from ``config_path``) describes."""
    try:
        described = build_described(config, vae.input_dim)
    except ValueError as exc:  # settings no model of these images has
        raise UsageError(f"{config_path} does not describe {source}: {exc}; {REMEDY}") from None
    ours, theirs = _settings(vae), _settings(described)
    difference = (_first_difference(_named_alike(ours, theirs), theirs)
                  or _weight_difference(vae, described))
    if difference:
        raise UsageError(f"{config_path} does not describe {source}: {difference}; {REMEDY}")
