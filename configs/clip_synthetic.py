"""Default run: a small CLIP trained from scratch on the built-in synthetic shapes.

    mmjax train --config configs/clip_synthetic.py --workdir runs/clip
    mmjax train --config configs/clip_synthetic.py:siglip   # sigmoid loss variant
    mmjax train --config configs/clip_synthetic.py:tiny     # seconds; for tests

Sized to finish in a few minutes on a 2-core CPU and to reach high held-out
retrieval on 256 eval pairs with distinct captions. It is the two-tower base
(``mmjax/config_base.py``) as it stands; every key is documented there.
"""

import ml_collections

from mmjax import config_base as base
from mmjax.config import Variants

VARIANTS = {"siglip": base.siglip, "tiny": base.two_tower_tiny}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    return Variants(arg, __file__, VARIANTS).apply(base.two_tower())
