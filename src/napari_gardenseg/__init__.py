"""napari-gardenseg: Mask R-CNN instance segmentation refined by a dense CRF.

The public API is re-exported lazily so that ``import napari_gardenseg`` (which
napari does at start-up to read the manifest) does not import torch::

    import napari_gardenseg as gs
    model = gs.load_model("garden")
    result = gs.segment(image, model)
"""

from __future__ import annotations

import importlib

__version__ = "0.2.0"

# public name -> module that defines it
_EXPORTS = {
    "load_model": "._models",
    "Model": "._models",
    "ModelError": "._models",
    "COCO_CLASSES": "._models",
    "save_checkpoint": "._models",
    "resolve_device": "._device",
    "DeviceError": "._device",
    "SegmentOptions": "._options",
    "FitOptions": "._options",
    "segment": "._inference",
    "segment_to_zarr": "._inference",
    "Cancelled": "._cancel",
    "crf_available": ".crf",
    "SegmentationResult": "._results",
    "CRFParams": ".crf",
    "refine": ".crf",
    "refine_instances": ".crf",
    "CRFUnavailableError": ".crf",
    "to_rgb_float": "._image_arrays",
    "to_rgb_uint8": "._image_arrays",
    "ImageError": "._image_arrays",
    "OutputExistsError": "._files",
    "train": "._training",
    "adapt": "._adapt",
    "segment_layer": "._layers",
    "garden_scene": ".synthetic",
    "to_coco": "._export",
    "read_coco": "._coco_labels",
    "read_yolo": "._yolo_labels",
    "segment_files": "._batch",
    "BatchSummary": "._batch",
    "Instances": "._instances",
    "open_image": "._image_source",
    "write_label_file": "._label_writer",
}

# public submodules, reachable as attributes (``gs.synthetic``) and imported on first use
_SUBMODULES = ("synthetic", "cli", "crf")
# modules that do not import torch
_LIGHT = ("._image_arrays", "._files", "._cancel", "._export", "._coco_labels", "._yolo_labels", ".synthetic", ".cli")

__all__ = list(_EXPORTS) + list(_SUBMODULES) + ["__version__"]


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None and name in _SUBMODULES:
        module = "." + name
    if module is None:
        raise AttributeError(f"module 'napari_gardenseg' has no attribute {name!r}")
    if module not in _LIGHT:
        # these pull in torch: keep triton out of a process that already drew with Mesa
        from ._compat import avoid_triton_llvm_clash

        avoid_triton_llvm_clash()
    imported = importlib.import_module(module, __name__)
    value = imported if name in _SUBMODULES else getattr(imported, name)
    globals()[name] = value  # cache: the next access skips __getattr__
    return value


def __dir__() -> list[str]:
    return __all__
