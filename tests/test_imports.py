"""The engine imports no Qt and no napari (rule: compute apart from the GUI), and the package
itself imports nothing heavy, so napari starts fast."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import napari_gardenseg

# the dock widgets and their Qt plumbing; the layers' and the reader's modules import napari
# only inside their functions, so napari's plugin discovery and the batch workers stay light
GUI = {"_widget", "_widget_controls", "_worker", "_train_widget", "_adapt_widget", "_fit_panel"}


def _run(code: str) -> str:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.strip()


def test_the_engine_imports_neither_qt_nor_napari():
    names = [
        m.name
        for m in pkgutil.walk_packages(napari_gardenseg.__path__, "napari_gardenseg.")
        if m.name.rsplit(".", 1)[-1] not in GUI
    ]
    assert "napari_gardenseg._inference" in names and "napari_gardenseg.cli" in names
    loaded = _run(
        "import importlib, sys\n"
        f"for name in {names!r}: importlib.import_module(name)\n"
        "print(sorted(m for m in ('qtpy', 'PyQt5', 'PyQt6', 'PySide2', 'PySide6', 'napari', 'magicgui') if m in sys.modules))"
    )
    assert loaded == "[]"


def test_importing_the_package_loads_nothing_heavy():
    loaded = _run(
        "import sys, napari_gardenseg\n"
        "print(sorted(m for m in ('torch', 'torchvision', 'skimage', 'dask', 'scipy', 'pandas', 'qtpy') if m in sys.modules))"
    )
    assert loaded == "[]"
