"""Model folders of every kind: find them, read their spec, build each network once per process.

Every network nucleai loads or writes lives in a *model folder*, and this module is the only
place that finds one, reads what it declares and keeps the built network. Three kinds:

``"starconvex"``
    A detector, in stardist's own layout (any 2-D model trained with ``stardist`` loads as is);
    spec :class:`StarConvexSpec`, loaded model :class:`StarConvexModel`.
``"unet"``
    A contour-refinement U-Net (:mod:`nucleai.refine.unet`); spec ``UNetSpec``, model
    ``UNetModel``.
``"generator"``
    A pix2pix mask-to-image generator of one style (:mod:`nucleai.train.pix2pix`); spec
    ``GeneratorSpec``, model ``GeneratorModel``.

Common layout
    ``config.json`` (required) describes the network; a refinement U-Net's says ``"kind":
    "unet"``, a generator's ``"kind": "generator"``; a detector's is stardist's ``Config2D``
    and has no kind. ``weights_best.h5`` (best validation loss) or else ``weights_last.h5``
    holds the Keras weights; other ``*.h5`` files (``weights_now.h5`` checkpoints) are not
    used. ``MODEL.md``, when present, is the model card. Per kind, in addition:

    - detector: ``thresholds.json`` ``{"prob": P, "nms": N}`` as written by
      ``StarDist2D.optimize_thresholds`` (optional: stardist's defaults 0.5, 0.4 without it) and
      ``nucleai.json`` ``{"object_diameter": D}``, the median equivalent diameter (pixels) of
      the training objects, used only to rescale images to a target object size (optional);
    - refinement U-Net: ``refine.json``, the tuned p1 ... p6 (:mod:`nucleai.refine.params`;
      the published values without it).

Finding a model (:func:`locate`)
    A folder path, or the name of a bundled model. Bundled models are the sub-folders of
    :func:`models_dir`: the folder named by the environment variable ``NUCLEAI_MODELS_DIR`` when
    it is set, otherwise the ``models/`` folder of the repository the package was installed from
    in editable mode (``<repo>/shared/nucleai`` -> ``<repo>/models``). A non-editable install
    has no repository beside it and needs ``NUCLEAI_MODELS_DIR``. A bare name means the bundled
    model when there is one by that name (a folder of the same name in the working directory
    does not shadow it; write ``./name`` for that). Errors list the bundled models of the kind
    asked for (:func:`bundled_models`).

Reading the spec (:func:`read_spec`)
    Checks the folder without TensorFlow: config.json of the kind asked for, a weight file, the
    kind's own files. Every spec has ``path``, ``name``, ``config``, ``weights``,
    ``n_channel_in``, ``div_by`` (input sides must be multiples of these, per axis),
    ``files()`` (what the network is built from) and ``build()`` (the loaded model; TensorFlow
    from here on). :func:`div_by` is the one rule for the U-Net based networks.

Building the detector's network
    The Keras graph is built by stardist's own model class from the folder's ``config.json``
    (``StarDist2D(Config2D(**config), basedir=None)``, which is what ``StarDist2D(None, name,
    basedir)`` does minus the file access), and the weights are loaded into it with Keras. Only
    its ``keras_model`` is used, for the forward pass, wrapped in one ``tf.function`` that
    accepts any input size (Keras' own ``predict`` re-traces for every new image shape, which
    costs more than the prediction itself on small images). Normalisation, padding, tiling, NMS
    and rendering are ours (:mod:`nucleai.predict`). Reusing stardist's builder guarantees the
    weights of any stardist model load exactly, layer by layer, and the outputs are bit-identical
    to stardist's ``keras_model.predict``.

Caching (:func:`load`, :func:`release`)
    :func:`load` keeps loaded models for the life of the process (a CellProfiler worker, a
    ``nucleai segment`` run), one cache for all kinds, keyed by the resolved folder, the
    precision (a bfloat16 and a float32 build of one folder are two models) and the
    modification times and sizes of the spec's ``files()`` (for a refinement U-Net these include
    refine.json, so re-tuned parameters give a new model object; a loaded model is never
    changed). Asking again for the same unchanged folder returns the same object without
    touching TensorFlow; a model retrained into the same folder is built again on the next call
    and replaces the old entry. Building logs one line (name, folder, seconds, precision and
    why) on the
    ``nucleai`` logger; a cache hit logs nothing. :func:`release` forgets one model or all. The
    cache is guarded by a lock, so threads may share it.
"""
import contextlib
import importlib
import io
import json
import logging
import math
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from .errors import InputError
from .runtime import FLOAT32, dtype_policy, prepare_tensorflow, resolve_precision

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


