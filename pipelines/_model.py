"""The base class of every configuration object in vlmix.

Configuration is plain YAML checked by pydantic models. Every model forbids unknown keys, so a
typo (``punsfe: 0.5``) fails at load time instead of silently meaning "no filter".
"""

from pydantic import BaseModel, ConfigDict


class ConfigModel(BaseModel):
    """Strict, immutable pydantic model: unknown keys are errors, values are validated on build."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


# A field's ``json_schema_extra`` marker: how much of the machine a stage uses (workers, actors, threads,
# requests in flight, resources each reserves), never what it produces. Such fields are left out of a
# config's fingerprint, so the same mixture on 1 node or 20 carries the same config hash.
EXECUTION_ONLY = {"execution_only": True}


def without_execution_fields(model: BaseModel, data: dict) -> dict:
    """``data`` (``model``'s ``model_dump(mode="json")``, possibly with keys excluded already) with the
    fields marked :data:`EXECUTION_ONLY` removed, at every level of nesting."""
    for name, info in type(model).model_fields.items():
        if name not in data:
            continue
        extra = info.json_schema_extra
        if isinstance(extra, dict) and extra.get("execution_only"):
            del data[name]
            continue
        value, dumped = getattr(model, name), data[name]
        if isinstance(value, BaseModel) and isinstance(dumped, dict):
            without_execution_fields(value, dumped)
        elif isinstance(value, (list, tuple)) and isinstance(dumped, list):
            for item, item_data in zip(value, dumped, strict=True):
                if isinstance(item, BaseModel) and isinstance(item_data, dict):
                    without_execution_fields(item, item_data)
        elif isinstance(value, dict) and isinstance(dumped, dict):
            for key, item in value.items():
                if isinstance(item, BaseModel) and isinstance(dumped.get(key), dict):
                    without_execution_fields(item, dumped[key])
    return data
