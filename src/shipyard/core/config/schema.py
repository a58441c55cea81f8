"""The shape of the configuration, read from the models' type annotations.

Lists every documented key path (``environments.<name>.router.port``) and the keys a mapping
accepts at a given place, for the reference docs, the CLI and "did you mean" hints. It must not
validate values or know any section by name.
"""

from __future__ import annotations

import collections.abc
import types
from collections.abc import Sequence
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel
from pydantic.fields import FieldInfo

MAP_KEY_SEGMENT = "<name>"
"""How a key path writes the user-chosen key of a mapping, as in ``environments.<name>``."""

LIST_ITEM_SEGMENT = "[]"
"""How a key path writes an item of a list, as in ``notifications[].url``."""

_MAPPINGS = {dict, collections.abc.Mapping, collections.abc.MutableMapping}
_SEQUENCES = {
    list,
    tuple,
    set,
    frozenset,
    collections.abc.Sequence,
    collections.abc.MutableSequence,
    collections.abc.Set,
    collections.abc.MutableSet,
}


def yaml_key(name: str, field: FieldInfo) -> str:
    """The key a field is written as in YAML: its alias if it has one, else its name."""
    alias = field.validation_alias if isinstance(field.validation_alias, str) else field.alias
    return alias or name


def yaml_keys(model: type[BaseModel]) -> dict[str, str]:
    """Map every key the model accepts in YAML (aliases, and names when allowed) to its field."""
    by_name = bool(model.model_config.get("populate_by_name")) or bool(
        model.model_config.get("validate_by_name")
    )
    keys: dict[str, str] = {}
    for name, field in model.model_fields.items():
        keys[yaml_key(name, field)] = name
    if by_name:
        for name in model.model_fields:
            keys.setdefault(name, name)
    return keys


def key_paths(model: type[BaseModel]) -> list[str]:
    """Every key path the model documents, depth first, in field order."""
    paths: list[str] = []
    _walk_model(model, "", paths, ())
    return list(dict.fromkeys(paths))


def allowed_keys(model: type[BaseModel], loc: Sequence[str | int]) -> list[str]:
    """The keys accepted by the mapping at ``loc`` (a pydantic error location) under ``model``."""
    current: list[Any] = [model]
    for part in loc:
        members = [member for tp in current for member in _members(tp)]
        stepped = [nxt for member in members for nxt in _step(member, part)]
        if stepped:
            current = stepped
            continue
        # Not a key or an index: pydantic names the union member it tried (a tag); follow it.
        tagged = [m for m in members if isinstance(m, type) and m.__name__ == part]
        current = tagged or members
    keys: dict[str, None] = {}
    for tp in current:
        for member in _members(tp):
            if _is_model(member):
                keys.update(dict.fromkeys(yaml_key(n, f) for n, f in member.model_fields.items()))
    return list(keys)


def _is_model(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, BaseModel)


def _members(tp: Any) -> list[Any]:
    """The concrete types ``tp`` stands for, with Annotated and unions unwrapped."""
    origin = get_origin(tp)
    if origin is Annotated:
        return _members(get_args(tp)[0])
    if origin is Union or origin is types.UnionType:
        return [member for arg in get_args(tp) for member in _members(arg)]
    return [tp]


def _step(tp: Any, part: str | int) -> list[Any]:
    """The types one level below ``tp`` when following ``part``; empty if it does not fit."""
    if _is_model(tp):
        name = yaml_keys(tp).get(part) if isinstance(part, str) else None
        return [tp.model_fields[name].annotation] if name is not None else []
    origin = get_origin(tp)
    args = get_args(tp)
    if origin in _MAPPINGS and len(args) == 2 and isinstance(part, str):
        return [args[1]]
    if origin in _SEQUENCES and args and isinstance(part, int):
        return [arg for arg in args if arg is not Ellipsis]
    return []


def _walk_model(
    model: type[BaseModel], prefix: str, paths: list[str], open_models: tuple[type, ...]
) -> None:
    if model in open_models:
        return
    if model.model_config.get("extra") == "allow":
        paths.append(f"{prefix}.{MAP_KEY_SEGMENT}" if prefix else MAP_KEY_SEGMENT)
    for name, field in model.model_fields.items():
        path = f"{prefix}.{yaml_key(name, field)}" if prefix else yaml_key(name, field)
        paths.append(path)
        _walk_type(field.annotation, path, paths, (*open_models, model))


def _walk_type(tp: Any, path: str, paths: list[str], open_models: tuple[type, ...]) -> None:
    for member in _members(tp):
        if _is_model(member):
            _walk_model(member, path, paths, open_models)
            continue
        origin = get_origin(member)
        args = get_args(member)
        if origin in _MAPPINGS and len(args) == 2:
            _walk_type(args[1], f"{path}.{MAP_KEY_SEGMENT}", paths, open_models)
        elif origin in _SEQUENCES:
            for arg in args:
                if arg is not Ellipsis:
                    _walk_type(arg, f"{path}{LIST_ITEM_SEGMENT}", paths, open_models)
