"""A model the caller passes in is the caller's: segment() leaves its mode, device, parameters and hooks."""

import copy

import numpy as np
import torch

from napari_gardenseg import segment
from napari_gardenseg._models import load_model


def _state(net):
    return {k: v.detach().clone() for k, v in net.state_dict().items()}


def _hooks(net):
    return {name: (dict(m._forward_hooks), dict(m._forward_pre_hooks)) for name, m in net.named_modules()}


def test_a_module_in_train_mode_with_a_hook_is_left_as_it_was(scene):
    image, _, _ = scene
    image = np.ascontiguousarray(image[:128, :128])
    net = copy.deepcopy(load_model("garden").net).train()
    net.rpn.head.eval()  # a mixed state must come back as it was, module by module
    seen = []
    handle = net.backbone.register_forward_hook(lambda module, inputs, output: seen.append(type(output).__name__))
    modes = {name: m.training for name, m in net.named_modules()}
    hooks = _hooks(net)
    state = _state(net)
    device = next(net.parameters()).device

    result = segment(image, net, crf=False)

    assert net.training and {name: m.training for name, m in net.named_modules()} == modes
    assert _hooks(net) == hooks  # the caller's hook is there, the engine's cancel hooks are gone
    assert next(net.parameters()).device == device
    after = _state(net)
    assert after.keys() == state.keys()
    assert all(torch.equal(after[k], state[k]) for k in state)  # parameters and buffers bit-identical
    assert net.transform.fixed_size is None
    assert len(seen) == 1  # the caller's hook saw the one forward pass
    # the engine ran the network in eval mode: the same labels as the bundled model itself (a bare module
    # stores no mask threshold, so it runs at Mask R-CNN's 0.5)
    np.testing.assert_array_equal(result.labels, segment(image, "garden", crf=False, mask_threshold=0.5).labels)
    # and the caller's next training step still gets losses, not detections
    handle.remove()
    x = torch.from_numpy(image).permute(2, 0, 1).float() / 255
    target = {
        "boxes": torch.tensor([[10.0, 10.0, 40.0, 40.0]]),
        "labels": torch.tensor([1]),
        "masks": torch.zeros((1, 128, 128), dtype=torch.uint8),
    }
    target["masks"][0, 10:40, 10:40] = 1
    losses = net([x], [target])
    assert isinstance(losses, dict) and "loss_mask" in losses


def test_a_module_is_used_where_it_is_not_copied(random_maskrcnn):
    model = load_model(random_maskrcnn)  # device "auto": where the module already is
    assert model.net is random_maskrcnn and model.device == next(random_maskrcnn.parameters()).device
    assert load_model(random_maskrcnn, device="cpu").net is random_maskrcnn
    # two calls with the same module share one lock: their mode switches never interleave
    assert load_model(random_maskrcnn).lock is model.lock
