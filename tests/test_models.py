import os
import pickle

import numpy as np
import pytest
import torch

import napari_gardenseg as gs
from napari_gardenseg._architectures import garden_small
from napari_gardenseg._device import DeviceError
from napari_gardenseg._models import ModelError, coco_weights_path, load_model, resolve_device, save_checkpoint


def test_garden_loads_offline_with_its_class_names():
    model = load_model("garden", device="cpu")
    assert model.class_names[0] == "__background__"
    assert {"rosette", "flowering", "weed"} <= set(model.class_names)
    assert model.net.roi_heads.box_predictor.cls_score.out_features == len(model.class_names)
    assert not model.net.training
    assert load_model("garden", device="cpu") is model  # cached


def test_auto_device_is_cpu_here():
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")


@pytest.mark.parametrize(
    "device, match",
    [
        ("banana", "unknown device"),
        ("cuda", "CUDA is not available"),
        # torch's own device types the network does not run on: segment() failed inside torch
        ("meta", "not a device this plugin runs on"),
        (torch.device("meta"), "not a device this plugin runs on"),
    ],
)
def test_bad_devices(device, match):
    if device == "cuda" and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(DeviceError, match=match):
        resolve_device(device)


def test_a_cuda_index_beyond_the_gpus_present_is_named(monkeypatch):
    # "cuda:3" on a two-GPU machine passed, and torch failed deep inside the run
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("cuda:1") == torch.device("cuda:1")
    with pytest.raises(DeviceError, match=r"'cuda:3' was asked for but this machine has 2 GPUs \(cuda:0 to cuda:1\)"):
        resolve_device("cuda:3")
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(DeviceError, match=r"has 1 GPU \(cuda:0\); use 'cuda' or 'auto'"):
        resolve_device(torch.device("cuda", 1))


def test_unknown_model_name(user_models):
    with pytest.raises(ModelError, match="unknown model 'cocoo'.*coco, coco-v1, garden"):
        load_model("cocoo")
    # a model the user trained or adapted is given by path: the message names it
    from napari_gardenseg._run_record import model_identity

    user_models.mkdir(parents=True)
    (user_models / "adapted.pt").write_bytes(b"")
    for find in (load_model, model_identity):  # segment() and the batches
        with pytest.raises(ModelError, match=f"unknown model 'adapted'.*give its path, {user_models / 'adapted.pt'}"):
            find("adapted")


def test_coco_offline_says_where_to_put_the_file():
    with pytest.raises(ModelError) as info:
        load_model("coco", device="cpu")
    msg = str(info.value)
    assert str(coco_weights_path("coco")) in msg and "load_model('garden')" in msg
    assert "--model garden" in msg  # the same message reaches the command line
    assert os.environ["TORCH_HOME"] in msg


def test_coco_v1_loads_from_torch_hub_cache(tmp_path, monkeypatch):
    """With the file in TORCH_HOME, 'coco-v1' loads without network and has COCO's 91 names."""
    from napari_gardenseg._architectures import maskrcnn_resnet50_fpn

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    torch.manual_seed(0)
    net = maskrcnn_resnet50_fpn(num_classes=91)
    path = coco_weights_path("coco-v1")
    path.parent.mkdir(parents=True)
    torch.save(net.state_dict(), path)
    model = load_model("coco-v1", device="cpu")
    assert len(model.class_names) == 91 and model.class_names[1] == "person"
    w = "backbone.body.conv1.weight"
    assert torch.equal(model.net.state_dict()[w], net.state_dict()[w])


def _garden_net(n=3):
    torch.manual_seed(1)
    return garden_small(num_classes=n)


def test_project_checkpoint_round_trip(tmp_path):
    net = _garden_net(3)
    path = save_checkpoint(
        net,
        tmp_path / "m.pt",
        class_names=["__background__", "a", "b"],
        arch="garden_small",
        meta={"crf": {"iterations": 3}},
    )
    model = load_model(path, device="cpu")
    assert model.class_names == ["__background__", "a", "b"]
    assert model.meta["crf"] == {"iterations": 3}
    for k, v in net.state_dict().items():
        assert torch.equal(model.net.state_dict()[k], v), k


