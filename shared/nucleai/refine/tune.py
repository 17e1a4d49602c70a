"""Tuning p1 ... p6 for the DSB score on a user's annotated images, by differential evolution.

nucleAIzer tuned its refinement parameters with a genetic algorithm. The objective is a step
function of the parameters (object counts and pixel sets change in jumps), with three whole-number
parameters (p2, p4, p5), no gradient and many flat plateaus, so it needs a global, population-based,
derivative-free optimiser. We use scipy's :func:`~scipy.optimize.differential_evolution` rather
than a genetic algorithm of our own: it is the same family (a population recombined and mutated
generation by generation, the fitter of parent and child kept), it is tested and maintained, it
handles integer parameters (``integrality``) and it is seeded, so a tuning run is reproducible.
The published values seed the population (``x0``), so the result is never worse than them on
the tuning images. Polishing with L-BFGS-B is off (it needs a gradient the objective does not
have).

Objective
    The mean over images of the DSB score (:func:`nucleai.metrics.evaluate_image`) of the
    refined objects against the ground truth, the metric the suite reports.

Cost
    The probability maps and the objects to refine are computed once by the caller; one
    evaluation refines and scores every image (about 10 ms for a 256 x 256 DSB image). One
    generation costs ``popsize * 6`` evaluations; ``maxiter`` generations at most, and
    ``minutes`` bounds the wall clock (checked after every generation). ``workers`` evaluates a
    generation in parallel processes.
"""
import multiprocessing
import time
from dataclasses import dataclass, field

import numpy as np

from ..errors import InputError
from ..labels import check_labels, compact
from ..metrics import DSB_THRESHOLDS, evaluate_image
from .params import INTEGERS, LIMITS, NAMES, PUBLISHED, check_parameters
from .rules import Prepared, check_inputs, prepare, refine

#: Search ranges: p1 over all shares; p2 up to 150 px (a 14 px disc); bands up to 3 px (a
#: contour error of more than 3 px is a wrong object, not a contour to correct); p3 and p6 away
#: from 0 and 1, where the rules stop doing anything.
BOUNDS = {"p1": (0.0, 1.0), "p2": (0, 150), "p3": (0.05, 0.99), "p4": (0, 3), "p5": (0, 3), "p6": (0.0, 0.95)}


#: Largest dense overlap table (entries) :func:`dsb_score` builds; beyond it the sparse metric.
MAX_TABLE = 50_000_000


@dataclass(frozen=True)
class Case:
    """One tuning image, prepared once: the objects to refine (rule 1 applied, see
    :func:`nucleai.refine.rules.prepare`), the probability map, the ground truth renumbered
    1 ... ``n_truth``, and the DSB score of the objects as given."""

    name: str
    objects: Prepared
    prob: np.ndarray
    truth: np.ndarray
    n_truth: int
    unrefined: float


@dataclass
class TuningResult:
    """What :func:`tune_parameters` found.

    Attributes
    ----------
    params : dict
        The best parameters.
    score : float
        Their mean DSB score over the tuning images.
    start_params : dict
    start_score : float
        The starting (published) parameters and their score.
    unrefined_score : float
        The score of the objects as given (no refinement).
    evaluations, generations : int
    seconds : float
    stopped : str
        ``"converged"``, ``"maxiter"`` or ``"time_budget"``.
    history : list of float
        Best score after each generation.
    """

    params: dict
    score: float
    start_params: dict
    start_score: float
    unrefined_score: float
    evaluations: int
    generations: int
    seconds: float
    stopped: str
    history: list = field(default_factory=list)

    def record(self, images):
        """The tuning record stored in refine.json beside the parameters."""
        return {
            "optimizer": "scipy.optimize.differential_evolution", "objective": "mean DSB score",
            "images": int(images), "score": round(self.score, 5),
            "start_params": self.start_params, "start_score": round(self.start_score, 5),
            "unrefined_score": round(self.unrefined_score, 5), "evaluations": self.evaluations,
            "generations": self.generations, "stopped": self.stopped,
            "minutes": round(self.seconds / 60, 2),
        }


def make_cases(names, labels, probs, truths):
    """Checked, prepared :class:`Case` objects; InputError names the image whose arrays do not fit."""
    cases = []
    for name, objects, prob, truth in zip(names, labels, probs, truths, strict=True):
        try:
            objects, prob = check_inputs(objects, prob)
            truth = check_labels(truth, "ground truth", shape=objects.shape)
        except InputError as error:
            raise InputError(f"{name}: {error}") from None
        compacted = compact(truth)
        cases.append(Case(name, prepare(objects), prob, compacted.labels.astype(np.int64), len(compacted.ids),
                          evaluate_image(truth, objects).dsb_score))
    if not cases:
        raise InputError("no images to tune on")
    return cases


def dsb_score(truth, n_truth, pred, n_pred):
    """The DSB score :func:`nucleai.metrics.evaluate_image` gives, for tuning's inner loop.

    The same definition (IoU > t at t = 0.50 ... 0.95, one-to-one, TP / (TP + FP + FN), 1 when
    both sides are empty), computed from a dense overlap table of ``np.bincount`` over a truth
    compacted once and a prediction with ids 1 ... ``n_pred`` (what :func:`refine` returns),
    instead of sorting every pixel pair: several times faster, the same number (tested).
    """
    if n_truth == 0 or n_pred == 0:
        return 1.0 if n_truth == n_pred else 0.0
    stride = n_pred + 1
    if (n_truth + 1) * stride > MAX_TABLE:
        return evaluate_image(truth, pred).dsb_score
    table = np.bincount((truth * stride + pred).ravel(), minlength=(n_truth + 1) * stride)
    table = table.reshape(n_truth + 1, stride)
    truth_area, pred_area = table.sum(axis=1), table.sum(axis=0)
    rows, cols = np.nonzero(table[1:, 1:])
    intersection = table[1:, 1:][rows, cols]
    iou = intersection / (truth_area[rows + 1] + pred_area[cols + 1] - intersection)
    # above 0.5 a pair can only match one-to-one, so the pairs above t are the matching
    tp = (iou[:, np.newaxis] > np.asarray(DSB_THRESHOLDS)).sum(axis=0)
    return float(np.mean(tp / (n_truth + n_pred - tp)))


