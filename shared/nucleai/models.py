"""Star-convex model folders: find them, check them, load them once per process.

A model is a folder in stardist's own layout, so any 2-D model trained with the ``stardist``
package loads as is:

``config.json``
    stardist's ``Config2D`` as saved by ``StarDist2D`` (network architecture, ``n_rays``,
    ``grid``, ``n_channel_in``, ...). Required.
``thresholds.json``
    ``{"prob": P, "nms": N}`` as written by ``StarDist2D.optimize_thresholds``. Optional: without
    it stardist's defaults apply (prob 0.5, nms 0.4), as in stardist.
``weights_best.h5`` or ``weights_last.h5``
    Keras weights. ``weights_best.h5`` (best validation loss) is used when present, else
    ``weights_last.h5``. Other ``*.h5`` files (``weights_now.h5`` checkpoints) are not used.
``nucleai.json``
    Optional, ours: ``{"object_diameter": D}``, the median equivalent diameter (pixels) of the
    objects the model was trained on. Only used to rescale images to a target object size.
``MODEL.md``
    Optional, ours: the model card (data, split, training command, validation scores).

Finding a model
    :func:`resolve_model` accepts a folder path or the name of a bundled model. Bundled models
    are the sub-folders of :func:`models_dir`: the folder named by the environment variable
    ``NUCLEAI_MODELS_DIR`` when it is set, otherwise the ``models/`` folder of the repository the
    package was installed from in editable mode (``<repo>/shared/nucleai`` -> ``<repo>/models``).
    A non-editable install has no repository beside it and needs ``NUCLEAI_MODELS_DIR``.
    A bare name means the bundled model when there is one by that name (a folder of the same
    name in the working directory does not shadow it; write ``./name`` for that).

Building the network
    The Keras graph is built by stardist's own model class from the folder's ``config.json``
    (``StarDist2D(Config2D(**config), basedir=None)``, which is what ``StarDist2D(None, name,
    basedir)`` does minus the file access), and the weights are loaded into it with Keras. Only
    its ``keras_model`` is used, for the forward pass, wrapped in one ``tf.function`` that
    accepts any input size (Keras' own ``predict`` re-traces for every new image shape, which
    costs more than the prediction itself on small images). Normalisation, padding, tiling, NMS
    and rendering are ours (:mod:`nucleai.predict`). Reusing stardist's builder guarantees the
    weights of any stardist model load exactly, layer by layer, and the outputs are bit-identical
    to stardist's ``keras_model.predict``.

Caching
    :func:`load_model` keeps loaded models for the life of the process (a CellProfiler worker,
    a ``nucleai segment`` run), keyed by the resolved folder path and the modification times
    and sizes of the files read (config, thresholds, weights, nucleai.json). Asking again for the
    same unchanged folder returns the same object without touching TensorFlow; a model retrained
    into the same folder is reloaded on the next call and replaces the old entry. The cache is
    guarded by a lock, so threads may share it. :func:`clear_cache` empties it.
"""
import contextlib
import io
import json
import math
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

from .errors import InputError
from .runtime import quiet_tensorflow

#: Environment variable naming the folder of bundled models (overrides ``<repo>/models``).
MODELS_DIR_ENV = "NUCLEAI_MODELS_DIR"
#: The bundled default model for fluorescence nuclei.
DEFAULT_MODEL = "fluo_nuclei"
CONFIG_FILE = "config.json"
THRESHOLDS_FILE = "thresholds.json"
METADATA_FILE = "nucleai.json"
#: Weight files in order of preference.
WEIGHTS_FILES = ("weights_best.h5", "weights_last.h5")
#: stardist's defaults when a model has no (usable) thresholds.json.
DEFAULT_PROB_THRESH = 0.5
DEFAULT_NMS_THRESH = 0.4

_CONFIG_KEYS = ("n_dim", "axes", "n_channel_in", "n_rays", "grid", "backbone")


def models_dir():
    """The folder holding the bundled models (see the module docstring for the rule)."""
    override = os.environ.get(MODELS_DIR_ENV)
    if override:
        return Path(override).expanduser()
    import nucleai

    return Path(nucleai.__file__).resolve().parents[2] / "models"


def model_kind(folder):
    """``"unet"`` for a refinement U-Net folder (config.json says so), else ``"starconvex"``."""
    try:
        kind = json.loads((Path(folder) / CONFIG_FILE).read_text()).get("kind")
    except (OSError, UnicodeDecodeError, ValueError, AttributeError):
        return "starconvex"
    return "unet" if kind == "unet" else "starconvex"


