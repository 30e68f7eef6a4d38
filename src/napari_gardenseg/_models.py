"""Model registry, checkpoint format and weights cache (devices: :mod:`._device`).

``load_model`` takes a name ("coco", "coco-v1", "garden"), a checkpoint path or
a torchvision ``MaskRCNN`` and returns a :class:`Model`: the network in eval
mode on its device, with the class names that go with it.

Checkpoints are read with ``torch.load(..., weights_only=True)``: a file that
would run code when unpickled is refused. The project's format is a plain dict::

    {"format": "napari-gardenseg", "version": 1, "arch": "garden_small",
     "arch_kwargs": {...}, "class_names": ["__background__", ...],
     "state_dict": {...}, "meta": {...}}

A bare torchvision Mask R-CNN ``state_dict`` (or one wrapped as ``{"model": sd}``,
``{"state_dict": sd}`` or ``{"model_state_dict": sd, ...}``, its keys perhaps
prefixed ``module.`` or ``model.``) loads too; its class count comes from its predictor.

``COCO_CLASSES``: a tuple of the 91 class names of the COCO models, indexed by
class id: ``"__background__"`` at 0, ``"N/A"`` at the ids COCO leaves unused.
Read from torchvision's weights metadata on first access (nothing is downloaded).
"""

from __future__ import annotations

import errno
import os
import pickle
import threading
import weakref
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ._architectures import ARCHITECTURES, guess_architecture
from ._device import available_devices, resolve_device
from ._options import DEFAULT_MODEL, MODEL_NAMES

__all__ = [
    "load_model",
    "Model",
    "ModelError",
    "save_checkpoint",
    "resolve_device",
    "available_devices",
    "COCO_CLASSES",  # noqa: F822  (module __getattr__: read from torchvision on first use)
    "MODEL_NAMES",
    "model_info",
]


def _one_thread_after_fork() -> None:
    # a process forked after torch's OpenMP pool started hangs in its first parallel operation
    # (pytorch #17199, #41197): a multiprocessing pool's workers (fork is Linux's default before
    # Python 3.14) get one thread each, as Dask's workers get their share (_dask_runner)
    torch.set_num_threads(1)


if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(after_in_child=_one_thread_after_fork)

FORMAT = "napari-gardenseg"
FORMAT_VERSION = 1


class ModelError(ValueError):
    """A model cannot be loaded or saved (a ValueError).

    Raised by :func:`load_model` for an unknown name, a missing or unreadable checkpoint,
    weights that do not fit their architecture or COCO weights that cannot be downloaded,
    and by :func:`save_checkpoint` for an unknown architecture or a class-name count that
    is not the predictor's.
    """


def _coco_weights(name: str):
    from torchvision.models.detection import (
        MaskRCNN_ResNet50_FPN_V2_Weights,
        MaskRCNN_ResNet50_FPN_Weights,
    )

    if name == "coco":
        return "maskrcnn_resnet50_fpn_v2", MaskRCNN_ResNet50_FPN_V2_Weights.COCO_V1
    return "maskrcnn_resnet50_fpn", MaskRCNN_ResNet50_FPN_Weights.COCO_V1


def _coco_classes() -> list[str]:
    return list(_coco_weights("coco")[1].meta["categories"])


def __getattr__(name):  # COCO_CLASSES is read from torchvision's weights metadata on first use
    if name == "COCO_CLASSES":
        return tuple(_coco_classes())
    raise AttributeError(name)