def mean_score(cases, params=None):
    """Mean DSB score of the refined objects (``params=None``: of the objects as given)."""
    if params is None:
        return float(np.mean([case.unrefined for case in cases]))
    scores = []
    for case in cases:
        refined = refine(case.objects, case.prob, params)
        scores.append(dsb_score(case.truth, case.n_truth, refined.labels, refined.count))
    return float(np.mean(scores))


def _vector_to_params(vector):
    return check_parameters({name: (int(round(v)) if name in INTEGERS else round(float(v), 3))
                             for name, v in zip(NAMES, vector)})


# the cases of the current tuning run, per process (set before the pool forks, or by its
# initializer), so that a generation's evaluations do not pickle the images every time
_CASES = []


def _set_cases(cases):
    _CASES[:] = cases


def _negative_score(vector):
    return -mean_score(_CASES, _vector_to_params(vector))


def check_bounds(bounds):
    """Complete, validated search bounds (missing names from :data:`BOUNDS`)."""
    unknown = sorted(set(bounds) - set(NAMES))
    if unknown:
        raise InputError(f"search bounds: unknown parameter(s) {', '.join(unknown)}")
    result = {}
    for name in NAMES:
        low, high = bounds.get(name, BOUNDS[name])
        limit_low, limit_high = LIMITS[name]
        if not (limit_low <= low <= high and (limit_high is None or high <= limit_high)):
            raise InputError(f"search bounds for {name}: ({low}, {high}) must be increasing and within "
                             f"{limit_low} ... {'' if limit_high is None else limit_high}")
        result[name] = (low, high)
    return result


def tune_parameters(cases, *, bounds=None, start=None, maxiter=15, popsize=6, minutes=None, seed=0,
                    workers=1, log=None):
    """Search p1 ... p6 that maximise the mean DSB score over ``cases``.

    Parameters
    ----------
    cases : sequence of Case
        From :func:`make_cases`.
    bounds : dict, optional
        Search range per parameter (default :data:`BOUNDS`).
    start : dict, optional
        Put into the first population (default: the published values, clipped to the bounds).
    maxiter : int
        Most generations.
    popsize : int
        Population = ``popsize * 6`` parameter sets.
    minutes : float, optional
        Wall-clock budget: no new generation starts after it.
    seed : int
    workers : int
        Processes evaluating a generation in parallel.
    log : callable, optional
        ``log(message)`` after every generation.

    Returns
    -------
    TuningResult
    """
    from scipy.optimize import differential_evolution

    if maxiter < 1 or popsize < 1 or workers < 1:
        raise InputError(f"maxiter, popsize and workers must be >= 1 (got {maxiter}, {popsize}, {workers})")
    if minutes is not None and not minutes > 0:
        raise InputError(f"the time budget must be positive, got {minutes} minutes")
    bounds = check_bounds(bounds or {})
    start = check_parameters(start or PUBLISHED, source="start parameters")
    start = {name: min(max(start[name], bounds[name][0]), bounds[name][1]) for name in NAMES}
    start = check_parameters(start)
    log = log or (lambda message: None)
    began = time.monotonic()
    _set_cases(cases)
    unrefined = mean_score(cases)
    start_score = mean_score(cases, start)
    log(f"{len(cases)} images: unrefined {unrefined:.4f}, start parameters {start_score:.4f}")
    history, state = [], {"stopped": "maxiter"}

    def after_generation(intermediate_result):
        history.append(-float(intermediate_result.fun))
        elapsed = (time.monotonic() - began) / 60
        log(f"generation {len(history)}: best {history[-1]:.4f} ({elapsed:.1f} min)")
        if minutes is not None and elapsed >= minutes:
            state["stopped"] = "time_budget"
            return True
        return False

    options = dict(
        bounds=[bounds[name] for name in NAMES], integrality=[name in INTEGERS for name in NAMES],
        x0=[start[name] for name in NAMES], maxiter=maxiter, popsize=popsize, seed=seed, polish=False,
        init="latinhypercube", callback=after_generation, tol=1e-4,
    )
    if workers > 1:
        with multiprocessing.get_context("fork").Pool(workers, initializer=_set_cases, initargs=(cases,)) as pool:
            found = differential_evolution(_negative_score, workers=pool.map, updating="deferred", **options)
    else:
        found = differential_evolution(_negative_score, **options)
    params = _vector_to_params(found.x)
    score = -float(found.fun)
    if score < start_score:  # the start is in the population, so this only guards rounding
        params, score = start, start_score
    stopped = state["stopped"] if state["stopped"] == "time_budget" or not found.success else "converged"
    return TuningResult(
        params=params, score=score, start_params=start, start_score=start_score,
        unrefined_score=unrefined, evaluations=int(found.nfev), generations=int(found.nit),
        seconds=time.monotonic() - began, stopped=stopped, history=history,
    )