def bundled_models(kind="starconvex"):
    """Names of the bundled models of one kind: sub-folders of :func:`models_dir` with a
    config.json; ``kind`` is ``"starconvex"`` (detectors) or ``"unet"`` (refinement U-Nets)."""
    folder = models_dir()
    if not folder.is_dir():
        return []
    return sorted(
        p.name for p in folder.iterdir() if (p / CONFIG_FILE).is_file() and model_kind(p) == kind
    )


def _looks_like_path(text):
    return os.sep in text or "/" in text or text.startswith((".", "~"))


def bundled_model_dir(name):
    """The folder of the bundled model ``name``.

    Raises
    ------
    InputError
        If :func:`models_dir` has no such model folder; the message lists the bundled models.
    """
    folder = models_dir() / str(name)
    if str(name) and "/" not in str(name) and os.sep not in str(name) and folder.is_dir():
        return folder.resolve()
    available = ", ".join(bundled_models()) or "none"
    hint = "" if models_dir().is_dir() else (
        f"; that folder does not exist: set {MODELS_DIR_ENV} to the folder of bundled models"
    )
    raise InputError(
        f"no bundled model {str(name)!r} in {models_dir()} (bundled models: {available}){hint}"
    )


def resolve_model(name_or_path):
    """The folder of a model given by bundled name or by path.

    Parameters
    ----------
    name_or_path : str or Path
        The name of a bundled model (a sub-folder of :func:`models_dir`), or a model folder. Text
        that looks like a path (a ``Path``, or containing ``/``, or starting with ``.`` or ``~``)
        is always a folder; a bare name is a bundled model if there is one by that name, else a
        folder of that name in the working directory. So ``fluo_nuclei`` is always the bundled
        model, and ``./fluo_nuclei`` a local folder.

    Returns
    -------
    Path
        The resolved (absolute) folder. Its contents are not checked here; see
        :func:`read_model_spec`.

    Raises
    ------
    InputError
        If nothing by that name or path exists; the message lists the bundled models.
    """
    text = str(name_or_path).strip()
    if not text:
        raise InputError("no model given: name a bundled model or a model folder")
    path = Path(text).expanduser()
    if isinstance(name_or_path, Path) or _looks_like_path(text):
        if path.is_dir():
            return path.resolve()
        if path.exists():
            raise InputError(f"model {path} is a file; a model is a folder (with {CONFIG_FILE})")
        raise InputError(f"model folder {path} does not exist")
    if (models_dir() / text).is_dir():
        return bundled_model_dir(text)
    if path.is_dir():
        return path.resolve()
    try:
        return bundled_model_dir(text)
    except InputError as error:
        raise InputError(f"no model folder {text!r} and {error}") from None


@dataclass(frozen=True)
class ModelSpec:
    """What a model folder declares, checked; no TensorFlow involved.

    Attributes
    ----------
    path : Path
        The model folder.
    config : dict
        config.json as stored.
    prob_thresh, nms_thresh : float
        The model's tuned thresholds (thresholds.json), or stardist's defaults (0.5, 0.4).
    thresholds_from : str
        ``"thresholds.json"`` or ``"default"``.
    weights : Path
        The weight file that will be loaded.
    n_channel_in, n_rays : int
    grid : tuple of int
        Output subsampling of the network per axis (y, x).
    div_by : tuple of int
        Input sizes must be multiples of these (``unet_pool ** unet_n_depth * grid``).
    object_diameter : float or None
        Median object diameter of the training data (nucleai.json), if declared.
    """

    path: Path
    config: dict = field(repr=False)
    prob_thresh: float
    nms_thresh: float
    thresholds_from: str
    weights: Path
    n_channel_in: int
    n_rays: int
    grid: tuple
    div_by: tuple
    object_diameter: float = None

    @property
    def name(self):
        return self.path.name

    def files(self):
        """The files the model is built from (for cache keys)."""
        files = [self.path / CONFIG_FILE, self.weights]
        for extra in (THRESHOLDS_FILE, METADATA_FILE):
            if (self.path / extra).is_file():
                files.append(self.path / extra)
        return files