class Kind(NamedTuple):
    """One kind of model folder."""

    #: What it is called in messages.
    what: str
    #: What uses it, for the message when a folder of this kind is given for another.
    used_by: str
    #: ``module:function`` that reads its spec from a located folder and its config.json
    #: (imported only when a folder of this kind is read).
    reader: str


#: The kinds of model folder, by the name ``config.json`` gives as ``"kind"`` (a detector's,
#: stardist's own config, gives none).
KINDS = {
    "starconvex": Kind("star-convex model", "it detects objects (RunStarConvex, nucleai segment)",
                       "nucleai.models:starconvex_spec"),
    "unet": Kind("contour-refinement U-Net", "it refines objects (RefineContoursUNet, nucleai refine)",
                 "nucleai.refine.unet:unet_spec"),
    "generator": Kind("pix2pix generator", "it renders a style's training images (StyleAugmentTrain)",
                      "nucleai.train.pix2pix:generator_spec"),
}

_CONFIG_KEYS = ("n_dim", "axes", "n_channel_in", "n_rays", "grid", "backbone")
_log = logging.getLogger(__name__)


def models_dir():
    """The folder holding the bundled models (see the module docstring for the rule)."""
    override = os.environ.get(MODELS_DIR_ENV)
    if override:
        return Path(override).expanduser()
    import nucleai

    return Path(nucleai.__file__).resolve().parents[2] / "models"


def _check_kind(kind):
    if kind not in KINDS:
        raise ValueError(f"unknown model kind {kind!r}; one of {', '.join(KINDS)}")


def _kind_of_config(config):
    kind = config.get("kind")
    return kind if kind in KINDS and kind != "starconvex" else "starconvex"


def model_kind(folder):
    """The kind of a model folder as its config.json declares it (``"starconvex"`` when it
    declares none, or cannot be read)."""
    try:
        config = json.loads((Path(folder) / CONFIG_FILE).read_text())
    except (OSError, UnicodeDecodeError, ValueError):
        return "starconvex"
    return _kind_of_config(config) if isinstance(config, dict) else "starconvex"


def bundled_models(kind="starconvex"):
    """Names of the bundled models of one kind: sub-folders of :func:`models_dir` with a
    config.json of that kind (see :data:`KINDS`)."""
    _check_kind(kind)
    folder = models_dir()
    if not folder.is_dir():
        return []
    return sorted(
        p.name for p in folder.iterdir() if (p / CONFIG_FILE).is_file() and model_kind(p) == kind
    )


def _looks_like_path(text):
    return os.sep in text or "/" in text or text.startswith((".", "~"))


def bundled_model_dir(name, kind="starconvex"):
    """The folder of the bundled model ``name`` (no folder of that name elsewhere).

    Raises
    ------
    InputError
        If :func:`models_dir` has no such model folder; the message lists the bundled models of
        ``kind``.
    """
    _check_kind(kind)
    folder = models_dir() / str(name)
    if str(name) and "/" not in str(name) and os.sep not in str(name) and folder.is_dir():
        return folder.resolve()
    available = ", ".join(bundled_models(kind)) or "none"
    hint = "" if models_dir().is_dir() else (
        f"; that folder does not exist: set {MODELS_DIR_ENV} to the folder of bundled models"
    )
    raise InputError(
        f"no bundled model {str(name)!r} in {models_dir()} (bundled {KINDS[kind].what}s: "
        f"{available}){hint}"
    )


