"""``python -m nbcore.worker``: the worker process the host starts inside an environment (see :mod:`.serve`)."""
from .serve import main

if __name__ == "__main__":
    main()
