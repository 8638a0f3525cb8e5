"""The Prefect side of vlmix: the build-pretrain-mix flow and the local launcher.

The stages and their order live in :mod:`flows.registry` (``STAGE_NAMES``), which imports no Prefect.
"""
