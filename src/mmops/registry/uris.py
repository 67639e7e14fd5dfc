"""Which models a caller may name. The registry is a code-execution boundary: loading a model
runs the code logged with it, so whatever takes a model URI from outside (a deployment's
parameters) accepts only a registered version of the configured model, never a run, a path or
another model."""

from __future__ import annotations

import re

_REGISTERED = re.compile(r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[A-Za-z0-9_-]+)|/(?P<version>[1-9][0-9]*))$")


def registered_model_uri(uri: str, model_name: str) -> str:
    """`uri` if it names `model_name` by alias (`models:/<name>@champion`) or version
    (`models:/<name>/3`); a ValueError saying what is accepted otherwise."""
    match = _REGISTERED.match(uri.strip())
    if not match or match["name"] != model_name:
        raise ValueError(f"model {uri!r} refused: only a registered version of {model_name}, by alias or number "
                         f"(models:/{model_name}@champion, models:/{model_name}/3); loading a model runs its "
                         "logged code, so runs, paths and other models are not accepted")
    return uri.strip()