@dataclass
class Model:
    """A loaded Mask R-CNN with its class names (what :func:`load_model` returns).

    - ``net``: the torchvision ``MaskRCNN`` module, in eval mode on ``device`` (a module
      passed to :func:`load_model` keeps the mode its caller gave it).
    - ``class_names``: list of str; ``class_names[i]`` is the name of class id ``i``;
      index 0 is the background.
    - ``device``: the ``torch.device`` the network's weights are on, where it runs.
    - ``source``: where it came from: a model name (``"garden"``, ``"coco"``,
      ``"coco-v1"``), a checkpoint's absolute path, or the class name of a module passed in.
    - ``arch``: the architecture's name (``"garden_small"``, ``"garden_mobilenet"``,
      ``"maskrcnn_resnet50_fpn_v2"``, ``"maskrcnn_resnet50_fpn"``), which rebuilds the
      network from a checkpoint; ``"module"`` for a module passed in.
    - ``arch_kwargs``: dict, the keyword arguments the architecture is built with.
    - ``meta``: dict, what the checkpoint said about itself (training run, the CRF
      settings chosen for it under ``meta["crf"]``, its ``mask_threshold``).
    - ``lock``: a ``threading.Lock`` held for each forward pass, so that the model runs
      one image at a time (napari's worker and the console may share it).
    """

    net: nn.Module
    class_names: list[str]
    device: torch.device
    source: str
    arch: str = "unknown"
    arch_kwargs: dict = field(default_factory=dict)
    meta: dict = field(default_factory=dict)
    # One inference at a time per model: napari's worker and the console may share it.
    lock: Any = field(default_factory=threading.Lock, repr=False, compare=False)

    def __repr__(self) -> str:
        return f"Model({self.source!r}, {len(self.class_names) - 1} classes, device={self.device})"


# -- loading -----------------------------------------------------------------

_CACHE: dict[tuple, tuple] = {}  # key -> (the checkpoint's stamp, Model)
_CACHE_LOCK = threading.Lock()
_MODULE_LOCKS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # a caller's module -> its inference lock


def missing_model(model) -> str:
    """What to say of a model name or checkpoint path that names nothing: a name that is neither a
    known model nor a file (with the path of the user's model of that name, trained or adapted,
    where there is one: models are given by path), or a checkpoint file not found."""
    from ._files import user_models_dir

    path = Path(model).expanduser()
    if isinstance(model, str) and os.sep not in model and not path.suffix:
        mine = next((p for p in (user_models_dir() / f"{model}{ext}" for ext in (".pt", ".pth")) if p.is_file()), None)
        hint = f" (your model of that name: give its path, {mine})" if mine is not None else ""
        return f"unknown model {model!r}: use one of {', '.join(MODEL_NAMES)} or the path of a checkpoint file{hint}"
    return f"checkpoint file not found: {path}"


def load_model(
    model: str | os.PathLike | nn.Module | Model = DEFAULT_MODEL,
    device: str | torch.device | None = "auto",
    *,
    progress: bool = True,
) -> Model:
    """Load a Mask R-CNN for :func:`napari_gardenseg.segment`.

    ``model`` is one of ``"garden"`` (the default: the model shipped in this
    package, works offline), ``"coco"`` (the everyday-objects model:
    torchvision's ``maskrcnn_resnet50_fpn_v2`` with COCO weights),
    ``"coco-v1"`` (``maskrcnn_resnet50_fpn``), a path to a checkpoint, a
    torchvision ``MaskRCNN`` module, or an already loaded :class:`Model`.

    A module passed in stays the caller's: its mode (``training``), device,
    parameters and hooks are left as they are. The engine runs it in eval mode
    for the length of each forward pass and restores every submodule's mode
    after; ``device="auto"`` means where the module already is, and another
    device runs on the engine's own copy (``copy.deepcopy``, made once per call).

    ``device``: ``"auto"`` (or None: CUDA, then Apple's MPS, then the CPU; for a
    :class:`Model` or a module, where it already is), ``"cpu"``, ``"cuda"``,
    ``"cuda:N"``, ``"mps"`` or a ``torch.device`` (:func:`resolve_device`).

    COCO weights are read from torchvision's cache (``$TORCH_HOME/hub/checkpoints``)
    and downloaded there once when missing (``progress``: show the download's
    progress bar on stderr). Named models and checkpoints are cached per device,
    so calling this again is cheap.

    Returns a :class:`Model`; one given is returned as it is when already on
    ``device``, else copied there.

    Raises :class:`ModelError` for an unknown name, a checkpoint path that does not
    exist, a file that is not a readable Mask R-CNN checkpoint (or holds Python
    objects whose loading would run code), weights that do not fit their
    architecture, a module that is not a torchvision ``MaskRCNN`` (or whose weights
    are not float32, or whose ``class_names`` do not match its predictor), and COCO
    weights that are missing and cannot be downloaded (offline, ``GARDENSEG_OFFLINE``
    set, a failed download); :class:`~napari_gardenseg.DeviceError` for a device that
    is unknown or not available here; OSError when torchvision's cache folder cannot
    be made.
    """
    if isinstance(model, Model):
        dev = resolve_device(device) if device not in (None, "auto") else model.device
        return model if dev == model.device else _moved(model, dev)
    if isinstance(model, nn.Module):
        return _from_module(model, device)
    dev = resolve_device(device)
    if isinstance(model, os.PathLike) or (isinstance(model, str) and model not in MODEL_NAMES):
        path = Path(model).expanduser()
        if not path.exists():
            raise ModelError(missing_model(model))
        path = path.resolve()
        stat = path.stat()
        return _cached(
            ("file", str(path), str(dev)),
            lambda: _from_checkpoint(path, dev, source=str(path)),
            stamp=(stat.st_mtime_ns, stat.st_size),
        )
    if not isinstance(model, str):
        raise ModelError(
            f"load_model() takes a model name, a checkpoint path or a MaskRCNN module, not {type(model).__name__}"
        )
    if model == "garden":
        return _cached(("garden", str(dev)), lambda: _from_checkpoint(bundled_checkpoint(), dev, source="garden"))
    return _cached((model, str(dev)), lambda: _load_coco(model, dev, progress=progress))


