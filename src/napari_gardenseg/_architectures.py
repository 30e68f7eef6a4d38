"""Mask R-CNN architectures the project can rebuild from a checkpoint.

A checkpoint names its architecture and the keyword arguments that rebuild it
(see ``_models.save_checkpoint``); this module maps those names to builders.
``garden_mobilenet`` is the network behind ``load_model("garden")`` (the bundled
checkpoint names it): torchvision's MobileNetV2 features (ImageNet-pretrained in the
training script; built here with no weights) under a 64-channel FPN and slim heads.
``garden_small``, its predecessor, has a small GroupNorm ResNet-style backbone under
the same FPN and heads (about 3 M parameters instead of 46 M); older checkpoints name it.
"""

from __future__ import annotations

import math
from collections import OrderedDict

import torch
from torch import nn
from torchvision.models.detection import MaskRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
from torchvision.ops import MultiScaleRoIAlign
from torchvision.ops.feature_pyramid_network import FeaturePyramidNetwork, LastLevelMaxPool


def _conv(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    # GroupNorm, not BatchNorm: training batches of 2-4 images make batch statistics noisy.
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride, 1, bias=False),
        nn.GroupNorm(8, cout),
        nn.ReLU(inplace=True),
    )


class _Residual(nn.Module):
    def __init__(self, ch: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(ch, ch, 3, 1, 1, bias=False),
            nn.GroupNorm(8, ch),
            nn.ReLU(inplace=True),
            nn.Conv2d(ch, ch, 3, 1, 1, bias=False),
            nn.GroupNorm(8, ch),
        )

    def forward(self, x):
        return torch.relu(x + self.body(x))


class SmallFPNBackbone(nn.Module):
    """Strides 4, 8, 16, 32 (+ max-pooled 64) with ``out_channels`` each, as MaskRCNN expects."""

    def __init__(self, widths=(32, 48, 96, 160, 256), fpn_channels: int = 64, blocks=(1, 1, 2, 1)):
        super().__init__()
        self.stem = nn.Sequential(_conv(3, widths[0], 2), _conv(widths[0], widths[0]))
        stages = []
        for cin, cout, n in zip(widths[:-1], widths[1:], blocks):
            stages.append(nn.Sequential(_conv(cin, cout, 2), *[_Residual(cout) for _ in range(n)]))
        self.stages = nn.ModuleList(stages)
        self.fpn = FeaturePyramidNetwork(list(widths[1:]), fpn_channels, extra_blocks=LastLevelMaxPool())
        self.out_channels = fpn_channels

    def forward(self, x):
        x = self.stem(x)
        feats = OrderedDict()
        for i, stage in enumerate(self.stages):
            x = stage(x)
            feats[str(i)] = x
        return self.fpn(feats)


def garden_small(
    num_classes: int, min_size: int = 512, max_size: int = 1024, fpn_channels: int = 64, mask_roi_size: int = 14
) -> MaskRCNN:
    """``mask_roi_size=28`` doubles the mask head's resolution (56x56 masks instead of
    28x28): thin leaves and blades survive; the head's weights are the same shapes."""
    backbone = SmallFPNBackbone(fpn_channels=fpn_channels)
    return _slim_maskrcnn(backbone, num_classes, min_size, max_size, fpn_channels, mask_roi_size)


# Instances one network pass may return (torchvision's default is COCO's 100): a seedling tray or a
# bed seen whole holds more plants than that, and a cap that binds drops plants silently. The slim
# models' 300 proposals bound it too; photos with fewer plants return the same instances either way.
DETECTIONS_PER_PASS = 300