def locate(name_or_path, kind="starconvex"):
    """The folder of a model given by bundled name or by path.

    Parameters
    ----------
    name_or_path : str or Path
        The name of a bundled model (a sub-folder of :func:`models_dir`), or a model folder. Text
        that looks like a path (a ``Path``, or containing ``/``, or starting with ``.`` or ``~``)
        is always a folder; a bare name is a bundled model if there is one by that name, else a
        folder of that name in the working directory. So ``fluo_nuclei`` is always the bundled
        model, and ``./fluo_nuclei`` a local folder.
    kind : str
        The kind wanted (:data:`KINDS`); only the error message depends on it.

    Returns
    -------
    Path
        The resolved (absolute) folder. Its contents are not checked here; see
        :func:`read_spec`.

    Raises
    ------
    InputError
        If nothing by that name or path exists; the message lists the bundled models of ``kind``.
    """
    _check_kind(kind)
    text = str(name_or_path).strip()
    if not text:
        raise InputError(f"no model given: name a bundled {KINDS[kind].what} or a model folder")
    path = Path(text).expanduser()
    if isinstance(name_or_path, Path) or _looks_like_path(text):
        if path.is_dir():
            return path.resolve()
        if path.exists():
            raise InputError(f"model {path} is a file; a model is a folder (with {CONFIG_FILE})")
        raise InputError(f"model folder {path} does not exist")
    if (models_dir() / text).is_dir():
        return bundled_model_dir(text, kind)
    if path.is_dir():
        return path.resolve()
    try:
        return bundled_model_dir(text, kind)
    except InputError as error:
        raise InputError(f"no model folder {text!r} and {error}") from None


def read_json(path):
    """A JSON object from ``path``; InputError naming the file when unreadable or not an object."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError) as error:
        raise InputError(f"{path}: cannot be read ({error})") from error
    except json.JSONDecodeError as error:
        raise InputError(f"{path}: not valid JSON ({error})") from error
    if not isinstance(data, dict):
        raise InputError(f"{path}: a JSON object ({{...}}) was expected")
    return data


def find_weights(folder):
    """The weight file of a model folder: the first of :data:`WEIGHTS_FILES` present.

    Raises
    ------
    InputError
        If there is none; other ``*.h5`` files present are named.
    """
    weights = next((folder / name for name in WEIGHTS_FILES if (folder / name).is_file()), None)
    if weights is None:
        present = sorted(p.name for p in folder.glob("*.h5"))
        found = f" (found only {', '.join(present)})" if present else ""
        raise InputError(f"model folder {folder} has no {' or '.join(WEIGHTS_FILES)}{found}")
    return weights


def div_by(config):
    """Input sides (y, x) must be multiples of these: ``unet_pool ** unet_n_depth * grid``.

    The rule of stardist's U-Net, with stardist's ``Config2D`` defaults for keys a config
    leaves out (pool 2 x 2, depth 3, grid 1 x 1); a refinement U-Net's config has no pool or
    grid, so its inputs are multiples of ``2 ** unet_n_depth``.
    """
    depth = int(config.get("unet_n_depth", 3))
    pool, grid = config.get("unet_pool", (2, 2)), config.get("grid", (1, 1))
    return tuple(int(p) ** depth * int(g) for p, g in zip(pool, grid))


def load_weights(keras_model, spec, network):
    """Load ``spec.weights`` into ``keras_model`` (returned), or raise an InputError naming the
    file: a truncated HDF5 or weights of another architecture are the folder's problem, not a
    traceback. ``network`` says what the config describes ("network", "U-Net", "generator")."""
    try:
        keras_model.load_weights(str(spec.weights))
    except Exception as error:  # truncated HDF5, another architecture, ...
        raise InputError(
            f"{spec.weights}: the weights do not load into the {network} described by "
            f"{CONFIG_FILE} ({type(error).__name__}: {error})"
        ) from error
    return keras_model


def compiled_forward(call, n_channel_in):
    """``call(batch)`` as one ``tf.function`` for float32 (N, H, W, n_channel_in) batches of any
    size: Keras' own ``predict`` re-traces for every new image shape, which costs more than the
    prediction itself on small images."""
    import tensorflow as tf

    signature = [tf.TensorSpec([None, None, None, n_channel_in], tf.float32)]
    return tf.function(call, input_signature=signature, reduce_retracing=True)


def as_float32(tensor):
    """A network output as float32: unchanged in a float32 network (no copy, so float32
    results stay bit-identical), cast from a bfloat16 one."""
    import tensorflow as tf

    return tensor if tensor.dtype == tf.float32 else tf.cast(tensor, tf.float32)


def read_spec(name_or_path, kind="starconvex"):
    """Find and check a model folder of one kind without loading the network.

    Parameters
    ----------
    name_or_path : str or Path
        See :func:`locate`.
    kind : str
        ``"starconvex"``, ``"unet"`` or ``"generator"``.

    Returns
    -------
    StarConvexSpec, nucleai.refine.unet.UNetSpec or nucleai.train.pix2pix.GeneratorSpec

    Raises
    ------
    InputError
        Naming the folder or file: the folder does not exist, config.json is missing, not JSON,
        of another kind or not valid for the kind, there is no weight file, or a file of the
        kind (thresholds.json, nucleai.json, refine.json) holds values out of range.
    """
    path = locate(name_or_path, kind)
    config_path = path / CONFIG_FILE
    if not config_path.is_file():
        raise InputError(
            f"model folder {path} has no {CONFIG_FILE}; a model folder holds {CONFIG_FILE} and "
            f"{' or '.join(WEIGHTS_FILES)}"
        )
    config = read_json(config_path)
    found = _kind_of_config(config)
    if found != kind:
        raise InputError(
            f"{config_path}: a {KINDS[found].what}, not a {KINDS[kind].what}; {KINDS[found].used_by}"
        )
    module, function = KINDS[kind].reader.split(":")
    return getattr(importlib.import_module(module), function)(path, config)


# --------------------------------------------------------------------------------------------
# Star-convex detectors


@dataclass(frozen=True)
class StarConvexSpec:
    """What a detector's folder declares, checked; no TensorFlow involved.

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
        Input sizes must be multiples of these (:func:`div_by`).
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

    kind = "starconvex"

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

    def build(self, precision=FLOAT32):
        """The loaded model (TensorFlow), computing in ``precision``; use :func:`load` for the
        cached one."""
        return StarConvexModel(self, precision)