def _cached(key, build, stamp=None) -> Model:
    """The model cached under ``key``, built when missing or when the checkpoint's ``stamp``
    (modification time and size) changed since: a model trained again into the same file
    replaces the old one here, which is not kept beside it."""
    with _CACHE_LOCK:
        if key in _CACHE and _CACHE[key][0] == stamp:
            return _CACHE[key][1]
    loaded = build()
    with _CACHE_LOCK:
        if key not in _CACHE or _CACHE[key][0] != stamp:
            _CACHE[key] = (stamp, loaded)
        return _CACHE[key][1]


def _moved(model: Model, dev: torch.device) -> Model:
    import copy

    net = copy.deepcopy(model.net).to(dev).eval()
    return Model(net, list(model.class_names), dev, model.source, model.arch, dict(model.arch_kwargs), dict(model.meta))


def bundled_checkpoint() -> Path:
    path = Path(str(resources.files("napari_gardenseg") / "models" / "garden.pt"))
    if not path.exists():
        raise ModelError(
            f"the bundled garden model is missing from this installation ({path}); reinstall napari-gardenseg"
        )
    return path


def _same_device(a: torch.device, b: torch.device) -> bool:
    return a.type == b.type and (a.index or 0) == (b.index or 0)


def _from_module(net: nn.Module, device) -> Model:
    """The caller's module as a Model, without changing it (see :func:`load_model`)."""
    import copy

    from torchvision.models.detection import MaskRCNN

    if not isinstance(net, MaskRCNN):
        raise ModelError(f"expected a torchvision MaskRCNN module, got {type(net).__name__}")
    n = net.roi_heads.box_predictor.cls_score.out_features
    names = getattr(net, "class_names", None) or _default_names(n)
    if len(names) != n:
        raise ModelError(f"the module's class_names has {len(names)} entries but its predictor has {n} classes")
    dtypes = {p.dtype for p in net.parameters()}
    if dtypes != {torch.float32}:  # the engine feeds float32 images (and the CRF float32 probabilities)
        raise ModelError(
            f"the module's weights are {', '.join(sorted(str(d).replace('torch.', '') for d in dtypes))}; "
            "segmentation runs in float32: pass net.float()"
        )
    here = next(net.parameters()).device
    dev = here if device is None or device == "auto" else resolve_device(device)
    if not _same_device(dev, here):
        net = copy.deepcopy(net).to(dev).eval()  # the engine's own copy: the caller's module stays where it is
    with _CACHE_LOCK:  # one lock per module: two calls with the same module never switch its mode at once
        lock = _MODULE_LOCKS.setdefault(net, threading.Lock())
    return Model(net, list(names), dev, source=type(net).__name__, arch="module", lock=lock)


