"""The generic training loop with a minimal one-output network (no star-convex parts)."""
import json

import numpy as np
import pytest

from nucleai.errors import InputError
from nucleai.train import loop

EXTRA_ID = 999


def tiny_network(channels=1):
    import keras

    keras.utils.set_random_seed(0)  # the same initial weights every time
    inputs = keras.Input((None, None, channels))
    outputs = keras.layers.Conv2D(1, 3, padding="same", activation="sigmoid")(inputs)
    return keras.Model(inputs, outputs)


def pairs(n, seed, label=1, shape=(40, 40)):
    rng = np.random.default_rng(seed)
    result = []
    for _ in range(n):
        labels = np.zeros(shape, np.int32)
        side = min(8, min(shape) // 3)
        y, x = rng.integers(0, min(shape) - side, size=2)
        labels[y : y + side, x : x + side] = label
        image = (labels > 0).astype(np.float32)[..., None] + rng.normal(0, 0.1, shape + (1,)).astype(np.float32)
        result.append((image, labels))
    return result


def foreground(labels):
    return ((labels > 0)[..., None].astype(np.float32),)


def settings(**changes):
    base = dict(patch_size=(16, 16), batch_size=4, steps_per_epoch=5, epochs=2, learning_rate=1e-2,
                lr_patience=0, patience=0)
    base.update(changes)
    return loop.TrainSettings(**base)


def binary_crossentropy():
    import keras

    return keras.losses.BinaryCrossentropy()


def test_fit_writes_checkpoints_state_and_curve(tmp_path):
    messages = []
    result = loop.fit(tiny_network(), foreground, [binary_crossentropy()], pairs(4, 0), pairs(2, 1),
                      tmp_path / "run", settings(), progress=False, log=messages.append)
    assert result.epochs_done == 2 and result.stopped == "epochs" and len(result.history) == 2
    assert result.best_val_loss == min(h["val_loss"] for h in result.history)
    for name in (loop.BEST_WEIGHTS, loop.LAST_WEIGHTS, loop.OPTIMIZER_FILE, loop.STATE_FILE):
        assert (tmp_path / "run" / name).is_file()
    assert (tmp_path / "run" / loop.LOSS_CURVE).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    state = json.loads((tmp_path / "run" / loop.STATE_FILE).read_text())
    assert state["epochs_done"] == 2 and state["settings"]["batch_size"] == 4
    assert any("epoch 2" in m for m in messages)


def test_extra_pairs_fill_their_share_of_each_minibatch(tmp_path):
    seen = []

    def counting_targets(labels):
        seen.append(bool((labels == EXTRA_ID).any()))
        return foreground(labels)

    # every patch holds an object (foreground_prob 1), so extra patches are recognisable by id
    loop.fit(tiny_network(), counting_targets, [binary_crossentropy()], pairs(4, 0), pairs(2, 1),
             tmp_path / "run", settings(epochs=1, steps_per_epoch=50, foreground_prob=1.0, extra_share=0.3),
             extra_pairs=pairs(3, 2, label=EXTRA_ID), progress=False)
    training = seen[2:]  # the two validation patches come first
    assert len(training) == 200
    assert 0.2 < np.mean(training) < 0.4
    assert not any(seen[:2]), "extra pairs are never used for validation"


def test_resume_continues_where_it_stopped(tmp_path):
    train, val = pairs(4, 0), pairs(2, 1)
    first = loop.fit(tiny_network(), foreground, [binary_crossentropy()], train, val, tmp_path, settings(epochs=2),
                     progress=False)
    messages = []
    resumed = loop.fit(tiny_network(), foreground, [binary_crossentropy()], train, val, tmp_path, settings(epochs=3),
                       progress=False, log=messages.append)
    assert resumed.epochs_done == 3 and len(resumed.history) == 3
    assert resumed.history[:2] == first.history
    assert messages[0].startswith("resuming after epoch 2")
    # an uninterrupted run of 3 epochs gives the same losses (weights, optimiser state and random
    # generator restored)
    straight = loop.fit(tiny_network(), foreground, [binary_crossentropy()], train, val, tmp_path / "straight",
                        settings(epochs=3), progress=False)
    for key in ("loss", "val_loss"):
        np.testing.assert_allclose([h[key] for h in resumed.history], [h[key] for h in straight.history],
                                   rtol=1e-5)
    again = loop.fit(tiny_network(), foreground, [binary_crossentropy()], train, val, tmp_path, settings(epochs=3),
                     progress=False)
    assert again.epochs_done == 3 and len(again.history) == 3, "nothing left to do"


def test_early_stopping_and_time_budget(tmp_path):
    # a learning rate too small to change the validation loss: no epoch improves on the first
    stopped = loop.fit(tiny_network(), foreground, [binary_crossentropy()], pairs(4, 0), pairs(2, 1),
                       tmp_path / "early", settings(epochs=10, learning_rate=1e-12, patience=2), progress=False)
    assert stopped.stopped == "early_stopping" and stopped.epochs_done == 3 and stopped.best_epoch == 1
    budget = loop.fit(tiny_network(), foreground, [binary_crossentropy()], pairs(4, 0), pairs(2, 1),
                      tmp_path / "budget", settings(epochs=10, minutes=1e-6), progress=False)
    assert budget.stopped == "time_budget" and budget.epochs_done == 1


def test_learning_rate_is_reduced_on_plateau(tmp_path):
    result = loop.fit(tiny_network(), foreground, [binary_crossentropy()], pairs(4, 0), pairs(2, 1),
                      tmp_path, settings(epochs=3, learning_rate=1e-12, lr_patience=1, lr_factor=0.5),
                      progress=False)
    rates = [h["learning_rate"] for h in result.history]
    assert rates[1] == pytest.approx(rates[0] / 2) and rates[2] == pytest.approx(rates[0] / 4)


def test_small_images_are_padded(tmp_path):
    result = loop.fit(tiny_network(), foreground, [binary_crossentropy()], pairs(2, 0, shape=(10, 12)),
                      pairs(1, 1, shape=(12, 10)), tmp_path, settings(epochs=1), progress=False)
    assert result.epochs_done == 1


def test_bad_input(tmp_path):
    fit = loop.fit
    with pytest.raises(InputError, match="network takes 3 channels"):
        fit(tiny_network(3), foreground, [binary_crossentropy()], pairs(2, 0), pairs(1, 1), tmp_path, settings())
    with pytest.raises(InputError, match="extra"):
        fit(tiny_network(), foreground, [binary_crossentropy()], pairs(2, 0), pairs(1, 1), tmp_path,
            settings(extra_share=0.5))
    with pytest.raises(InputError, match="no validation images"):
        fit(tiny_network(), foreground, [binary_crossentropy()], pairs(2, 0), [], tmp_path, settings())
    with pytest.raises(InputError, match="batch size"):
        fit(tiny_network(), foreground, [binary_crossentropy()], pairs(2, 0), pairs(1, 1), tmp_path,
            settings(batch_size=0))
    image, labels = pairs(1, 0)[0]
    with pytest.raises(InputError, match="training pair 0"):
        fit(tiny_network(), foreground, [binary_crossentropy()], [(image, labels[:-1])], pairs(1, 1), tmp_path,
            settings())


# ------------------------------------------------------------------------------------------------
# stopping on request (CellProfiler's Stop Analysis) and progress for a front end


def test_a_stop_drops_the_unfinished_epoch_and_keeps_the_last_whole_one(tmp_path):
    train, val = pairs(4, 0), pairs(2, 1)
    seen, messages = [], []
    result = loop.fit(tiny_network(), foreground, [binary_crossentropy()], train, val, tmp_path,
                      settings(epochs=3), progress=False, log=messages.append, on_progress=seen.append,
                      should_stop=lambda: bool(seen) and (seen[-1].epoch, seen[-1].step) == (2, 2))
    assert result.stopped == "stopped" and result.epochs_done == 1 and result.best_epoch == 1
    assert len(result.history) == 1
    assert [(p.epoch, p.step) for p in seen] == [(1, s) for s in range(1, 6)] + [(2, 1), (2, 2)]
    assert all(p.epochs == 3 and p.steps == 5 and np.isfinite(p.loss) and p.loss > 0 for p in seen)
    assert seen[0].seconds_left > 0 and seen[-1].seconds_left < seen[0].seconds_left
    assert any("stopped on request during epoch 2" in m for m in messages)
    state = json.loads((tmp_path / loop.STATE_FILE).read_text())
    assert state["epochs_done"] == 1 and state["stopped"] is None, "the checkpoint is that of epoch 1"
    # resumable: the stopped run goes on as if it had never stopped
    resumed = loop.fit(tiny_network(), foreground, [binary_crossentropy()], train, val, tmp_path,
                       settings(epochs=3), progress=False)
    straight = loop.fit(tiny_network(), foreground, [binary_crossentropy()], train, val, tmp_path / "straight",
                        settings(epochs=3), progress=False)
    assert resumed.epochs_done == 3 and resumed.stopped == "epochs"
    np.testing.assert_allclose([h["val_loss"] for h in resumed.history],
                               [h["val_loss"] for h in straight.history], rtol=1e-5)


def test_a_stop_before_the_first_epoch_ends_keeps_no_weights(tmp_path):
    seen = []
    with pytest.raises(loop.TrainingStopped, match="before its first epoch ended"):
        loop.fit(tiny_network(), foreground, [binary_crossentropy()], pairs(4, 0), pairs(2, 1), tmp_path,
                 settings(epochs=3), progress=False, on_progress=seen.append, should_stop=lambda: len(seen) == 2)
    assert len(seen) == 2
    for name in (loop.BEST_WEIGHTS, loop.LAST_WEIGHTS, loop.STATE_FILE, loop.LOSS_CURVE):
        assert not (tmp_path / name).exists()


def test_seconds_left_counts_the_steps_left_within_the_time_budget():
    plain = settings(epochs=3, steps_per_epoch=5)
    assert loop.seconds_left(plain, 1, 2, 0.5, elapsed=0) == pytest.approx((2 * 5 - 2) * 0.5)
    assert loop.seconds_left(plain, 3, 0, 0.5, elapsed=0) == 0
    budget = settings(epochs=3, steps_per_epoch=5, minutes=0.05)  # 3 s
    assert loop.seconds_left(budget, 1, 2, 0.5, elapsed=1.0) == pytest.approx(2.0)
    assert loop.seconds_left(budget, 1, 2, 0.5, elapsed=10.0) == 0