def _read_json(path):
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError) as error:
        raise InputError(f"{path}: cannot be read ({error})") from error
    except json.JSONDecodeError as error:
        raise InputError(f"{path}: not valid JSON ({error})") from error
    if not isinstance(data, dict):
        raise InputError(f"{path}: a JSON object ({{...}}) was expected")
    return data


def _check_config(config, path):
    if config.get("kind") == "unet":
        raise InputError(
            f"{path}: a contour-refinement U-Net, not a star-convex model; it refines objects "
            "(RefineContoursUNet, nucleai refine)"
        )
    missing = [key for key in _CONFIG_KEYS if key not in config]
    if missing:
        raise InputError(
            f"{path}: missing {', '.join(missing)}; is this a stardist model's config.json?"
        )
    if config["n_dim"] != 2:
        raise InputError(
            f"{path}: a {config['n_dim']}-D model; only 2-D (StarDist2D) models are supported"
        )
    if config["backbone"] != "unet":
        raise InputError(f"{path}: backbone {config['backbone']!r}; only 'unet' is supported")
    try:
        grid = tuple(int(g) for g in config["grid"])
        n_rays, n_channel_in = int(config["n_rays"]), int(config["n_channel_in"])
        pool = tuple(int(p) for p in config.get("unet_pool", (2, 2)))
        depth = int(config.get("unet_n_depth", 2))
    except (TypeError, ValueError) as error:
        raise InputError(f"{path}: malformed grid/n_rays/n_channel_in/unet_pool ({error})") from error
    if len(grid) != 2 or len(pool) != 2 or min(grid) < 1 or n_rays < 3 or n_channel_in < 1:
        raise InputError(
            f"{path}: implausible values (grid {grid}, unet_pool {pool}, n_rays {n_rays}, "
            f"n_channel_in {n_channel_in})"
        )
    div_by = tuple(p**depth * g for p, g in zip(pool, grid))
    return grid, n_rays, n_channel_in, div_by


def _read_thresholds(path):
    if not path.is_file():
        return DEFAULT_PROB_THRESH, DEFAULT_NMS_THRESH, "default"
    data = _read_json(path)
    values = []
    for key in ("prob", "nms"):
        value = data.get(key)
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 < value < 1:
            raise InputError(f"{path}: {key!r} must be a number between 0 and 1, found {value!r}")
        values.append(float(value))
    return values[0], values[1], THRESHOLDS_FILE


def _read_object_diameter(path):
    if not path.is_file():
        return None
    value = _read_json(path).get("object_diameter")
    if value is None:
        return None
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not (
        math.isfinite(value) and value > 0
    ):
        raise InputError(f"{path}: 'object_diameter' must be a positive number, found {value!r}")
    return float(value)


def read_model_spec(name_or_path):
    """Find and check a model folder without loading the network.

    Parameters
    ----------
    name_or_path : str or Path
        See :func:`resolve_model`.

    Returns
    -------
    ModelSpec

    Raises
    ------
    InputError
        Naming the folder or file: the folder does not exist, config.json is missing, not JSON or
        not a 2-D stardist config, thresholds.json holds values outside (0, 1), or there is no
        weights_best.h5 / weights_last.h5.
    """
    path = resolve_model(name_or_path)
    config_path = path / CONFIG_FILE
    if not config_path.is_file():
        raise InputError(
            f"model folder {path} has no {CONFIG_FILE}; a model folder holds {CONFIG_FILE}, "
            f"{THRESHOLDS_FILE} and {' or '.join(WEIGHTS_FILES)} (stardist's layout)"
        )
    config = _read_json(config_path)
    grid, n_rays, n_channel_in, div_by = _check_config(config, config_path)
    weights = next((path / name for name in WEIGHTS_FILES if (path / name).is_file()), None)
    if weights is None:
        present = sorted(p.name for p in path.glob("*.h5"))
        found = f" (found only {', '.join(present)})" if present else ""
        raise InputError(f"model folder {path} has no {' or '.join(WEIGHTS_FILES)}{found}")
    prob, nms, source = _read_thresholds(path / THRESHOLDS_FILE)
    return ModelSpec(
        path=path,
        config=config,
        prob_thresh=prob,
        nms_thresh=nms,
        thresholds_from=source,
        weights=weights,
        n_channel_in=n_channel_in,
        n_rays=n_rays,
        grid=grid,
        div_by=div_by,
        object_diameter=_read_object_diameter(path / METADATA_FILE),
    )


