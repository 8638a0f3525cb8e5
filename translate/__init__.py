"""Translating English annotations with the InternVL 1.5 report's Figure-5 prompt, through vLLM.

Public face:

- :func:`build_messages`, :data:`PROMPT_VERSION`: the prompt as chat messages;
- :class:`Translator`, :class:`ChatClient`: the same in pieces, for an existing event loop;
- :class:`TranslateSettings`: the stage's settings; :class:`OfflineEngine`, :class:`EngineClient`: vLLM's
  offline engine in a child process, and the chat interface over it; :func:`launched_servers`: vLLM
  servers on Ray.

Output contract: translate/README.md. Running it over a mixture config (``vlmix translate``,
``flows.translation.run_translation``) chooses the sources, parts and targets from the config, in ``flows/``;
:func:`translate.run.translate_parts` runs them.
"""

from pipelines._imports import lazy_exports
from translate.prompt import PROMPT_VERSION, build_messages
from translate.settings import TranslateSettings, ValidationSettings, VllmServers

# Everything else loads on first use: importing `translate` stays cheap (no aiohttp, no Ray) for
# config loading, which needs only the settings above.
_LAZY = {
    "ChatClient": "translate.client", "ServerUnavailable": "translate.client",
    "EngineClient": "translate.engine", "EngineDied": "translate.engine", "OfflineEngine": "translate.engine",
    "ServerStartError": "translate.launch", "VllmProcess": "translate.launch", "launched_servers": "translate.launch",
    "PartStats": "translate.stats", "TargetReport": "translate.stats", "Translator": "translate.translator",
    "OUTPUT_SCHEMA": "translate.table",
}


__getattr__ = lazy_exports(__name__, _LAZY, extra="translate")

__all__ = [
    "OUTPUT_SCHEMA",
    "PROMPT_VERSION",
    "ChatClient",
    "EngineClient",
    "EngineDied",
    "OfflineEngine",
    "PartStats",
    "ServerStartError",
    "ServerUnavailable",
    "TargetReport",
    "TranslateSettings",
    "Translator",
    "ValidationSettings",
    "VllmProcess",
    "VllmServers",
    "build_messages",
    "launched_servers",
]
