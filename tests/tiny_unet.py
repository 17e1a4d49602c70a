"""A tiny refinement U-Net trained in seconds on synthetic blobs, for tests that need a real one.

``tiny_unet_dir()`` trains a two-level U-Net with 8 base filters through the suite's own trainer
(:func:`nucleai.refine.training.train_unet`, i.e. :func:`nucleai.train.loop.fit`) on the synthetic
images of :mod:`tiny_model` and leaves a refinement model folder (config.json, weights_best.h5,
no refine.json: the published parameters apply). Trained once per test process into a temporary
folder named ``fluo_refine``, whose parent can stand in for the bundled models folder.
"""
import atexit
import contextlib
import functools
import io
import shutil
import tempfile
from pathlib import Path

import numpy as np

from tiny_model import synthetic_image


def synthetic_pairs(seed, n, shape=(96, 96), n_objects=8):
    """(normalised image (H, W, 1), labels) pairs of synthetic blobs."""
    from nucleai.predict import normalize

    rng = np.random.default_rng(seed)
    pairs = []
    for _ in range(n):
        image, labels = synthetic_image(rng, shape, n_objects)
        pairs.append((normalize(image[..., np.newaxis]), labels))
    return pairs


@functools.lru_cache(maxsize=None)
def tiny_unet_dir():
    """The tiny U-Net's folder (``<tmp>/models/fluo_refine``), trained once per process."""
    import keras

    from nucleai.refine import training, unet
    from nucleai.train.augment import Augmenter

    root = Path(tempfile.mkdtemp(prefix="nucleai-tiny-unet-"))
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    folder = root / "models" / "fluo_refine"
    keras.utils.set_random_seed(0)
    pairs = synthetic_pairs(0, 8)
    settings = training.default_settings(patch_size=(64, 64), batch_size=4, steps_per_epoch=20,
                                         epochs=6, learning_rate=3e-3)
    with contextlib.redirect_stderr(io.StringIO()):
        training.train_unet(pairs[:7], pairs[7:], folder, config=unet.unet_config(depth=2, filter_base=8),
                            settings=settings, augmenter=Augmenter(rotate_prob=0.0, blur_prob=0.0),
                            progress=False)
    return folder