def test_a_checkpoint_of_a_newer_format_loads_with_a_warning(tmp_path):
    path = save_checkpoint(
        _garden_net(3), tmp_path / "m.pt", class_names=["__background__", "a", "b"], arch="garden_small"
    )
    ck = torch.load(path, weights_only=True)
    ck["version"] = 99
    torch.save(ck, tmp_path / "newer.pt")
    with pytest.warns(UserWarning, match="newer.pt was written by a newer napari-gardenseg .checkpoint format 99"):
        assert load_model(tmp_path / "newer.pt", device="cpu").class_names == ["__background__", "a", "b"]


def test_plain_state_dict_loads_with_class_count_from_predictor(tmp_path):
    net = _garden_net(4)
    torch.save(net.state_dict(), tmp_path / "sd.pt")
    model = load_model(tmp_path / "sd.pt", device="cpu")
    assert model.class_names == ["__background__", "class_1", "class_2", "class_3"]
    torch.save({"model": net.state_dict()}, tmp_path / "wrapped.pt")
    assert len(load_model(tmp_path / "wrapped.pt", device="cpu").class_names) == 4
    # saved from torch.nn.DataParallel (multi-GPU training): every key prefixed "module."
    torch.save({"model": torch.nn.DataParallel(net).state_dict()}, tmp_path / "parallel.pt")
    loaded = load_model(tmp_path / "parallel.pt", device="cpu")
    w = "roi_heads.box_predictor.cls_score.weight"
    assert len(loaded.class_names) == 4 and torch.equal(loaded.net.state_dict()[w], net.state_dict()[w])


def test_tutorial_and_lightning_checkpoints_load(tmp_path):
    """PyTorch's tutorial saves {"epoch", "model_state_dict", "optimizer_state_dict"}; a Lightning
    module holding the network as self.model saves {"state_dict": {"model.<key>": ...}}: both were
    refused as not a Mask R-CNN, though they hold a whole one."""
    from napari_gardenseg._models import model_info

    net = _garden_net(4)
    state = net.state_dict()
    w = "roi_heads.box_predictor.cls_score.weight"
    forms = {
        "tutorial.pt": {"epoch": 10, "model_state_dict": state, "optimizer_state_dict": {"state": {}}, "loss": 0.3},
        "lightning.pt": {"epoch": 3, "global_step": 90, "state_dict": {"model." + k: v for k, v in state.items()}},
        "net.pt": {"model_state_dict": {"net." + k: v for k, v in state.items()}},
        # DataParallel inside a wrapper, and the wrapper inside Lightning
        "net_module.pt": {"state_dict": {"net.module." + k: v for k, v in state.items()}},
        "deep.pt": {"state_dict": {"model.net.module." + k: v for k, v in state.items()}},
        "dp.pt": {"module." + k: v for k, v in state.items()},
    }
    for name, contents in forms.items():
        torch.save(contents, tmp_path / name)
        loaded = load_model(tmp_path / name, device="cpu")
        assert len(loaded.class_names) == 4 and torch.equal(loaded.net.state_dict()[w], state[w]), name
        assert len(model_info(tmp_path / name)[0]) == 4, name
    # a prefix is taken off only where the keys without it are a Mask R-CNN's
    torch.save({"state_dict": {"model." + k: v for k, v in state.items() if "predictor" not in k}}, tmp_path / "x.pt")
    with pytest.raises(ModelError, match="no box and mask predictor weights"):
        load_model(tmp_path / "x.pt", device="cpu")