def _slim_maskrcnn(backbone, num_classes, min_size, max_size, fpn_channels, mask_roi_size, **transform) -> MaskRCNN:
    """torchvision's MaskRCNN with the garden models' slim heads and RPN budget, on any FPN ``backbone``."""
    anchors = AnchorGenerator(((16,), (32,), (64,), (128,), (256,)), ((0.5, 1.0, 2.0),) * 5)
    rep = 256
    return MaskRCNN(
        backbone,
        num_classes=None,
        min_size=min_size,
        max_size=max_size,
        rpn_anchor_generator=anchors,
        rpn_pre_nms_top_n_train=1000,
        rpn_post_nms_top_n_train=500,
        rpn_pre_nms_top_n_test=500,
        rpn_post_nms_top_n_test=300,
        rpn_batch_size_per_image=128,
        box_batch_size_per_image=128,
        box_detections_per_img=DETECTIONS_PER_PASS,
        box_head=TwoMLPHead(fpn_channels * 7 * 7, rep),
        box_predictor=FastRCNNPredictor(rep, num_classes),
        mask_roi_pool=MultiScaleRoIAlign(["0", "1", "2", "3"], mask_roi_size, 2),
        mask_head=MaskRCNNHeads(fpn_channels, (fpn_channels,) * 4, 1),
        mask_predictor=MaskRCNNPredictor(fpn_channels, fpn_channels, num_classes),
        **transform,
    )


IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# MobileNetV2 feature blocks ending at strides 4, 8, 16 and 32, and their widths
_MOBILENET_STAGES = {"3": "0", "6": "1", "13": "2", "17": "3"}
_MOBILENET_WIDTHS = [24, 32, 96, 320]


def mobilenet_features(frozen_blocks: int = 0) -> nn.Sequential:
    """MobileNetV2's feature blocks with frozen BatchNorm, no weights.

    Frozen statistics: batches of 2 crops on a CPU give useless batch statistics,
    so the pretrained ones are kept. ``frozen_blocks`` first blocks get no gradient.
    """
    from torchvision.models import mobilenet_v2
    from torchvision.ops.misc import FrozenBatchNorm2d

    features = mobilenet_v2(weights=None, norm_layer=FrozenBatchNorm2d).features
    for block in list(features)[:frozen_blocks]:
        for p in block.parameters():
            p.requires_grad_(False)
    return features


class MobileNetFPNBackbone(nn.Module):
    """MobileNetV2 blocks 0-17 (strides 4, 8, 16, 32) + FPN (+ max-pooled stride 64)."""

    def __init__(self, fpn_channels: int = 96, frozen_blocks: int = 0):
        super().__init__()
        from torchvision.models._utils import IntermediateLayerGetter

        self.body = IntermediateLayerGetter(mobilenet_features(frozen_blocks), return_layers=_MOBILENET_STAGES)
        self.fpn = FeaturePyramidNetwork(_MOBILENET_WIDTHS, fpn_channels, extra_blocks=LastLevelMaxPool())
        self.out_channels = fpn_channels

    def forward(self, x):
        return self.fpn(self.body(x))


def garden_mobilenet(
    num_classes: int,
    min_size: int = 512,
    max_size: int = 1024,
    fpn_channels: int = 96,
    mask_roi_size: int = 28,
    frozen_blocks: int = 0,
) -> MaskRCNN:
    """MobileNetV2 + FPN Mask R-CNN with slim heads and 56x56 masks, ImageNet normalisation."""
    backbone = MobileNetFPNBackbone(fpn_channels=fpn_channels, frozen_blocks=frozen_blocks)
    return _slim_maskrcnn(
        backbone,
        num_classes,
        min_size,
        max_size,
        fpn_channels,
        mask_roi_size,
        image_mean=list(IMAGENET_MEAN),
        image_std=list(IMAGENET_STD),
    )


def load_imagenet_features(net: MaskRCNN, path) -> None:
    """Copy torchvision's MobileNetV2 ImageNet file (``mobilenet_v2-b0353104.pth``) into ``net``'s backbone."""
    from torchvision.models import mobilenet_v2

    ref = mobilenet_v2(weights=None)
    ref.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    state = {k: v for k, v in ref.features.state_dict().items() if not k.endswith("num_batches_tracked")}
    state = {k: v for k, v in state.items() if int(k.split(".")[0]) <= 17}
    missing, unexpected = net.backbone.body.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise RuntimeError(f"MobileNetV2 weights do not fit: missing {missing[:3]}, unexpected {unexpected[:3]}")


def maskrcnn_resnet50_fpn_v2(num_classes: int, **kwargs) -> MaskRCNN:
    from torchvision.models.detection import maskrcnn_resnet50_fpn_v2 as build

    kwargs.setdefault("box_detections_per_img", DETECTIONS_PER_PASS)
    return build(weights=None, weights_backbone=None, num_classes=num_classes, **kwargs)


