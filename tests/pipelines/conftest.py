"""Helper modules beside the pipeline tests (``from pretrain_inputs import ...``) are importable."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