def test_torchvision_module_is_accepted(random_maskrcnn):
    model = load_model(random_maskrcnn, device="cpu")
    assert len(model.class_names) == 5
    import copy

    half = copy.deepcopy(random_maskrcnn).half()  # torch's own dtype error came from inside the network
    with pytest.raises(ModelError, match=r"weights are float16; segmentation runs in float32: pass net.float\(\)"):
        load_model(half, device="cpu")


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


@pytest.mark.parametrize(
    "kind, match",
    [
        ("missing", "not found"),
        ("truncated", "not a readable PyTorch checkpoint|not a PyTorch checkpoint"),
        ("random", "not a PyTorch checkpoint|not a readable"),
        ("not_maskrcnn", "does not hold a Mask R-CNN"),
        ("names_mismatch", "lists 2 class names but its predictor has 3"),
        ("code", "would run code"),
        ("not_a_dict", "does not hold a Mask R-CNN"),
        ("folder", "is a folder: give the checkpoint file in it"),
        ("bad_min_size", "min_size='big' cannot rebuild garden_small"),
        ("bad_score_thresh", "box_score_thresh=True cannot rebuild garden_small"),
        ("meta_not_a_dict", "must be dicts"),
    ],
)
def test_bad_checkpoints(tmp_path, kind, match):
    path = tmp_path / f"{kind}.pt"
    if kind == "truncated":
        save_checkpoint(_garden_net(3), path, class_names=["__background__", "a", "b"], arch="garden_small")
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif kind == "random":
        path.write_bytes(np.random.default_rng(0).bytes(5000))
    elif kind == "not_maskrcnn":
        torch.save({"conv.weight": torch.zeros(3, 3), "fc.bias": torch.zeros(2)}, path)
    elif kind == "names_mismatch":
        ck_path = save_checkpoint(_garden_net(3), path, class_names=["__background__", "a", "b"], arch="garden_small")
        ck = torch.load(ck_path, weights_only=True)
        ck["class_names"] = ["__background__", "a"]
        torch.save(ck, path)
    elif kind == "code":
        with open(tmp_path / "plain.pkl", "wb") as f:  # a bare pickle: refused, nothing runs
            pickle.dump(_Evil(), f)
        with pytest.raises(ModelError):
            load_model(tmp_path / "plain.pkl")
        torch.save({"x": _Evil()}, path)
    elif kind == "not_a_dict":
        torch.save([torch.zeros(2)], path)
    elif kind == "folder":
        path.mkdir()
    elif kind in ("bad_min_size", "bad_score_thresh", "meta_not_a_dict"):
        # values that build a network which fails only at its first inference, or not at all
        ck_path = save_checkpoint(_garden_net(3), path, class_names=["__background__", "a", "b"], arch="garden_small")
        ck = torch.load(ck_path, weights_only=True)
        ck.update(
            {
                "bad_min_size": {"arch_kwargs": {"min_size": "big"}},
                "bad_score_thresh": {"arch_kwargs": {"box_score_thresh": True}},
                "meta_not_a_dict": {"meta": "oops"},
            }[kind]
        )
        torch.save(ck, path)
    with pytest.raises(ModelError, match=match):
        load_model(path, device="cpu")


