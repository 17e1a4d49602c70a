"""nucleAIzer's contour refinement: a U-Net probability map and five morphological rules.

- :mod:`~nucleai.refine.params`: the parameters p1 ... p6, their published values and
  ``refine.json`` in a refinement model's folder;
- :mod:`~nucleai.refine.rules`: the rules on a label image and a probability map
  (:func:`refine`), with the provenance of every output object;
- :mod:`~nucleai.refine.unet`: the U-Net, its model folder and tiled prediction of the
  probability map (TensorFlow is imported only there, and only when a network is built);
- :mod:`~nucleai.refine.apply`: refining one image (:func:`~nucleai.refine.apply.refine_image`)
  with its checked options (:class:`~nucleai.refine.apply.RefineOptions`), as the command line
  and the RefineContoursUNet module do;
- :mod:`~nucleai.refine.tune`: tuning p1 ... p6 for the DSB score on annotated images.
"""
from .params import NAMES, PUBLISHED, check_parameters, read_parameters, write_parameters
from .rules import FATES, Refinement, refine

__all__ = [
    "FATES", "NAMES", "PUBLISHED", "Refinement", "check_parameters", "read_parameters", "refine",
    "write_parameters",
]