def _default_names(n: int) -> list[str]:
    if n == 91:
        return _coco_classes()
    return ["__background__"] + [f"class_{i}" for i in range(1, n)]


def coco_weights_path(name: str) -> Path:
    """Where torchvision keeps (or will keep) the COCO weights for ``name``."""
    from urllib.parse import urlparse

    _, weights = _coco_weights(name)
    filename = Path(urlparse(weights.url).path).name
    return Path(torch.hub.get_dir()) / "checkpoints" / filename


def _load_coco(name: str, dev: torch.device, progress: bool) -> Model:
    arch, weights = _coco_weights(name)
    path = coco_weights_path(name)
    if not path.exists():
        _download(weights.url, path, name, progress)
    state = _read(path)
    net = ARCHITECTURES[arch](num_classes=len(weights.meta["categories"]))
    _load_state(net, state, path)
    return Model(net.to(dev).eval(), list(weights.meta["categories"]), dev, source=name, arch=arch)


def _download(url: str, path: Path, name: str, progress: bool) -> None:
    import socket
    from urllib.parse import urlparse

    hint = (
        f"Download {url} on a machine with internet access and put it at {path} "
        "(set TORCH_HOME to use another folder), or use a checkpoint of your own "
        "(--model /path/to/model.pt; load_model('/path/to/model.pt') in Python; 'custom checkpoint…' in "
        "napari's model list), or the bundled offline model (--model garden; load_model('garden'); "
        "'Garden (bundled, offline)' in napari)."
    )
    if os.environ.get("GARDENSEG_OFFLINE", "") not in ("", "0"):
        raise ModelError(f"the COCO weights for {name!r} are not on this machine and GARDENSEG_OFFLINE is set. {hint}")
    host = urlparse(url).hostname
    try:  # fail in seconds, not after a long TCP time-out, when offline
        socket.create_connection((host, 443), timeout=5).close()
    except OSError as exc:
        raise ModelError(
            f"the COCO weights for {name!r} are not on this machine and cannot be downloaded ({exc}). {hint}"
        ) from exc
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        torch.hub.download_url_to_file(url, str(path), progress=progress)
    except Exception as exc:  # network errors come in many types
        raise ModelError(f"downloading the COCO weights for {name!r} failed ({exc}). {hint}") from exc


