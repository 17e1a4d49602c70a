"""Training networks for nucleus segmentation.

Modules, one job each:

``loop``        a generic Keras training loop on (image, labels) pairs: patches, augmentation,
                extra (synthetic) pairs per minibatch, validation, early stopping, checkpoints,
                resume, time budget, progress bar, loss curve
``augment``     conventional augmentation functions and the :class:`~augment.Augmenter`
``patches``     patch sampling that prefers patches with objects
``data``        reading image/label folders, channel conversion, normalisation, splits
``starconvex``  the StarDist-compatible star-convex network, its targets and losses
``detector``    training a star-convex detector end to end into a model folder
``card``        the model card (MODEL.md)
``options``     :class:`~options.TrainOptions`, every choice of a training run, checked once
``run``         one training run (split, channels, styles, detector): what ``nucleai train`` and
                StyleAugmentTrain both call
``staging``     the staging folder StyleAugmentTrain writes image set by image set and reads back
``seeding``     seeded network construction that leaves the caller's random generators alone

nucleAIzer's style-transfer augmentation:

``style``            style features of images and their clustering into styles
``pix2pix``          a conditional GAN rendering a nucleus mask as an image of one style
``synthetic_masks``  synthetic label images following a style's measured objects
``style_grid``       the PNG of real against synthetic samples per style
``styletransfer``    the whole augmentation, and training a detector with it
"""