class StarConvexModel:
    """A loaded model: its :class:`ModelSpec` and the network's forward pass.

    Use :func:`load_model` to get one (cached). ``predict_maps`` is the only place TensorFlow
    runs; everything else in :mod:`nucleai.predict` is numpy.
    """

    def __init__(self, spec):
        self.spec = spec
        quiet_tensorflow()
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                from stardist.models import Config2D, StarDist2D

                config = Config2D(**Config2D.update_loaded_config(dict(spec.config)))
                if not config.is_valid():
                    invalid = ", ".join(config.is_valid(True)[1])
                    raise InputError(f"{spec.path / CONFIG_FILE}: invalid values for {invalid}")
                self.stardist_model = StarDist2D(config, basedir=None)
        except InputError:
            raise
        except ImportError as error:  # an install without TensorFlow (it is an extra)
            raise InputError(
                f"running a star-convex model needs TensorFlow and stardist ({error}); install "
                "them, e.g. pip install tensorflow-cpu stardist"
            ) from error
        except Exception as error:  # stardist/Keras reject the architecture
            raise InputError(
                f"{spec.path / CONFIG_FILE}: stardist cannot build this network "
                f"({type(error).__name__}: {error})"
            ) from error
        # The thresholds stardist's own predict_instances falls back to, for comparisons.
        self.stardist_model.thresholds = dict(prob=spec.prob_thresh, nms=spec.nms_thresh)
        self.keras_model = self.stardist_model.keras_model
        try:
            self.keras_model.load_weights(str(spec.weights))
        except Exception as error:  # truncated HDF5, other architecture, ...
            raise InputError(
                f"{spec.weights}: the weights do not load into the network described by "
                f"{CONFIG_FILE} ({type(error).__name__}: {error})"
            ) from error
        import tensorflow as tf

        keras_model = self.keras_model
        signature = [tf.TensorSpec([None, None, None, spec.n_channel_in], tf.float32)]

        @tf.function(input_signature=signature, reduce_retracing=True)
        def forward(batch):
            outputs = keras_model([batch], training=False)
            return outputs[0], outputs[1]

        self._forward = forward
        self._tile_overlap = None

    @property
    def name(self):
        return self.spec.name

    def predict_maps(self, x):
        """Network outputs for one normalised image.

        Parameters
        ----------
        x : (H, W, n_channel_in) float32 array
            H and W must be multiples of ``spec.div_by``.

        Returns
        -------
        prob : (H / gy, W / gx) float32 array
            Object probability per grid cell.
        dist : (H / gy, W / gx, n_rays) float32 array
            Ray lengths in input pixels (not yet clipped below; see :mod:`nucleai.predict`).
        """
        import numpy as np

        prob, dist = self._forward(np.ascontiguousarray(x, dtype=np.float32)[np.newaxis])
        return prob.numpy()[0, ..., 0], dist.numpy()[0]

    @property
    def tile_overlap(self):
        """Pixels of context each side a tile needs, per axis (y, x): the receptive field.

        Measured once (then cached) as stardist does, from the response to an impulse.
        """
        if self._tile_overlap is None:
            with contextlib.redirect_stdout(io.StringIO()):
                field_ = self.stardist_model._compute_receptive_field()
            self._tile_overlap = tuple(int(max(side)) for side in field_)
        return self._tile_overlap


_cache = {}
_cache_lock = threading.Lock()


def _cache_key(spec):
    stamps = []
    for path in spec.files():
        stat = path.stat()
        stamps.append((path.name, stat.st_mtime_ns, stat.st_size))
    return tuple(stamps)


def load_model(name_or_path):
    """The loaded model for a bundled name or folder, built at most once per process.

    Parameters
    ----------
    name_or_path : str or Path
        See :func:`resolve_model`.

    Returns
    -------
    StarConvexModel

    Raises
    ------
    InputError
        For anything :func:`read_model_spec` rejects, a config stardist cannot build, or weights
        that do not load (truncated file, another architecture); the message names the file.
    """
    spec = read_model_spec(name_or_path)
    key = _cache_key(spec)
    with _cache_lock:
        cached = _cache.get(spec.path)
        if cached is not None and cached[0] == key:
            return cached[1]
        model = StarConvexModel(spec)
        _cache[spec.path] = (key, model)
        return model


def clear_cache():
    """Forget every loaded model (the next :func:`load_model` builds again)."""
    with _cache_lock:
        _cache.clear()
