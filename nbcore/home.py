"""Where nbcore keeps its files: ``NBCORE_HOME`` (default: the user cache folder)."""
import os
from pathlib import Path


#: The variables that move the cache, the first one set winning.
HOME_VARIABLES = ("NBCORE_HOME", "NERFBASELINES_PREFIX")


def home_variable():
    """The variable that sets the cache folder, or None for the default."""
    return next((name for name in HOME_VARIABLES if os.environ.get(name)), None)


def nbcore_home() -> Path:
    """The root of every nbcore cache; ``NBCORE_HOME`` moves all of them at once."""
    variable = home_variable()
    if variable:
        return Path(os.environ[variable]).expanduser().resolve()
    import platformdirs

    return Path(platformdirs.user_cache_dir("nbcore", appauthor=False))