def maskrcnn_resnet50_fpn(num_classes: int, **kwargs) -> MaskRCNN:
    from torchvision.models.detection import maskrcnn_resnet50_fpn as build

    kwargs.setdefault("box_detections_per_img", DETECTIONS_PER_PASS)
    return build(weights=None, weights_backbone=None, num_classes=num_classes, **kwargs)


ARCHITECTURES = {
    "garden_small": garden_small,
    "garden_mobilenet": garden_mobilenet,
    "maskrcnn_resnet50_fpn_v2": maskrcnn_resnet50_fpn_v2,
    "maskrcnn_resnet50_fpn": maskrcnn_resnet50_fpn,
}


def guess_architecture(state_dict) -> str | None:
    """Name the architecture of a bare state_dict from its keys, or None."""
    keys = set(state_dict)
    if "backbone.stem.0.0.weight" in keys:
        return "garden_small"
    if "backbone.body.17.conv.0.0.weight" in keys:
        return "garden_mobilenet"
    if "roi_heads.box_head.0.0.weight" in keys:  # v2: conv + fc box head
        return "maskrcnn_resnet50_fpn_v2"
    if "roi_heads.box_head.fc6.weight" in keys and "backbone.body.layer1.0.conv1.weight" in keys:
        return "maskrcnn_resnet50_fpn"
    return None


def replace_heads(net: MaskRCNN, new_names, old_names=None, start_from: dict | None = None) -> None:
    """New box and mask predictors for the classes ``new_names`` (``"__background__"`` first).

    torchvision's fine-tuning recipe gives new classes new, randomly initialised
    predictors. With ``old_names`` (the classes of ``net``'s predictors) they
    start from what ``net`` knows instead: the mask predictor's class-agnostic
    layer (``conv5_mask``) is kept, the background and every class known to
    both keep their rows, and a new class starts from the mean of the old
    foreground classes' rows, its score's bias raised by the log of their
    number, so that it starts about as likely as any of them together, or,
    when ``start_from`` maps it to an old class (the one the network gives
    the painted instances of that class, see ``train``), from that class's
    rows. A fine-tune from the bundled model (rosette, weed, flowering) to one
    class "plant" therefore starts from a network that already finds plants.
    """
    start_from = start_from or {}
    box_in = net.roi_heads.box_predictor.cls_score.in_features
    mask_in = net.roi_heads.mask_predictor.conv5_mask.in_channels
    hidden = net.roi_heads.mask_predictor.conv5_mask.out_channels
    box = FastRCNNPredictor(box_in, len(new_names))
    mask = MaskRCNNPredictor(mask_in, hidden, len(new_names))
    if old_names is not None:
        old_box, old_mask = net.roi_heads.box_predictor, net.roi_heads.mask_predictor
        mask.conv5_mask.load_state_dict(old_mask.conv5_mask.state_dict())
        known = {name: i for i, name in enumerate(old_names)}
        foreground = [i for i, name in enumerate(old_names) if name != "__background__"]
        with torch.no_grad():
            for j, name in enumerate(new_names):
                source = name if name in known else start_from.get(name)
                rows = [known[source]] if source in known else foreground
                boost = 0.0 if source in known else math.log(len(rows))
                box.cls_score.weight[j] = old_box.cls_score.weight[rows].mean(0)
                box.cls_score.bias[j] = old_box.cls_score.bias[rows].mean() + boost
                deltas = [slice(4 * i, 4 * i + 4) for i in rows]  # (dx, dy, dw, dh) per class
                box.bbox_pred.weight[4 * j : 4 * j + 4] = torch.stack(
                    [old_box.bbox_pred.weight[d] for d in deltas]
                ).mean(0)
                box.bbox_pred.bias[4 * j : 4 * j + 4] = torch.stack([old_box.bbox_pred.bias[d] for d in deltas]).mean(0)
                mask.mask_fcn_logits.weight[j] = old_mask.mask_fcn_logits.weight[rows].mean(0)
                mask.mask_fcn_logits.bias[j] = old_mask.mask_fcn_logits.bias[rows].mean()
    net.roi_heads.box_predictor = box
    net.roi_heads.mask_predictor = mask