def _read(path: Path):
    if path.is_dir():
        raise ModelError(f"{path} is a folder: give the checkpoint file in it (a .pt or .pth file)")
    other = _other_format(path)
    if other is not None:  # torch's own words for these send the user to weights_only=False or to PyTorch
        raise ModelError(f"{path} is {other}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        text = str(exc)
        # weights_only refuses a pickle that names a global (a class or function to call);
        # torch before 2.4 says "Unsupported class", later ones "Unsupported global"
        if ("global" in text.lower() or "Unsupported class" in text) and "Unsupported operand" not in text:
            raise ModelError(
                f"{path} holds Python objects, not only weights, and loading it would run code; "
                "napari-gardenseg refuses such files. Save the weights alone instead: "
                "torch.save(model.state_dict(), path) (or napari_gardenseg.save_checkpoint)."
            ) from exc
        if "Unsupported operand" in text:  # torch's text would suggest weights_only=False
            protocol = _pickle_protocol(path)
            if protocol is None:
                raise ModelError(
                    f"{path} is not a PyTorch checkpoint: its bytes are not what torch.save writes (another format, or damaged)"
                ) from exc
            if protocol > 2:
                raise ModelError(
                    f"{path} was saved with pickle protocol {protocol}, which torch's safe loader (weights only) does "
                    "not read: save it again with torch.save(state_dict, path), whose default protocol is 2"
                ) from exc
        raise ModelError(f"{path} is not a PyTorch checkpoint (unreadable: {exc})") from exc
    except Exception as exc:  # torch.load fails in many ways on garbage (IndexError, RuntimeError, EOFError...)
        cached = Path(torch.hub.get_dir()) in Path(path).resolve().parents  # a download cut short
        again = "; delete it to have it downloaded again (or copy a complete one there)" if cached else ""
        raise ModelError(
            f"{path} is not a readable PyTorch checkpoint (truncated or corrupt?): {type(exc).__name__}: {exc}{again}"
        ) from exc


def _pickle_protocol(path: Path) -> int | None:
    """The pickle protocol of a torch.save file (of its ``data.pkl`` in torch's zip format, else of
    its first pickle), None when it does not start as a pickle does."""
    import zipfile

    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as z:
                name = next((n for n in z.namelist() if n.endswith("data.pkl")), None)
                head = z.read(name)[:2] if name else b""
        else:
            with open(path, "rb") as f:
                head = f.read(2)
    except (OSError, zipfile.BadZipFile):
        return None
    return head[1] if len(head) == 2 and head[0] == 0x80 else None


def _other_format(path: Path) -> str | None:
    """What a file given as a checkpoint is when it is plainly something else, by its first bytes (a
    Git LFS pointer, a web page, a TorchScript, safetensors, ONNX or HDF5 file) and what to do; None
    otherwise (torch.load then says what it finds)."""
    import zipfile

    try:
        with open(path, "rb") as f:
            head = f.read(512)
    except OSError:
        return None
    if head.startswith(b"version https://git-lfs"):
        return "a Git LFS pointer, not the weights: run `git lfs pull` where it was checked out"
    if head.lstrip()[:1] == b"<" and b"html" in head.lower():
        return "a web page, not the weights (a download that failed or needed a login): download the file itself"
    if head.startswith(b"\x89HDF"):
        return "an HDF5 file (Keras?), not a PyTorch checkpoint: give a torch.save(model.state_dict()) file"
    if path.suffix.lower() == ".onnx":
        return "an ONNX export: napari-gardenseg needs the PyTorch weights, torch.save(model.state_dict(), path)"
    if len(head) > 9 and head[8:9] == b"{" and path.suffix.lower() == ".safetensors":
        return (
            "a safetensors file: read it with safetensors.torch.load_file and save that dict with "
            "torch.save(state_dict, 'model.pt')"
        )
    if zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as z:
                scripted = any(n.split("/", 1)[-1].startswith(("code/", "constants.pkl")) for n in z.namelist())
        except (OSError, zipfile.BadZipFile):
            return None
        if scripted:
            return (
                "a TorchScript export (torch.jit.save): give the weights instead, "
                "torch.save(model.state_dict(), path), or napari_gardenseg.save_checkpoint"
            )
    return None


# the weights that make a state_dict a Mask R-CNN's: its box and mask predictors
_PREDICTOR_KEYS = ("roi_heads.box_predictor.cls_score.weight", "roi_heads.mask_predictor.mask_fcn_logits.weight")


def _state_dict_of(obj, path) -> dict:
    """The state_dict a checkpoint's contents hold: the contents themselves, or the dict under
    ``"state_dict"`` (this package's, Lightning's), ``"model"`` (torchvision's reference scripts) or
    ``"model_state_dict"`` (PyTorch's tutorial, beside ``"optimizer_state_dict"``). Keys lose the
    start every key shares where the keys without it are a Mask R-CNN's (``module.`` of
    DataParallel, ``model.`` of a Lightning module's ``self.model``, ``net.module.``).
    Raises ModelError for contents that hold no dict of tensors."""
    if isinstance(obj, dict):
        for key in ("state_dict", "model", "model_state_dict"):
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ModelError(f"{path} does not hold a Mask R-CNN: expected a state_dict (a dict of tensors)")
    if not all(isinstance(k, str) for k in obj):
        return obj
    # the network saved as an attribute, at any depth: every key starts "module." (DataParallel,
    # DistributedDataParallel), "model." (Lightning's self.model), "net.module." and such; taken
    # off only where every key has it, so no other weights are dropped
    if not all(k in obj for k in _PREDICTOR_KEYS):
        inner = next((k for k in obj if k.endswith("." + _PREDICTOR_KEYS[0])), None)
        prefix = inner[: -len(_PREDICTOR_KEYS[0])] if inner else None
        if prefix and all(k.startswith(prefix) for k in obj):
            obj = {k[len(prefix) :]: v for k, v in obj.items()}
    return obj


def _num_classes(state: dict, path) -> int:
    w = state.get(_PREDICTOR_KEYS[0])
    if w is None or _PREDICTOR_KEYS[1] not in state:
        raise ModelError(
            f"{path} does not hold a Mask R-CNN (no box and mask predictor weights); "
            "napari-gardenseg needs a torchvision MaskRCNN checkpoint"
        )
    return int(w.shape[0])


def _load_state(net: nn.Module, state: dict, path) -> None:
    try:
        result = net.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # shapes that do not fit
        first = str(exc).strip().splitlines()[1:3]
        raise ModelError(f"{path} does not fit its architecture: {' '.join(line.strip() for line in first)}") from exc
    if result.missing_keys or result.unexpected_keys:
        missing = ", ".join(result.missing_keys[:3])
        extra = ", ".join(result.unexpected_keys[:3])
        raise ModelError(
            f"{path} does not fit its architecture: "
            f"{len(result.missing_keys)} missing weights ({missing}), "
            f"{len(result.unexpected_keys)} unexpected ({extra})"
        )


def _check_arch_kwargs(arch: str, kwargs: dict, path) -> None:
    """Refuse a checkpoint's keyword arguments whose type differs from the builder's default.

    A wrong value (``min_size: "big"``) would otherwise build a network that
    fails only at the first inference, far from the file that caused it.
    The defaults are read from the builder's signature and, for the keywords
    it passes on, from torchvision's ``FasterRCNN``.
    """
    import inspect

    from torchvision.models.detection import FasterRCNN

    defaults = {
        k: v.default
        for fn in (FasterRCNN.__init__, ARCHITECTURES[arch])
        for k, v in inspect.signature(fn).parameters.items()
        if v.default is not inspect.Parameter.empty
    }
    for key, value in kwargs.items():
        default = defaults.get(key)
        if isinstance(default, bool):
            ok = isinstance(value, bool)
        elif isinstance(default, int):  # min_size may also be several sizes (torchvision trains on one at random)
            sizes = value if key == "min_size" and isinstance(value, (list, tuple)) and value else [value]
            ok = all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in sizes)
        elif isinstance(default, float):
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        else:
            continue  # unknown keywords are refused when the network is built
        if not ok:
            raise ModelError(
                f"{path}: arch_kwargs {key}={value!r} cannot rebuild {arch} "
                f"(expected {'non-negative ' if type(default) is int else ''}{type(default).__name__}, "
                f"like its default {default!r}); the checkpoint is damaged"
            )


