"""``python -m napari_gardenseg``: the ``gardenseg`` command, for where the script is not on PATH
(a venv not activated, Windows' Scripts folder)."""

import sys

from .cli import main

sys.exit(main())
