"""The Prefect side of vlmix: the build-pretrain-mix flow and the local launcher."""

# The flow's stages, in order (here so that the launcher knows them without importing Prefect).
STAGES = ("download", "ocr", "translate", "tasks", "mix", "train")
