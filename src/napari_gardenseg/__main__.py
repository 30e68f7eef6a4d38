"""``python -m napari_gardenseg``: the ``gardenseg`` command, for where the script is not on PATH
(a venv not activated, Windows' Scripts folder)."""

import sys

from .cli import main

if __name__ == "__main__":  # imported (pkgutil, documentation tools): nothing runs
    sys.exit(main())