def _check_config(config, path):
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
        required = div_by(config)
    except (TypeError, ValueError) as error:
        raise InputError(f"{path}: malformed grid/n_rays/n_channel_in/unet_pool ({error})") from error
    if len(grid) != 2 or len(pool) != 2 or min(grid) < 1 or n_rays < 3 or n_channel_in < 1:
        raise InputError(
            f"{path}: implausible values (grid {grid}, unet_pool {pool}, n_rays {n_rays}, "
            f"n_channel_in {n_channel_in})"
        )
    return grid, n_rays, n_channel_in, required


def _read_thresholds(path):
    if not path.is_file():
        return DEFAULT_PROB_THRESH, DEFAULT_NMS_THRESH, "default"
    data = read_json(path)
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
    value = read_json(path).get("object_diameter")
    if value is None:
        return None
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not (
        math.isfinite(value) and value > 0
    ):
        raise InputError(f"{path}: 'object_diameter' must be a positive number, found {value!r}")
    return float(value)


def starconvex_spec(path, config):
    """The :class:`StarConvexSpec` of a located detector folder and its config.json (use
    :func:`read_spec`, which finds the folder and checks the kind)."""
    grid, n_rays, n_channel_in, required = _check_config(config, path / CONFIG_FILE)
    weights = find_weights(path)
    prob, nms, source = _read_thresholds(path / THRESHOLDS_FILE)
    return StarConvexSpec(
        path=path,
        config=config,
        prob_thresh=prob,
        nms_thresh=nms,
        thresholds_from=source,
        weights=weights,
        n_channel_in=n_channel_in,
        n_rays=n_rays,
        grid=grid,
        div_by=required,
        object_diameter=_read_object_diameter(path / METADATA_FILE),
    )


