"""Keep every tool's state inside the project and keep the tools quiet.

DVC, Prefect, BentoML and W&B write to the user's home by default and phone home; the CLI,
the pipelines, the service and the tests all start from these defaults (an explicitly set
variable always wins).
"""
from __future__ import annotations

import os
from pathlib import Path


def project_root(start: str | Path = ".") -> Path:
    """The project folder; for a queued `dvc exp run` (which runs in <project>/.dvc/tmp/exps/<tmp>),
    the project it was queued from, so its packaged models land in the real store."""
    start = Path(start).resolve()
    parts = start.parts
    for i in range(len(parts) - 2):
        if parts[i:i + 3] == (".dvc", "tmp", "exps"):
            return Path(*parts[:i])
    return start


def tool_env(root: str | Path = ".") -> dict[str, str]:
    root = project_root(root)
    return {
        "DVC_NO_ANALYTICS": "1",
        "DVC_SITE_CACHE_DIR": str(root / ".dvc_site_cache"),
        "BENTOML_HOME": str(root / ".bentoml"),
        "BENTOML_DO_NOT_TRACK": "true",
        "PREFECT_HOME": str(root / ".prefect"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
        "WANDB_DIR": str(root),
        "WANDB_CACHE_DIR": str(root / ".wandb_cache"),
        "WANDB_DATA_DIR": str(root / ".wandb_data"),
        "WANDB_CONFIG_DIR": str(root / ".wandb_config"),
        "WANDB_SILENT": "true",
    }


def apply_tool_env(root: str | Path = ".") -> None:
    for key, value in tool_env(root).items():
        os.environ.setdefault(key, value)
