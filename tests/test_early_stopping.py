"""Early stopping's settings, trained for real on small data: ``trainer.patience`` and ``trainer.min_delta``."""

from __future__ import annotations

from hydra import compose, initialize_config_dir

from conftest import files_overrides, write_small_data
from kmexp.config import register_configs
from kmexp.paths import config_dir
from kmexp.train import train


def run(tmp_path, name: str, overrides: list[str]):
    import keras

    register_configs()
    overrides = [*files_overrides(write_small_data(tmp_path / "data")), "logger=none", "device=cpu",
                 "trainer.epochs=12", "trainer.patience=2", *overrides]
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = compose(config_name="config", overrides=overrides)
    keras.backend.clear_session()
    return train(cfg, tmp_path / name, overrides)


def test_an_improvement_smaller_than_min_delta_does_not_count(tmp_path):
    # The dev loss falls at every epoch here, so with min_delta 0 training runs past epoch 3.
    plain = run(tmp_path, "plain", ["trainer.min_delta=0"])
    assert plain.epochs_run > 3 and plain.best_epoch > 1
    # No epoch beats the first by 100 nats: patience (2) runs out at epoch 3, and epoch 1 is restored.
    strict = run(tmp_path, "strict", ["trainer.min_delta=100"])
    assert (strict.epochs_run, strict.best_epoch) == (3, 1)
    assert strict.stop_reason == "early stop at epoch 3: dev loss did not improve for 2 epochs; best epoch 1 restored"