def test_files_that_are_plainly_not_checkpoints_are_named_with_what_to_do(tmp_path):
    # torch's words for these said "weights_only=False will likely succeed" and "file an issue with PyTorch"
    files = {
        "lfs.pt": (
            b"version https://git-lfs.github.com/spec/v1\noid sha256:ab\nsize 9\n",
            "Git LFS pointer.*git lfs pull",
        ),
        "login.pt": (b"<!DOCTYPE html>\n<html><body>Sign in</body></html>", "a web page, not the weights"),
        "keras.pth": (b"\x89HDF\r\n\x1a\n" + bytes(64), "an HDF5 file"),
        "model.onnx": (b"\x08\x07\x12\x07pytorch" + bytes(64), "an ONNX export"),
        "model.safetensors": (len(b"{}").to_bytes(8, "little") + b"{}" + bytes(8), "a safetensors file"),
    }
    for name, (data, match) in files.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(ModelError, match=match) as e:
            load_model(tmp_path / name, device="cpu")
        assert "weights_only" not in str(e.value) and "issue" not in str(e.value)
    scripted = tmp_path / "scripted.pt"
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), scripted)
    with pytest.raises(ModelError, match="a TorchScript export .torch.jit.save.: give the weights instead"):
        load_model(scripted, device="cpu")
    # a real state dict saved with a pickle protocol torch's safe loader does not read: what to do
    torch.save(_garden_net(3).state_dict(), tmp_path / "p4.pt", pickle_protocol=4)
    with pytest.raises(ModelError, match="saved with pickle protocol 4, which torch's safe loader .* does not read"):
        load_model(tmp_path / "p4.pt", device="cpu")
    # a real checkpoint (a zip too) is not taken for one of them
    path = save_checkpoint(
        _garden_net(3), tmp_path / "real.pt", class_names=["__background__", "a", "b"], arch="garden_small"
    )
    assert load_model(path, device="cpu").class_names == ["__background__", "a", "b"]


def test_code_in_a_checkpoint_is_named_as_torch_before_2_4_words_it(tmp_path, monkeypatch):
    """torch 2.1-2.3's weights_only error says "Unsupported class posix.system", later ones "Unsupported global"."""

    def old_torch_load(*args, **kwargs):
        raise pickle.UnpicklingError(
            "Weights only load failed. Re-running `torch.load` with `weights_only` set to `False` will likely "
            "succeed, but it can result in arbitrary code execution.Do it only if you get the file from a trusted "
            "source. WeightsUnpickler error: Unsupported class posix.system"
        )

    monkeypatch.setattr(torch, "load", old_torch_load)
    (tmp_path / "code.pt").write_bytes(b"stands for a pickle that names os.system")
    with pytest.raises(ModelError, match="would run code"):
        load_model(tmp_path / "code.pt", device="cpu")


