"""Jobs of one process reuse a kept network's traced train step, and their numbers do not change for it.

A bag encoder rounds its feature count up (``round_features``), so that
languages of different vocabulary sizes share input shapes; the extra columns
are always zero.
"""

from __future__ import annotations

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from kmexp.paths import config_dir
from kmexp.runs import HISTORY_FILE, MODEL_FILE
from kmexp.train import train
from conftest import files_overrides


def compose_config(overrides: list[str]):
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        return compose(config_name="config", overrides=["logger=none", "trainer.epochs=6", *overrides])


def _run(tmp_path, name: str, overrides: list[str], kept):
    import keras

    keras.backend.clear_session()  # as the job before ends, in a sweep (kmexp.cli)
    run_dir = tmp_path / name
    record = train(compose_config(overrides), run_dir, overrides, kept=kept)
    assert record.status == "completed", record.error
    return record, (run_dir / HISTORY_FILE).read_text(encoding="utf-8")


@pytest.mark.slow
def test_a_kept_network_is_reused_and_gives_the_numbers_of_a_new_one(tmp_path, small_data):
    from kmexp.training.kept import KeptNetworks

    data = files_overrides(small_data)
    kept = KeptNetworks()
    first = _run(tmp_path, "first", [*data, "seed=0"], kept)
    # Same shapes, other seed: the kept network is trained again, from this job's own starting state.
    second = _run(tmp_path, "second", [*data, "seed=1"], kept)
    assert (kept.reused, len(kept)) == (1, 1)
    # Another optimizer: another traced step, so a network of its own.
    sgd = _run(tmp_path, "sgd", [*data, "seed=1", "optimizer=sgd"], kept)
    assert (kept.reused, len(kept)) == (1, 2)

    alone = {name: _run(tmp_path, f"{name}-alone", [*data, *extra], None)
             for name, extra in (("second", ["seed=1"]), ("sgd", ["seed=1", "optimizer=sgd"]))}
    for (record, history), (alone_record, alone_history) in ((second, alone["second"]), (sgd, alone["sgd"])):
        assert history == alone_history  # every epoch's train and dev loss, to the last digit
        assert (record.dev, record.test, record.best_epoch) == (alone_record.dev, alone_record.test, alone_record.best_epoch)
    assert first[1] != second[1]  # the seeds differ, and so do the runs

    # The saved file of a job that trained a kept network reloads and predicts raw strings.
    import tensorflow as tf

    import kmexp

    model = kmexp.load_model(tmp_path / "second" / MODEL_FILE)
    probabilities = model(tf.constant(["le match de football", "今天下雨", "خبز وجبن"]), training=False).numpy()
    assert probabilities.shape == (3, len(record.labels))
    assert np.allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)


def test_rounded_features_add_only_zero_columns(small_data):
    import tensorflow as tf

    from kmexp.encoders.bag import TextFeaturizer, rounded_up

    texts = [row.split("\t")[0] for row in small_data["train"].read_text(encoding="utf-8").splitlines()[1:]]
    cfg = compose_config(files_overrides(small_data))
    options = {key: value for key, value in OmegaConf.to_container(cfg.encoder.preprocessor, resolve=True).items()
               if key not in ("_target_", "round_features")}
    exact = TextFeaturizer(**options, round_features=None).adapt(texts)
    rounded = TextFeaturizer(**options, round_features=3).adapt(texts)

    assert exact.num_features == exact.vocabulary_size
    assert rounded.num_features == rounded_up(exact.vocabulary_size, 3) > exact.vocabulary_size
    wide = tf.sparse.to_dense(rounded(tf.constant(texts))).numpy()
    narrow = tf.sparse.to_dense(exact(tf.constant(texts))).numpy()
    assert wide.shape == (len(texts), rounded.num_features)
    assert np.array_equal(wide[:, : exact.vocabulary_size], narrow)
    assert not wide[:, exact.vocabulary_size :].any()
    # The option is in the saved config, so a reloaded preprocessor has the same width.
    assert TextFeaturizer.from_config(rounded.get_config()).num_features == rounded.num_features


@pytest.mark.parametrize(("count", "bits", "expected"), [(35158, 3, 40960), (32768, 3, 32768), (32769, 3, 40960),
                                                         (7, 3, 7), (12119, 3, 12288), (5, 1, 8), (1, 1, 1)])
def test_rounding_keeps_the_given_significant_bits(count, bits, expected):
    from kmexp.encoders.bag import rounded_up

    assert rounded_up(count, bits) == expected


def test_kept_networks_count_the_bytes_their_variables_hold():
    import keras

    from kmexp.training.kept import KeptNetworks

    def compiled(kept, width: int):
        network = keras.Sequential([keras.Input((width,)), keras.layers.Dense(7)])
        network = kept.compiled(network, keras.optimizers.Adam(), "categorical_crossentropy",
                                jit_compile=False, steps_per_execution=1)
        network.optimizer.build(network.trainable_variables)  # as the first fit does: Adam's slots
        return network

    def held(network) -> int:  # each value read out as an array: another path than the method's
        return sum(np.asarray(v).nbytes for v in [*network.variables, *network.optimizer.variables])

    kept = KeptNetworks(size=1)
    narrow = compiled(kept, 100)
    assert kept.variable_bytes() == held(narrow) > 3 * 100 * 7 * 4  # the kernel and Adam's two slots for it
    # A wider network replaces the narrow one (a bound of 1): what is kept grows with the width.
    wide = compiled(kept, 1000)
    assert len(kept) == 1
    assert kept.variable_bytes() == held(wide) > 3 * 1000 * 7 * 4
