"""The base class of every configuration object in vlmix.

Configuration is plain YAML checked by pydantic models. Every model forbids unknown keys, so a
typo (``punsfe: 0.5``) fails at load time instead of silently meaning "no filter".
"""

from pydantic import BaseModel, ConfigDict


class ConfigModel(BaseModel):
    """Strict, immutable pydantic model: unknown keys are errors, values are validated on build."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)
