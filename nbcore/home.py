"""Where nbcore keeps its files: ``NBCORE_HOME`` (default: the user cache folder)."""
import os
from pathlib import Path


def nbcore_home() -> Path:
    """The root of every nbcore cache; ``NBCORE_HOME`` moves all of them at once."""
    explicit = os.environ.get("NBCORE_HOME") or os.environ.get("NERFBASELINES_PREFIX")
    if explicit:
        return Path(explicit).expanduser().resolve()
    import platformdirs

    return Path(platformdirs.user_cache_dir("nbcore", appauthor=False))