def test_public_names_are_lazy_and_complete():
    import subprocess
    import sys

    code = (
        "import sys, napari_gardenseg as gs; assert 'torch' not in sys.modules, 'torch imported eagerly'\n"
        "assert callable(gs.synthetic.garden_scene) and callable(gs.cli.main)\n"
        "assert 'torch' not in sys.modules, 'a light submodule imported torch'\n"
        "assert gs.crf.CRFParams is gs.CRFParams\n"
        "assert set(dir(gs)) >= {'synthetic', 'cli', 'crf', 'segment'}\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    for name in ("load_model", "segment", "refine", "refine_instances", "CRFParams", "train", "garden_scene"):
        assert callable(getattr(gs, name))
    missing = [name for name in gs.__all__ if getattr(gs, name, None) is None]
    assert not missing, f"public names that do not resolve: {missing}"
    assert len(gs.COCO_CLASSES) == 91 and gs.COCO_CLASSES[1] == "person"  # torchvision's, offline


def test_checkpoint_rebuilds_its_architecture_options(tmp_path):
    torch.manual_seed(0)
    net = garden_small(num_classes=2, mask_roi_size=28)
    path = save_checkpoint(
        net,
        tmp_path / "m.pt",
        class_names=["__background__", "a"],
        arch="garden_small",
        arch_kwargs={"mask_roi_size": 28},
    )
    model = load_model(path, device="cpu")
    assert model.net.roi_heads.mask_roi_pool.output_size == (28, 28)
    with torch.no_grad():
        logits = model.net.roi_heads.mask_predictor(torch.zeros(1, 64, 28, 28))
    assert logits.shape[-2:] == (56, 56)  # twice torchvision's 28x28 masks


def test_model_info_reads_names_without_building(tmp_path):
    from napari_gardenseg._models import model_info

    names, meta = model_info("coco")
    assert len(names) == 91 and names[1] == "person"
    names, meta = model_info("garden")
    assert names[0] == "__background__" and "training" in meta
    with pytest.raises(ModelError, match="not found"):
        model_info(tmp_path / "nope.pt")


def test_save_checkpoint_never_replaces_a_file_unless_asked(tmp_path):
    from napari_gardenseg._files import OutputExistsError

    names = ["__background__", "a", "b"]
    path = tmp_path / "mine.pt"
    path.write_bytes(b"a user's earlier model")
    with pytest.raises(OutputExistsError, match="mine.pt.*already exists.*overwrite=True"):
        save_checkpoint(_garden_net(3), path, class_names=names, arch="garden_small")
    assert path.read_bytes() == b"a user's earlier model"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine.pt"]  # no temporary left behind
    save_checkpoint(_garden_net(3), path, class_names=names, arch="garden_small", overwrite=True)
    assert load_model(path, device="cpu").class_names == names
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine.pt"]
    # a folder given as the checkpoint's name is never replaced, not even with overwrite
    models = tmp_path / "models"
    models.mkdir()
    (models / "field.pt").write_bytes(b"another model")
    with pytest.raises(OutputExistsError, match="models.*is a folder"):
        save_checkpoint(_garden_net(3), models, class_names=names, arch="garden_small", overwrite=True)
    assert (models / "field.pt").read_bytes() == b"another model"


def _disk(monkeypatch, full_folder, free_after=0):
    """shutil.disk_usage as if ``full_folder`` were on a disk with ``free_after`` bytes free (after
    the first ``free_after``-less call when ``free_after`` is a list: the disk fills meanwhile)."""
    import shutil

    real = shutil.disk_usage
    frees = list(free_after) if isinstance(free_after, list) else None

    def usage(folder):
        u = real(folder)
        if str(folder).startswith(str(full_folder)):
            free = frees.pop(0) if frees else free_after if frees is None else 0
            return type(u)(u.total, u.total - free, free)
        return u

    monkeypatch.setattr(shutil, "disk_usage", usage)


def test_a_full_disk_is_said_and_a_long_runs_weights_are_kept_elsewhere(tmp_path, user_models, monkeypatch):
    import errno

    names = ["__background__", "a", "b"]
    full = tmp_path / "usb"
    full.mkdir()
    _disk(monkeypatch, full, free_after=10_000)
    with pytest.raises(OSError, match=r"disk is full: 0.0 MB free in .*usb, the checkpoint needs about") as e:
        save_checkpoint(_garden_net(3), full / "m.pt", class_names=names, arch="garden_small")
    assert e.value.errno == errno.ENOSPC and e.value.filename == str(full / "m.pt")
    # the disk fills while torch writes: torch says "unexpected pos"; with rescue (train, adapt)
    # the weights go to the user's models folder and the error names it
    _disk(monkeypatch, full, free_after=[10**12])
    real_save = torch.save

    def short_write(obj, f, *a, **k):
        if str(f).startswith(str(full)):
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 951936 vs 951824")
        return real_save(obj, f, *a, **k)

    monkeypatch.setattr(torch, "save", short_write)
    with pytest.raises(OSError, match=r"disk is full.*saved instead in .*gardenseg_home.models.m\.pt") as e:
        save_checkpoint(_garden_net(3), full / "m.pt", class_names=names, arch="garden_small", rescue=True)
    assert isinstance(e.value.__cause__, RuntimeError) and not (full / "m.pt").exists()
    assert load_model(user_models / "m.pt", device="cpu").class_names == names
    # another failure (a drive pulled out) is not called a full disk; the weights are kept all the same
    _disk(monkeypatch, full, free_after=10**12)
    with pytest.raises(RuntimeError, match="unexpected pos"):
        save_checkpoint(_garden_net(3), full / "m.pt", class_names=names, arch="garden_small")
    with pytest.raises(
        OSError, match=r"could not write the checkpoint \(\[enforce fail.*saved instead in .*m-2\.pt"
    ) as e:
        save_checkpoint(_garden_net(3), full / "m.pt", class_names=names, arch="garden_small", rescue=True)
    assert "disk is full" not in str(e.value) and load_model(user_models / "m-2.pt", device="cpu").class_names == names
    # a mount that reports a size of 0 (some network and FUSE file systems) is not called full
    monkeypatch.setattr(torch, "save", real_save)
    import shutil

    zero = shutil.disk_usage
    monkeypatch.setattr(shutil, "disk_usage", lambda f: type(zero(f))(0, 0, 0))
    assert save_checkpoint(_garden_net(3), full / "z.pt", class_names=names, arch="garden_small").exists()


def test_gardenseg_models_lists_the_users_own_models(user_models, capsys):
    from napari_gardenseg import cli

    assert cli.main(["models"]) == 0
    assert "garden " in capsys.readouterr().out
    user_models.mkdir(parents=True)
    (user_models / "roses.pt").write_bytes(b"a trained model")
    assert cli.main(["models"]) == 0
    out = capsys.readouterr().out
    assert "roses" in out and str((user_models / "roses.pt").resolve()) in out


def _torch_in_child(_):
    import torch

    x = torch.rand(3, 400, 400)
    y = torch.nn.functional.conv2d(((x - x.mean()) / x.std())[None], torch.ones(4, 3, 3, 3))
    return torch.get_num_threads(), float(y.sum()) != 0.0


@pytest.mark.skipif(not hasattr(os, "register_at_fork"), reason="fork is POSIX's")
def test_a_process_forked_after_torch_ran_runs_torch(tmp_path):
    # multiprocessing's fork workers (Linux's default before Python 3.14) hung in their first
    # torch operation once the parent had segmented (torch's OpenMP pool is not fork-safe)
    import multiprocessing

    import torch

    import napari_gardenseg._models  # noqa: F401  (what registers the hook)

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        _torch_in_child(0)  # the parent's pool started
        with multiprocessing.get_context("fork").Pool(1) as pool:
            assert pool.apply_async(_torch_in_child, (0,)).get(timeout=120) == (1, True)
    finally:
        torch.set_num_threads(before)


def test_a_folder_given_as_the_model_of_a_batch_is_named_as_one(tmp_path, capsys):
    # `gardenseg segment --model models/`: the run record's checksum met the folder first and said
    # only "[Errno 21] Is a directory"
    from napari_gardenseg import cli

    (tmp_path / "models").mkdir()
    photo = tmp_path / "p.png"
    from PIL import Image

    Image.new("RGB", (40, 30), (30, 160, 40)).save(photo)
    assert cli.main(["segment", str(photo), "--model", str(tmp_path / "models"), "--out", str(tmp_path / "o")]) == 2
    assert "models is a folder: give the checkpoint file in it (a .pt or .pth file)" in capsys.readouterr().err


def test_cut_short_coco_weights_in_torchs_cache_say_to_delete_them(tmp_path, monkeypatch):
    # a download cut short leaves a partial file in torch's cache, read on every later run: the
    # message named the file but not that deleting it has it downloaded again
    from napari_gardenseg._models import bundled_checkpoint, coco_weights_path

    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path / "hub"))
    cached = coco_weights_path("coco")
    cached.parent.mkdir(parents=True)
    cached.write_bytes(bundled_checkpoint().read_bytes()[:100_000])
    with pytest.raises(gs.ModelError, match="truncated or corrupt.*delete it to have it downloaded again"):
        gs.load_model("coco")
    cut = tmp_path / "mine.pt"  # a file of the user's own: nothing to download
    cut.write_bytes(bundled_checkpoint().read_bytes()[:100_000])
    with pytest.raises(gs.ModelError, match="truncated or corrupt") as err:
        gs.load_model(cut)
    assert "downloaded again" not in str(err.value)
