"""The npe2 manifest: valid, found through the installed entry point, shipped in wheels."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

npe2 = pytest.importorskip("npe2")

ROOT = Path(__file__).resolve().parents[1]
# the one manifest, a real file in the package (a symlink is a text file in a checkout without
# symlinks, git's default on Windows, and such a wheel's manifest would not load); the root's
# napari.yaml is a symlink to it
MANIFEST = ROOT / "src" / "napari_gardenseg" / "napari.yaml"


def test_manifest_is_valid():
    pm = npe2.PluginManifest.from_file(MANIFEST)
    assert pm.name == "napari-gardenseg"
    result = subprocess.run([sys.executable, "-m", "npe2", "validate", str(MANIFEST)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_manifest_is_one_real_file_in_the_package():
    assert not MANIFEST.is_symlink()
    # the root's napari.yaml (where the design card puts it) links to it: one file, no copy to drift,
    # and a checkout without symlinks breaks only this link, never the wheel's manifest
    root = ROOT / "napari.yaml"
    assert root.is_symlink() and os.readlink(root) == "src/napari_gardenseg/napari.yaml"
    assert root.read_bytes() == MANIFEST.read_bytes()


def test_installed_plugin_is_discovered_with_its_contributions():
    pm = npe2.PluginManager.instance()
    pm.discover()
    mf = pm.get_manifest("napari-gardenseg")
    widgets = {w.display_name: w.command for w in mf.contributions.widgets}
    assert widgets == {
        "Garden segmentation": "napari-gardenseg.segmentation_widget",
        "Train on my labels": "napari-gardenseg.train_widget",
        "Adapt to these photos": "napari-gardenseg.adapt_widget",  # the panel the widget's hint names
    }
    commands = {c.id: c.python_name for c in mf.contributions.commands}
    assert commands["napari-gardenseg.segmentation_widget"] == "napari_gardenseg._widget:SegmentationWidget"
    assert commands["napari-gardenseg.train_widget"] == "napari_gardenseg._train_widget:TrainWidget"
    assert commands["napari-gardenseg.adapt_widget"] == "napari_gardenseg._adapt_widget:AdaptWidget"
    assert commands["napari-gardenseg.garden_sample"] == "napari_gardenseg._sample_data:garden_sample"
    photo, synthetic = mf.contributions.sample_data
    assert photo.display_name.startswith("Seedling tray (photograph")
    assert synthetic.display_name == "Garden (synthetic)"
    menu = mf.contributions.menus["napari/layers/segment"]
    assert [item.command for item in menu] == ["napari-gardenseg.segmentation_widget"]
    [writer] = mf.contributions.writers  # File > Save Selected Layers of one Labels layer
    assert (writer.command, list(writer.layer_types), list(writer.filename_extensions)) == (
        "napari-gardenseg.write_labels",
        ["labels"],
        [".tif", ".tiff"],
    )


def test_segment_menu_is_one_napari_accepts():
    from importlib.metadata import version

    try:  # napari's private module: if it moves, this test must be rewritten, not skipped
        from napari._app_model.constants import _menus as menus
    except ImportError as exc:
        pytest.fail(f"napari {version('napari')} moved its menu ids ({exc}): check the manifest's menus another way")
    mf = npe2.PluginManifest.from_file(MANIFEST)
    for menu_id in mf.contributions.menus:
        assert menus.is_menu_contributable(menu_id), menu_id


def test_every_command_imports():
    """Every python_name in the manifest resolves to a callable."""
    import importlib

    mf = npe2.PluginManifest.from_file(MANIFEST)
    for cmd in mf.contributions.commands:
        module, _, attr = cmd.python_name.partition(":")
        assert callable(getattr(importlib.import_module(module), attr)), cmd.python_name


def test_every_widget_takes_the_viewer_by_the_same_name_and_annotation():
    """napari passes the viewer to a widget parameter annotated napari.viewer.Viewer."""
    import inspect

    from napari_gardenseg._adapt_widget import AdaptWidget
    from napari_gardenseg._train_widget import TrainWidget
    from napari_gardenseg._widget import SegmentationWidget

    for widget in (SegmentationWidget, TrainWidget, AdaptWidget):
        params = list(inspect.signature(widget.__init__).parameters.values())[1:]  # after self
        assert [p.name for p in params] == ["viewer"], widget
        assert str(params[0].annotation) == "napari.viewer.Viewer", widget


def test_sample_data():
    from napari_gardenseg._sample_data import garden_sample, photo_sample

    ((data, meta, kind),) = garden_sample()
    assert kind == "image" and meta == {"name": "garden"}
    assert data.shape == (768, 1024, 3) and data.dtype.name == "uint8"
    ((photo, meta, kind),) = photo_sample()
    assert kind == "image" and meta == {"name": "seedling tray"}
    assert photo.shape == (972, 1296, 3) and photo.dtype.name == "uint8"
    # a photograph of green plants on dark soil: plant-coloured pixels, neither none nor all
    green = (photo[..., 1].astype(int) - photo[..., 0] > 20) & (photo[..., 1].astype(int) - photo[..., 2] > 20)
    assert 0.02 < green.mean() < 0.3


def test_sample_photo_is_credited():
    """The photo ships with its credit and licence (CC BY 4.0 asks for both)."""
    credits = (ROOT / "src" / "napari_gardenseg" / "data" / "CREDITS.md").read_text()
    assert "seedling_tray.jpg" in credits and "CC BY 4.0" in credits and "Danforth" in credits


def _has_build_backend() -> bool:
    from importlib.metadata import PackageNotFoundError, version

    try:
        major = int(version("setuptools").split(".")[0])
        version("wheel")
    except (PackageNotFoundError, ValueError):
        return False
    return major >= 77  # pyproject.toml's build-system requirement


def _build_wheel(tmp_path) -> Path:
    """Build from a copy of the sources (setuptools writes build/ and *.egg-info beside them)."""
    pytest.importorskip("build")
    src = tmp_path / "src_copy"
    src.mkdir()
    for name in ("pyproject.toml", "MANIFEST.in", "README.md", "LICENSE"):
        if (ROOT / name).exists():
            shutil.copy2(ROOT / name, src / name)
    shutil.copytree(
        ROOT / "src",
        src / "src",
        symlinks=True,  # a symlink in the sources would stay one, as in a checkout
        ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"),
    )
    out = tmp_path / "dist"
    # Built in this environment with the backend pyproject asks for (offline: an isolated build
    # would fetch it from PyPI); `.ci/run` installs it with the test extra
    if not _has_build_backend():
        pytest.fail("setuptools>=77 and wheel are needed to build the wheel offline: pip install -e '.[test]'")
    result = subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(out), str(src)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    (wheel,) = out.glob("*.whl")
    return wheel


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    return _build_wheel(tmp_path_factory.mktemp("wheel"))


def test_wheel_ships_the_manifest_as_a_real_file(wheel):
    with zipfile.ZipFile(wheel) as zf:
        info = zf.getinfo("napari_gardenseg/napari.yaml")
        mode = info.external_attr >> 16
        assert mode == 0 or (mode & 0o170000) == 0o100000  # a regular file, not a symlink entry
        assert zf.read(info) == MANIFEST.read_bytes()
        names = zf.namelist()
        assert "napari_gardenseg/data/garden_sample.png" in names
        assert "napari_gardenseg/data/seedling_tray.jpg" in names
        assert "napari_gardenseg/data/CREDITS.md" in names
        assert "napari_gardenseg/py.typed" in names  # type hints are part of the package
        (licence,) = [n for n in names if n.endswith(".dist-info/licenses/LICENSE")]
        assert zf.read(licence) == (ROOT / "LICENSE").read_bytes()
        assert "BSD 3-Clause" in zf.read(licence).decode()
        (metadata,) = [n for n in names if n.endswith(".dist-info/METADATA")]
        meta = zf.read(metadata).decode()
        # the code's licence and the sample photo's (CC BY 4.0, credited in CREDITS.md, shipped as a licence file)
        assert "License-Expression: BSD-3-Clause AND CC-BY-4.0" in meta
        assert any(n.endswith(".dist-info/licenses/src/napari_gardenseg/data/CREDITS.md") for n in names), names
        (ep,) = [n for n in zf.namelist() if n.endswith(".dist-info/entry_points.txt")]
        entry_points = zf.read(ep).decode()
    assert "[napari.manifest]" in entry_points
    assert "napari-gardenseg = napari_gardenseg:napari.yaml" in entry_points


def test_installed_wheel_is_a_working_plugin(wheel, tmp_path):
    """Install the wheel alone (--no-deps) into a folder put first on sys.path; npe2 must read its manifest."""
    target = tmp_path / "site"
    result = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--target", str(target), str(wheel)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert not (target / "napari_gardenseg" / "napari.yaml").is_symlink()
    probe = (
        "import napari_gardenseg, npe2, pathlib, sys\n"
        "assert pathlib.Path(napari_gardenseg.__file__).is_relative_to(sys.argv[1]), napari_gardenseg.__file__\n"
        "mf = npe2.PluginManifest.from_distribution('napari-gardenseg')\n"
        "print(mf.name, len(mf.contributions.widgets))\n"
        "from napari_gardenseg._sample_data import load_garden_sample\n"
        "print(load_garden_sample().shape)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(target)}
    result = subprocess.run(
        [sys.executable, "-c", probe, str(target)], capture_output=True, text=True, env=env, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split("\n")[:2] == ["napari-gardenseg 3", "(768, 1024, 3)"]


@pytest.mark.parametrize("name", ["portrait.JPG", "portrait.jfif", "portrait.avif"])
def test_photo_reader_opens_a_portrait_jpeg_upright(tmp_path, name):
    """A phone photo stored landscape with EXIF orientation 6 (rotate 90 degrees clockwise) opens upright:
    JPEG, and AVIF (Android's, whose irot/imir Pillow gives as the orientation), which napari's reader
    showed on its side while the batch read it upright."""
    from PIL import Image, features

    from napari_gardenseg._napari_reader import get_reader

    if name.endswith(".avif") and not features.check("avif"):
        pytest.skip(f"this Pillow ({Image.__version__}) was built without AVIF")  # wheels from 11.3 have it
    stored = np.zeros((40, 60, 3), np.uint8)
    stored[:10, :10] = (255, 0, 0)  # a red corner: stored top-left
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / name
    Image.fromarray(stored).save(path, quality=95, exif=exif)

    reader = get_reader(str(path))
    assert reader is not None
    ((data, meta, kind),) = reader(str(path))
    assert kind == "image" and meta["rgb"] and meta["name"] == "portrait"
    assert data.shape == (60, 40, 3)  # turned: portrait
    assert data[5, -5, 0] > 200 and data[5, -5, 1] < 60  # top-left went to top-right, as a viewer shows it
    assert meta["metadata"]["gardenseg_read"]["exif_orientation"] == 6
    assert get_reader(str(tmp_path / "labels.png")) is None  # other formats stay with napari's readers
    assert get_reader([str(path), str(path)]) is not None


def test_photo_reader_is_contributed_for_photo_formats_only():
    from napari_gardenseg._napari_reader import PHOTO_SUFFIXES

    mf = npe2.PluginManifest.from_file(MANIFEST)
    reader, labels_reader, coco_reader, yolo_reader = mf.contributions.readers
    assert reader.command == "napari-gardenseg.read_photos"
    assert coco_reader.command == "napari-gardenseg.read_coco" and set(coco_reader.filename_patterns) == {
        "*.json",
        "*.JSON",
    }
    assert yolo_reader.command == "napari-gardenseg.read_yolo" and set(yolo_reader.filename_patterns) == {
        "*.yaml",
        "*.yml",
        "*.YAML",
        "*.YML",
    }
    # label images (the batch's outputs, gardenseg train's inputs) by name only, never every TIFF or PNG
    assert labels_reader.command == "napari-gardenseg.read_labels"
    assert all(p.startswith(("*_labels.", "*_labels_crf.")) for p in labels_reader.filename_patterns)
    assert not any("png" in p or "tif" in p for p in reader.filename_patterns)
    # every suffix the reader takes is offered to napari, in both cases
    assert {p for p in reader.filename_patterns} == {f"*{s}" for s in PHOTO_SUFFIXES} | {
        f"*{s.upper()}" for s in PHOTO_SUFFIXES
    }
    assert "*.heic" in reader.filename_patterns


# Modules the package may import without declaring them: the Qt shims napari brings (a napari
# plugin declares no Qt binding of its own).
FROM_NAPARI = {"qtpy", "superqt"}


def test_every_third_party_import_is_a_declared_dependency():
    # a module imported but left to arrive through another package breaks when that package
    # stops bringing it, or brings an older version (as napari allows older scikit-image)
    import ast
    import importlib.metadata as md
    import re
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = project["dependencies"] + sum(project["optional-dependencies"].values(), [])

    def norm(name):
        return re.sub(r"[-_.]+", "-", name).lower()

    declared = {norm(re.match(r"[A-Za-z0-9_.\-]+", r).group()) for r in requirements}
    imported = set()
    for path in (ROOT / "src" / "napari_gardenseg").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                imported.update(a.name.split(".")[0] for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                imported.add(node.module.split(".")[0])
    dists = md.packages_distributions()
    third_party = {m for m in imported if m in dists and m != "napari_gardenseg" and m not in FROM_NAPARI}
    assert {"numpy", "torch", "skimage", "PIL"} <= third_party  # the scan sees the package's imports
    missing = {m: dists[m] for m in third_party if not any(norm(d) in declared for d in dists[m])}
    assert not missing, f"imported but not declared in pyproject.toml: {missing}"


def test_python_m_runs_the_command_line():
    # where the gardenseg script is not on PATH (a venv not activated): the same command
    result = subprocess.run([sys.executable, "-m", "napari_gardenseg", "models"], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "garden" in result.stdout