class StarConvexModel:
    """A loaded detector: its :class:`StarConvexSpec` and the network's forward pass.

    Use :func:`load` to get one (cached). ``predict_maps`` is the only place TensorFlow runs;
    everything else in :mod:`nucleai.predict` is numpy.
    """

    def __init__(self, spec, precision=FLOAT32):
        self.spec = spec
        self.precision = precision
        prepare_tensorflow()
        try:
            with contextlib.redirect_stdout(io.StringIO()), dtype_policy(precision):
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
        self.keras_model = load_weights(self.stardist_model.keras_model, spec, "network")
        keras_model = self.keras_model

        def forward(batch):
            outputs = keras_model([batch], training=False)
            return as_float32(outputs[0]), as_float32(outputs[1])

        self._forward = compiled_forward(forward, spec.n_channel_in)
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

        prob, dist = self.predict_maps_batch(np.asarray(x)[np.newaxis])
        return prob[0], dist[0]

    def predict_maps_batch(self, xs):
        """:meth:`predict_maps` of several inputs of one size, (N, H, W, n_channel_in), in one
        pass: (N, H / gy, W / gx) probabilities and (N, H / gy, W / gx, n_rays) rays."""
        import numpy as np

        prob, dist = self._forward(np.ascontiguousarray(xs, dtype=np.float32))
        # np.asarray views TensorFlow's buffer; Tensor.numpy() would copy it (~0.1 s at 2048 px)
        return np.asarray(prob)[..., 0], np.asarray(dist)

    @property
    def tile_overlap(self):
        """Pixels of context each side a tile needs, per axis (y, x): the receptive field.

        Measured once (then cached) as stardist does, from the response to an impulse, on the
        float32 network: the field is the architecture's, and bfloat16 rounding would cut off
        its faint edge.
        """
        if self._tile_overlap is None and self.precision != FLOAT32:
            self._tile_overlap = load(self.spec.path, precision=FLOAT32).tile_overlap
        if self._tile_overlap is None:
            with contextlib.redirect_stdout(io.StringIO()):
                field_ = self.stardist_model._compute_receptive_field()
            self._tile_overlap = tuple(int(max(side)) for side in field_)
        return self._tile_overlap


# --------------------------------------------------------------------------------------------
# The cache


_cache = {}
_cache_lock = threading.Lock()


def _stamps(spec):
    stamps = []
    for path in spec.files():
        stat = path.stat()
        stamps.append((path.name, stat.st_mtime_ns, stat.st_size))
    return tuple(stamps)


def load(name_or_path, kind="starconvex", precision=FLOAT32):
    """The loaded model for a bundled name or folder, built at most once per process and
    precision.

    Parameters
    ----------
    name_or_path : str or Path
        See :func:`locate`.
    kind : str
        ``"starconvex"``, ``"unet"`` or ``"generator"``.
    precision : str
        What the network computes in (:data:`nucleai.runtime.PRECISIONS`): ``"float32"``,
        ``"bfloat16"`` (float32 weights, bfloat16 arithmetic; outputs float32) or ``"auto"``
        (bfloat16 where the hardware has it, :func:`nucleai.runtime.resolve_precision`). The
        model's ``precision`` says which it runs in; the log line says why.

    Returns
    -------
    StarConvexModel, nucleai.refine.unet.UNetModel or nucleai.train.pix2pix.GeneratorModel
        With the spec it was built from as ``.spec``. The same object as long as the folder's
        files are unchanged and :func:`release` is not called; never modified afterwards.

    Raises
    ------
    InputError
        For anything :func:`read_spec` rejects, a config the network cannot be built from, or
        weights that do not load (truncated file, another architecture); the message names the
        file. A precision not in :data:`nucleai.runtime.PRECISIONS`.
    """
    chosen = resolve_precision(precision)
    spec = read_spec(name_or_path, kind)
    stamps = _stamps(spec)
    key = (spec.path, chosen.name)
    with _cache_lock:
        cached = _cache.get(key)
        if cached is not None and cached[0] == stamps:
            return cached[1]
        start = time.perf_counter()
        model = spec.build(chosen.name)
        _cache[key] = (stamps, model)
    _log.info("loaded %s %s from %s in %.2f s, %s", KINDS[kind].what, spec.name, spec.path,
              time.perf_counter() - start, chosen)
    return model


def release(name_or_path=None, kind="starconvex"):
    """Forget loaded models: the one of ``name_or_path`` (see :func:`locate`), or all.

    The next :func:`load` of a released folder builds the network again; objects already handed
    out stay usable. Returns the number of models released.
    """
    with _cache_lock:
        if name_or_path is None:
            count = len(_cache)
            _cache.clear()
            return count
        path = locate(name_or_path, kind)
        keys = [key for key in _cache if key[0] == path]
        for key in keys:
            del _cache[key]
        return len(keys)
