"""Quality on big photos: AP50 of the held-out pots at their dev-set size and upscaled, vegetation stage off and auto.

    python benchmarks/eval_megapixels.py 48      # the five held-out AgIR pot photos, then each at 48 MP

Each photo (and its reference labels, nearest neighbour) is resized with Pillow to the given
megapixels, as a sharper camera would see the same pots; `segment(..., score_threshold=0.05,
crf=False)` with `vegetation="off"` and `"auto"`; class-agnostic mask AP50 pooled over the set
(pycocotools, as `eval_real.py`). Prints the instance counts per photo (then the reference's).
"""

import resource
import sys
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
import eval_real as er  # noqa: E402

import napari_gardenseg as gs  # noqa: E402

HELD = ["barley", "beet", "horseweed", "jimson_weed", "maize"]


def main() -> int:
    photos = [p for p in er.load_set(sets=("photos",), species=HELD) if p["name"].startswith("agir-")]
    model = gs.load_model("garden", device="cpu")
    mp = float(sys.argv[1]) if len(sys.argv) > 1 else 48
    res = {}
    for size in ("dev", f"{mp:g}MP"):
        gts, preds = [], {"off": [], "auto": []}
        for p in photos:
            rgb, lab = p["rgb"], p["labels"]
            if size != "dev":
                h, w = lab.shape
                f = (mp * 1e6 / (h * w)) ** 0.5
                W, H = round(w * f), round(h * f)
                rgb = np.asarray(Image.fromarray(rgb).resize((W, H), Image.BICUBIC))
                lab = np.asarray(Image.fromarray(lab).resize((W, H), Image.NEAREST))
            gts.append((lab, {int(k): "plant" for k in np.unique(lab) if k > 0}))
            for mode in preds:
                r = gs.segment(rgb, model, score_threshold=0.05, crf=False, vegetation=mode)
                preds[mode].append((r.labels, [1] * len(r.scores), r.scores))
            print(size, p["name"], {m: int(v[-1][0].max()) for m, v in preds.items()}, int(lab.max()), flush=True)
        res[size] = {m: round(er.coco_ap(gts, v, er.PLANT)["AP50"], 3) for m, v in preds.items()}
        print(size, res[size], flush=True)
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6:.2f} GB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
