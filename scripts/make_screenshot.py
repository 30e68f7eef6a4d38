"""Write docs/screenshot.png: napari with the sample, the widget and both Labels layers.

    xvfb-run -a python scripts/make_screenshot.py [--out docs/screenshot.png]

Opens napari, loads File > Open Sample > Seedling tray (photograph) through the
manifest (``--sample garden``: the synthetic scene), docks "Garden
segmentation", runs the bundled model with the dense CRF and saves a grab of
the whole window.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("GARDENSEG_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshot.png")
    ap.add_argument("--score", type=float, default=0.5, help="the widget's minimum score")
    ap.add_argument("--sample", default="seedling_tray", choices=["seedling_tray", "garden"], help="napari sample key")
    args = ap.parse_args()

    import napari
    from qtpy.QtWidgets import QApplication

    try:  # napari 0.9 shows a toast over the canvas about the PyQt5 binding of this machine
        import napari._qt.qt_main_window as qt_main_window

        qt_main_window.SHOW_QT_WARNING = False
    except (ImportError, AttributeError):
        pass

    viewer = napari.Viewer(title="napari-gardenseg")
    viewer.window.resize(1400, 860)
    viewer.open_sample("napari-gardenseg", args.sample)
    dock, widget = viewer.window.add_plugin_dock_widget("napari-gardenseg", "Garden segmentation")
    dock.setMaximumWidth(440)  # leave the canvas most of the window
    app = QApplication.instance()

    def pump_until(cond, timeout):
        t0 = time.perf_counter()
        while not cond() and time.perf_counter() - t0 < timeout:
            app.processEvents()
            time.sleep(0.01)

    pump_until(lambda: bool(widget.classes.choices), 60)
    widget.score_threshold.value = args.score
    widget.run.clicked()
    pump_until(lambda: not widget.running, 600)
    print("status:", widget.status.value)
    names = [layer.name for layer in viewer.layers]
    print("layers:", names)
    image = viewer.layers[0].name
    if f"{image} masks" not in names:
        raise SystemExit("the run added no masks layer; see the status above")
    # Show the raw masks as outlines over the refined ones, and select the CRF layer.
    viewer.layers[f"{image} masks"].contour = 2
    if f"{image} masks (CRF)" in viewer.layers:
        viewer.layers.selection.active = viewer.layers[f"{image} masks (CRF)"]
    viewer.reset_view()
    print("classes offered:", widget.classes.choices)
    pump_until(lambda: False, 2.0)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    viewer.screenshot(str(args.out), canvas_only=False)
    print(f"wrote {args.out}")
    viewer.close()


if __name__ == "__main__":
    main()
