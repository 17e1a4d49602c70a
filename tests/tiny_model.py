"""A tiny stardist model trained in seconds on synthetic blobs, for tests that need a real model.

``tiny_model(folder)`` trains a StarDist2D (16 rays, grid 2, a two-level U-Net with 8 base
filters) with the ``stardist`` package itself for a few epochs on synthetic images of bright
ellipses, and leaves a model folder in stardist's layout: ``config.json``,
``weights_best.h5``, ``weights_last.h5``, plus ``thresholds.json`` and our ``nucleai.json``.
The model is crude but finds most blobs, which is all the comparisons with stardist need: the
same network is run through stardist's ``predict_instances`` and through nucleai.

Trained once per test process (:func:`tiny_model_dir`); ``synthetic_image`` makes more test images.
"""
import atexit
import contextlib
import functools
import io
import json
import shutil
import tempfile
from pathlib import Path

import numpy as np

#: Thresholds written to the tiny model's thresholds.json.
PROB_THRESH = 0.5
NMS_THRESH = 0.4
#: Blob radius range (pixels) of the synthetic images.
RADIUS = (5.0, 10.0)


def synthetic_image(rng, shape=(128, 128), n_objects=12):
    """A float32 image of blurred bright ellipses on a noisy background, and its labels."""
    import scipy.ndimage as ndi
    import skimage.draw

    labels = np.zeros(shape, np.uint16)
    count = 0
    for _ in range(n_objects * 4):
        if count == n_objects:
            break
        radius = rng.uniform(*RADIUS)
        ry, rx = radius * rng.uniform(0.7, 1.3, size=2)
        cy, cx = rng.uniform(radius, shape[0] - radius), rng.uniform(radius, shape[1] - radius)
        rr, cc = skimage.draw.ellipse(cy, cx, ry, rx, shape=shape, rotation=rng.uniform(0, np.pi))
        if (labels[rr, cc] > 0).any():
            continue
        count += 1
        labels[rr, cc] = count
    brightness = np.concatenate([[0.0], rng.uniform(0.5, 1.0, size=count)])
    image = ndi.gaussian_filter(brightness[labels].astype(np.float32), 1.0)
    image = image + rng.normal(0, 0.05, shape).astype(np.float32)
    return image.astype(np.float32), labels


@functools.lru_cache(maxsize=None)
def tiny_model_dir():
    """The tiny model, trained once per test process into a temporary folder (removed at exit).

    The folder is ``<tmp>/models/fluo_nuclei``: its parent can stand in for the bundled models
    folder (``NUCLEAI_MODELS_DIR``) where the real default model is not there yet.
    """
    root = Path(tempfile.mkdtemp(prefix="nucleai-tiny-model-"))
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    folder = root / "models" / "fluo_nuclei"
    # Training is seeded and reproducible on one machine; other CPUs may round differently and
    # land on a worse model, so a model that miscounts blobs is retrained with the next seed.
    for seed in range(3):
        shutil.rmtree(folder, ignore_errors=True)
        train_tiny_model(folder, seed=seed)
        if _counts_blobs(folder):
            break
    return folder


def _counts_blobs(folder, tolerance=0.25):
    """Does the model find about as many objects as a fresh synthetic image holds?"""
    from csbdeep.utils import normalize
    from stardist.models import StarDist2D

    with contextlib.redirect_stdout(io.StringIO()):
        model = StarDist2D(None, name=folder.name, basedir=str(folder.parent))
    image, labels = synthetic_image(np.random.default_rng(999), (192, 192), n_objects=30)
    found, _ = model.predict_instances(normalize(image, 1, 99.8), show_tile_progress=False)
    truth = labels.max()
    return abs(found.max() - truth) <= tolerance * truth


def train_tiny_model(folder, epochs=8, steps_per_epoch=40, seed=0):
    """Train the tiny model into ``folder`` (created); returns the folder."""
    import keras
    from stardist.models import Config2D, StarDist2D

    folder = Path(folder)
    rng = np.random.default_rng(seed)
    keras.utils.set_random_seed(seed)
    data = [synthetic_image(rng) for _ in range(12)]
    images, labels = [d[0] for d in data], [d[1] for d in data]
    config = Config2D(
        n_rays=16, grid=(2, 2), n_channel_in=1, unet_n_depth=2, unet_n_filter_base=8,
        net_conv_after_unet=16, train_patch_size=(64, 64), train_batch_size=4,
        train_epochs=epochs, train_steps_per_epoch=steps_per_epoch, train_learning_rate=3e-3,
        train_tensorboard=False,
    )
    with contextlib.redirect_stdout(io.StringIO()):
        model = StarDist2D(config, name=folder.name, basedir=str(folder.parent))
        model.train(images[:10], labels[:10], validation_data=(images[10:], labels[10:]))
    (folder / "thresholds.json").write_text(json.dumps({"prob": PROB_THRESH, "nms": NMS_THRESH}))
    areas = np.concatenate([np.bincount(label.ravel())[1:] for label in labels])
    diameter = float(np.median(2 * np.sqrt(areas[areas > 0] / np.pi)))
    (folder / "nucleai.json").write_text(json.dumps({"object_diameter": diameter}))
    return folder
