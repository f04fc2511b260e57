"""Test session set-up: two logical CPU devices (for the MirroredStrategy tests) and seeds.

Logical devices must be configured before TensorFlow initialises its runtime, so this runs at
collection time, before any test touches a tensor.
"""

from __future__ import annotations

import numpy as np
import pytest

from keras_rnnedge._compat import keras, tf

_cpus = tf.config.list_physical_devices("CPU")
try:
    tf.config.set_logical_device_configuration(
        _cpus[0], [tf.config.LogicalDeviceConfiguration()] * 2)
except RuntimeError:  # runtime already initialised (e.g. a plugin touched TF first)
    pass


@pytest.fixture(scope="session")
def mirrored_strategy():
    """One two-replica MirroredStrategy for the whole session.

    A second MirroredStrategy in the same process restarts the collective instance keys, and
    its all-reduces collide with the first one's ("Shape mismatch in the collective instance").
    """
    devices = tf.config.list_logical_devices("CPU")
    if len(devices) < 2:
        pytest.skip("needs two logical CPU devices (configured in conftest)")
    return tf.distribute.MirroredStrategy([d.name for d in devices[:2]])


@pytest.fixture(autouse=True)
def _seed():
    keras.utils.set_random_seed(1234)
    keras.backend.clear_session()
    yield


@pytest.fixture
def rng():
    return np.random.default_rng(0)
