"""Which W&B mode a job runs in: WANDB_MODE (or WANDB_DISABLED) wins, then params'
``tracking.wandb.mode``; ``auto`` is online only when an API key is configured. Reads the
environment and files only; never the network."""
from __future__ import annotations

import netrc
import os
from pathlib import Path
from urllib.parse import urlsplit

from .config import WandbConfig

# The hosts whose netrc entry counts as a configured key when WANDB_BASE_URL is not set
# (wandb 0.31's default API host and the W&B SaaS host behind it).
DEFAULT_API_HOSTS = ("api.forge.coreweave.com", "api.wandb.ai")
_ENV_MODES = {"online": "online", "run": "online", "offline": "offline", "dryrun": "offline",
              "disabled": "disabled"}



def _netrc_path() -> Path | None:
    if os.environ.get("NETRC"):
        return Path(os.environ["NETRC"]).expanduser()
    for name in ("~/.netrc", "~/_netrc"):
        path = Path(name).expanduser()
        if path.exists():
            return path
    return None


def api_key_configured() -> bool:
    """True when W&B could authenticate without asking: an API key (or identity token file) in
    the environment, or a netrc entry for the W&B API host. Reads files only; no network."""
    if os.environ.get("WANDB_API_KEY") or os.environ.get("WANDB_IDENTITY_TOKEN_FILE"):
        return True
    path = _netrc_path()
    if path is None or not path.is_file():
        return False
    base = os.environ.get("WANDB_BASE_URL")
    hosts = [urlsplit(base).netloc] if base else list(DEFAULT_API_HOSTS)
    try:
        entries = netrc.netrc(str(path))
    except (netrc.NetrcParseError, OSError):
        return False
    return any((entries.authenticators(h) or (None, None, None))[2] for h in hosts if h)


def resolve_mode(wc: WandbConfig) -> tuple[str, str]:
    """(online | offline | disabled, why). WANDB_MODE (and WANDB_DISABLED) win over params."""
    if os.environ.get("WANDB_DISABLED", "").lower() in ("true", "1", "yes"):
        return "disabled", "WANDB_DISABLED is set"
    env = os.environ.get("WANDB_MODE", "").strip().lower()
    if env in _ENV_MODES:
        return _ENV_MODES[env], f"WANDB_MODE={env}"
    if wc.mode != "auto":
        return wc.mode, f"tracking.wandb.mode={wc.mode}"
    if api_key_configured():
        return "online", "auto: an API key is configured"
    return "offline", "auto: no API key configured"