def _from_checkpoint(path: Path, dev: torch.device, source: str) -> Model:
    obj = _read(path)
    if isinstance(obj, dict) and obj.get("format") == FORMAT:
        version = obj.get("version")
        if isinstance(version, int) and version > FORMAT_VERSION:  # what it adds is not read here
            import warnings

            warnings.warn(
                f"{path.name} was written by a newer napari-gardenseg (checkpoint format {version}; this one "
                f"reads {FORMAT_VERSION}): if its results look wrong, upgrade (pip install -U napari-gardenseg)",
                stacklevel=3,
            )
        arch = obj.get("arch")
        if arch not in ARCHITECTURES:
            raise ModelError(f"{path} names an unknown architecture {arch!r}; known: {', '.join(ARCHITECTURES)}")
        state = _state_dict_of(obj.get("state_dict"), path)
        n = _num_classes(state, path)
        names = list(obj.get("class_names") or [])
        if len(names) != n:
            raise ModelError(
                f"{path} lists {len(names)} class names but its predictor has {n} classes "
                "(background included); the checkpoint is inconsistent"
            )
        kwargs, meta = obj.get("arch_kwargs") or {}, obj.get("meta") or {}
        if not isinstance(kwargs, dict) or not isinstance(meta, dict) or not all(isinstance(c, str) for c in names):
            raise ModelError(
                f"{path}: arch_kwargs and meta must be dicts and class_names strings; the checkpoint is damaged"
            )
        kwargs, meta = dict(kwargs), dict(meta)
        _check_arch_kwargs(arch, kwargs, path)
    else:
        state = _state_dict_of(obj, path)
        n = _num_classes(state, path)
        arch = guess_architecture(state)
        if arch is None:
            raise ModelError(f"{path} holds a Mask R-CNN state_dict of an architecture this package cannot rebuild")
        names, kwargs, meta = _default_names(n), {}, {}
    try:
        net = ARCHITECTURES[arch](num_classes=n, **kwargs)
    except TypeError as exc:
        raise ModelError(f"{path}: cannot rebuild {arch} with {kwargs}: {exc}") from exc
    _load_state(net, state, path)
    return Model(net.to(dev).eval(), names, dev, source=source, arch=arch, arch_kwargs=kwargs, meta=meta)


