"""The options of one training run (``nucleai train`` and StyleAugmentTrain), checked once.

:class:`TrainOptions` holds every choice a user makes about a training run: the loop's budget and
patches, the validation split, the network's input channels, the seed and, with ``style``, the
style augmentation. It checks itself when made and raises :class:`~nucleai.errors.InputError`
with the field at fault, so the command line names the flag and the CellProfiler module the
setting, and no caller repeats a range. The lower-level settings objects of the parts
(:class:`~nucleai.train.loop.TrainSettings`, :class:`~nucleai.train.styletransfer.StyleSettings`,
:class:`~nucleai.train.pix2pix.GeneratorSettings`) are made from it.
"""
import numbers
from dataclasses import dataclass

from ..errors import InputError
from ..options import check_choice, check_number


@dataclass(frozen=True)
class TrainOptions:
    """One training run's choices (defaults: those of ``nucleai train``).

    Attributes
    ----------
    steps_per_epoch, epochs : int
        Minibatches per epoch; maximum epochs over resumed runs.
    minutes : float or None
        Wall-clock budget of the detector's training in this run (None: none).
    patch_size : (int, int)
        Training patch size; one number means a square.
    batch_size : int
    learning_rate : float
        Initial Adam learning rate.
    patience : int
        Epochs without a better validation loss before stopping (0: never).
    invert_prob : float
        Probability of inverting a training patch's contrast.
    seed : int
        Seeds the split, patches, augmentation, initial weights and styles.
    val_fraction : float
        Share of the annotated images held out for validation when none are given.
    channels : 1, 3 or None
        Input channels of the network; None chooses (:func:`nucleai.train.detector.input_channels`).
    style : bool
        nucleAIzer's style augmentation; the fields below are checked only with it.
    n_styles : int or None
        Style clusters (None: chosen).
    min_per_style, pairs_per_style : int
        Smallest style kept; synthetic pairs rendered per style.
    synthetic_share : float
        Mean share of synthetic pairs in every minibatch, 0.1 to 0.5 (nucleAIzer's range).
    generator_minutes : float
        Training budget of each style's generator.
    generator_size : int
        Side of the generators' training crops; even.
    """

    steps_per_epoch: int = 100
    epochs: int = 100
    minutes: float = None
    patch_size: tuple = (256, 256)
    batch_size: int = 4
    learning_rate: float = 3e-4
    patience: int = 25
    invert_prob: float = 0.0
    seed: int = 0
    val_fraction: float = 0.15
    channels: int = None
    style: bool = False
    n_styles: int = None
    min_per_style: int = 3
    pairs_per_style: int = 20
    synthetic_share: float = 0.3
    generator_minutes: float = 10.0
    generator_size: int = 256

    def __post_init__(self):
        def number(name, **bounds):
            object.__setattr__(self, name, check_number(getattr(self, name), name, **bounds))

        for name in ("steps_per_epoch", "epochs", "batch_size"):
            number(name, low=1, integer=True)
        for name in ("patience", "seed"):
            number(name, low=0, integer=True)
        if self.minutes is not None:
            number("minutes", low=0, low_open=True)
        object.__setattr__(self, "patch_size", _patch_size(self.patch_size))
        number("learning_rate", low=0, low_open=True)
        number("invert_prob", low=0, high=1)
        number("val_fraction", low=0, high=1, low_open=True, high_open=True)
        if self.channels is not None:
            object.__setattr__(self, "channels", check_choice(self.channels, "channels", (1, 3)))
        if not self.style:
            return
        if self.n_styles is not None:
            number("n_styles", low=1, integer=True)
        number("min_per_style", low=1, integer=True)
        number("pairs_per_style", low=1, integer=True)
        number("synthetic_share", low=0.1, high=0.5)
        number("generator_minutes", low=0, low_open=True)
        number("generator_size", low=2, integer=True)
        if self.generator_size % 2:
            raise InputError(f"generator_size must be even, got {self.generator_size}", "generator_size")

    def loop_settings(self):
        """The training loop's :class:`~nucleai.train.loop.TrainSettings`."""
        from .loop import TrainSettings

        return TrainSettings(
            patch_size=self.patch_size, batch_size=self.batch_size, steps_per_epoch=self.steps_per_epoch,
            epochs=self.epochs, learning_rate=self.learning_rate, patience=self.patience,
            minutes=self.minutes, seed=self.seed,
        ).check()

    def style_settings(self):
        """The :class:`~nucleai.train.styletransfer.StyleSettings`, or None without style augmentation."""
        if not self.style:
            return None
        from .pix2pix import GeneratorSettings, depth_for_size
        from .styletransfer import StyleSettings

        generator = GeneratorSettings(size=self.generator_size, depth=depth_for_size(self.generator_size),
                                      minutes=self.generator_minutes, seed=self.seed)
        return StyleSettings(
            k=self.n_styles, min_cluster_size=self.min_per_style, pairs_per_style=self.pairs_per_style,
            share=self.synthetic_share, generator=generator, seed=self.seed,
        ).check()

    def augmenter(self):
        """The conventional augmentation (:class:`~nucleai.train.augment.Augmenter`)."""
        from .augment import Augmenter

        return Augmenter(invert_prob=self.invert_prob)


def _patch_size(value):
    """A patch size as two positive whole numbers (one number: a square)."""
    try:
        sides = [value] if isinstance(value, numbers.Real) else list(value)
    except TypeError:
        raise InputError(f"patch_size must be one or two whole numbers, got {value!r}", "patch_size") from None
    if len(sides) not in (1, 2):
        raise InputError(f"patch_size takes one or two numbers, got {len(sides)}", "patch_size")
    sides = [check_number(side, "patch_size", low=1, integer=True) for side in sides]
    return tuple(sides * 2 if len(sides) == 1 else sides)