def model_info(model: str | os.PathLike | Model) -> tuple[list[str], dict]:
    """Class names (background first) and stored metadata of a model, without building the network.

    COCO names come from torchvision's weights metadata (no download);
    checkpoints are memory-mapped so only their small entries are read.
    """
    if isinstance(model, Model):
        return list(model.class_names), dict(model.meta)
    if model in ("coco", "coco-v1"):
        return _coco_classes(), {}
    path = bundled_checkpoint() if model == "garden" else Path(model).expanduser()
    if not path.exists():
        raise ModelError(f"checkpoint file not found: {path}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # not a zip checkpoint (cannot be mapped) or not readable: the full read says which
        obj = _read(path)
    if isinstance(obj, dict) and obj.get("format") == FORMAT:
        return list(obj.get("class_names") or []), dict(obj.get("meta") or {})
    return _default_names(_num_classes(_state_dict_of(obj, path), path)), {}


def _plain(value):
    """``value`` with numpy scalars and arrays (a learning rate from ``np.logspace``) made Python
    numbers and lists: ``load_model`` reads checkpoints with ``weights_only=True``, which refuses
    any other object, so such a value would make the file unloadable."""
    if isinstance(value, dict):
        return {str(k) if isinstance(k, np.str_) else k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_plain(v) for v in value)
    if isinstance(value, (np.generic, np.ndarray)):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    return value


# what a checkpoint's meta says of how that checkpoint was made (scripts/train_garden_model.py,
# train, adapt); a model trained or adapted from it keeps the base's under "base_provenance"
PROVENANCE_KEYS = ("training", "trained_on", "command", "hardware", "adapt", "base_provenance")


def derived_meta(base_meta: dict) -> dict:
    """The meta a checkpoint trained or adapted from a base (whose meta is ``base_meta``) starts
    from: the base's settings (its CRF settings, mask threshold, ...) kept, and what the base says
    of how it was made (:data:`PROVENANCE_KEYS`) moved under ``"base_provenance"``, so that it is
    not read as the new model's own."""
    meta = {k: v for k, v in base_meta.items() if k not in PROVENANCE_KEYS}
    own = {k: base_meta[k] for k in PROVENANCE_KEYS if k in base_meta}
    if own:
        meta["base_provenance"] = own
    return meta


def save_checkpoint(
    model: Model | nn.Module,
    path: str | os.PathLike,
    *,
    class_names: list[str] | None = None,
    arch: str | None = None,
    arch_kwargs: dict | None = None,
    meta: dict | None = None,
    half: bool = False,
    overwrite: bool = False,
    rescue: bool = False,
) -> Path:
    """Write ``model`` in the project's checkpoint format (loadable by :func:`load_model`).

    ``model``: a :class:`Model`, whose class names, ``arch``, ``arch_kwargs`` and
    ``meta`` are written unless given (``meta`` is merged over the model's), or a
    torchvision ``MaskRCNN`` module, which needs ``arch`` and ``class_names``.
    ``class_names``: one per class of the predictor, background first. ``arch``:
    the architecture's name (``"garden_small"``, ``"garden_mobilenet"``,
    ``"maskrcnn_resnet50_fpn_v2"``, ``"maskrcnn_resnet50_fpn"``); ``arch_kwargs``: the
    keyword arguments that rebuild it. ``meta`` (a dict) is stored with numpy values
    made Python numbers and lists. Returns ``path`` as a Path (``~`` expanded).

    An existing file at ``path`` is never replaced unless ``overwrite=True``
    (:class:`~napari_gardenseg._files.OutputExistsError` otherwise); the file is
    written under a temporary name and renamed at the end, so a crash never
    leaves a half-written checkpoint. ``half=True`` stores float weights as
    float16 (half the size); they are turned back into float32 on load.

    A disk without room for it raises OSError (``errno.ENOSPC``) that says so. With ``rescue``
    (what ``train`` and ``adapt`` ask, so that a long run is not lost) a write that fails for
    any reason (a full disk, a drive pulled out, a share gone read-only) first writes the
    weights to the user's models folder or, failing that, the temporary folder (emptied at
    reboot), and the error names that file.

    Raises :class:`~napari_gardenseg.OutputExistsError` when ``path`` is a folder, or
    exists (or appears during the write) and ``overwrite`` is False (nothing is
    written then); :class:`ModelError` for an ``arch`` that is not one of the names above
    (a :class:`Model` made from a module has ``arch="module"``: give ``arch``), for a
    number of class names other than the predictor's classes, or for a network
    without Mask R-CNN's box and mask predictors; OSError (``errno.ENOSPC`` for a full
    disk) or torch's RuntimeError when the file cannot be written (with ``rescue``
    and the weights saved elsewhere, an OSError naming that file).
    """
    from ._files import check_free_space, check_target

    check_target(path, overwrite, what="checkpoint")  # fail before the (slow) state copy
    if isinstance(model, Model):
        net = model.net
        class_names = class_names or model.class_names
        arch = arch or model.arch
        arch_kwargs = model.arch_kwargs if arch_kwargs is None else arch_kwargs
        meta = {**model.meta, **(meta or {})}
    else:
        net = model
    if arch not in ARCHITECTURES:
        raise ModelError(f"save_checkpoint needs the architecture name, one of {', '.join(ARCHITECTURES)}")
    state = {k: v.detach().cpu() for k, v in net.state_dict().items()}
    if half:
        state = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
    n = _num_classes(state, "the model")
    if class_names is None or len(class_names) != n:
        raise ModelError(f"save_checkpoint needs {n} class names (background first), got {class_names!r}")
    path = Path(path).expanduser()
    content = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "arch": arch,
        "arch_kwargs": _plain(dict(arch_kwargs or {})),
        "class_names": [str(n) for n in class_names],
        "state_dict": state,
        "meta": _plain(dict(meta or {})),
    }
    need = state_bytes(state)
    try:
        _write(content, path, need, overwrite)
    except (OSError, RuntimeError) as exc:
        if isinstance(exc, FileExistsError):
            raise
        try:  # a disk that filled meanwhile: say so (torch says "unexpected pos")
            check_free_space(path, need, "checkpoint")
            problem = exc
        except OSError as full:
            problem = full
        if rescue and (elsewhere := _rescue(content, path, need)) is not None:
            why = getattr(problem, "strerror", None) or str(problem)
            raise OSError(
                getattr(problem, "errno", None) or errno.EIO,
                f"could not write the checkpoint ({why}); the weights were saved instead in {elsewhere}",
                str(path),
            ) from exc
        if problem is exc:
            raise
        raise problem from exc
    return path


def state_bytes(state: dict) -> int:
    """Bytes a checkpoint of ``state`` (a state dict) takes on disk, with room for torch's archive."""
    return int(sum(v.numel() * v.element_size() for v in state.values()) * 1.05) + 1_000_000


def _rescue(content: dict, path: Path, need: int) -> Path | None:
    """Write ``content`` under ``path``'s name into the user's models folder or the temporary
    folder, the first that has room; None when neither has."""
    import tempfile

    from ._files import free_path, user_models_dir

    for folder in (user_models_dir(), Path(tempfile.gettempdir())):
        target = free_path(folder / path.name)
        try:
            _write(content, target, need)
        except (OSError, RuntimeError):
            continue
        return target
    return None


def _write(content: dict, path: Path, need: int, overwrite: bool = False) -> None:
    """torch.save ``content`` to ``path`` under a temporary name, after checking the disk has ``need``
    bytes (torch's own error for a full disk is "unexpected pos")."""
    from ._files import atomic_write, check_free_space

    check_free_space(path, need, "checkpoint")
    with atomic_write(path, overwrite, what="checkpoint") as tmp:
        torch.save(content, tmp)
