"""The baseline for ``overhead.py``: kmexp's default SIB-200 job, written by hand in plain Keras.

The same modelling work as ``python -m kmexp language=<tag>`` with the default
config, and nothing else: read the three splits, adapt kmexp's text layer
(``kmexp.encoders.TextFeaturizer``: char_wb 1-5-grams, sublinear TF-IDF, L2 rows,
sparse) on train, a linear head (L2 3e-6) whose kernel is scaled by the training
split's Naive Bayes log-count ratios (NBSVM, smoothing 0.03), Adam 0.05, batch 128, 16 steps per
execution, up to 40 epochs with early stopping on the dev loss (patience 3, min_delta 0.002,
best weights restored), save the end-to-end model, score dev and test.
No config system, no logger, no metrics file, no backups.

With ``--wandb`` it also logs to W&B offline as a hand-written script would: a
run started after the imports (offline, no console capture, no system metrics,
error reporting off, as kmexp's default), the loss and dev loss of each epoch,
the dev and test accuracy in the summary, then finish. That measures what W&B
itself costs, apart from kmexp.

    KMEXP_DATA_DIR=/path/to/sib200 python benchmarks/plain_keras.py --code fra_Latn --out /tmp/plain
    KMEXP_DATA_DIR=/path/to/sib200 python benchmarks/plain_keras.py --code fra_Latn --out /tmp/plain --wandb

The last line printed is JSON: seconds after imports, epochs run, dev and test accuracy.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import tensorflow as tf

from kmexp.encoders import TextFeaturizer

# kmexp's conf/language/_common.yaml with language.tag filled in; only `locale` differs between languages.
STANDARDIZE = {
    "normalization": "NFKC", "case": "fold", "fold_punctuation": True, "strip_diacritics": False,
    "digits": "keep", "fold_whitespace": True,
}


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray, n: int) -> float:
    f1 = []
    for k in range(n):
        tp = np.sum((y_pred == k) & (y_true == k))
        predicted, actual = np.sum(y_pred == k), np.sum(y_true == k)
        f1.append(0.0 if tp == 0 else 2 * tp / (predicted + actual))
    return float(np.mean(f1))


class DevLoss(keras.callbacks.Callback):
    """``val_loss`` from one eager call on the precomputed dev features.

    Keras' own ``validation_data`` runs ``model.evaluate`` after every epoch, which builds
    a new input pipeline each time: on this job that alone costs about 2 s more than the
    whole of kmexp's overhead. kmexp scores dev this way, so the baseline does too, and the
    comparison measures the framework, not a slower validation loop.
    """

    def __init__(self, features, targets):
        super().__init__()
        self.features, self.targets = features, targets

    def on_epoch_end(self, epoch, logs=None):
        logits = self.model(self.features, training=False)
        logs["val_loss"] = float(self.model.loss(self.targets, logits))


def log_count_ratios(x, y, alpha: float) -> np.ndarray:
    """NBSVM's r[j, c]: how much more feature j weighs in class c's training rows than in the others'."""
    by_class = tf.sparse.sparse_dense_matmul(x, tf.constant(y, tf.float32), adjoint_a=True).numpy().astype(np.float64)
    p = alpha + by_class
    q = alpha + by_class.sum(axis=1, keepdims=True) - by_class
    return (np.log(p / p.sum(axis=0)) - np.log(q / q.sum(axis=0))).astype(np.float32)


class NaiveBayesDense(keras.layers.Layer):
    """A linear head whose kernel is multiplied by a fixed scale (log-count ratios), one column per class."""

    def __init__(self, units: int, **kwargs):
        super().__init__(**kwargs)
        self.units = units

    def build(self, input_shape):
        shape = (input_shape[-1], self.units)
        self.kernel = self.add_weight(shape=shape, initializer="glorot_uniform", regularizer=keras.regularizers.L2(3e-6))
        self.bias = self.add_weight(shape=(self.units,), initializer="zeros")
        self.scale = self.add_weight(shape=shape, initializer="ones", trainable=False)

    def call(self, x):
        # TensorFlow's sparse-dense product, as kmexp's layer uses: keras.ops.matmul takes a sparse input
        # through embedding_lookup_sparse, about twice as slow per epoch.
        return tf.sparse.sparse_dense_matmul(x, self.kernel * self.scale) + self.bias

    def get_config(self):
        return {**super().get_config(), "units": self.units}


def start_wandb(out: Path):
    """An offline W&B run in ``out``, with kmexp's default settings (conf/logger/wandb.yaml)."""
    import wandb

    os.environ["WANDB_ERROR_REPORTING"] = "false"
    out.mkdir(parents=True, exist_ok=True)
    settings = wandb.Settings(x_disable_stats=True, console="off", silent=True)
    return wandb.init(project="kmexp-plain", dir=str(out), mode="offline", settings=settings)


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--code", default="fra_Latn", help="SIB-200 code")
    parser.add_argument("--locale", default="fr", help="casing locale (kmexp's language.tag)")
    parser.add_argument("--out", type=Path, required=True, help="folder for model.keras")
    parser.add_argument("--wandb", action="store_true", help="log to W&B offline too")
    return parser.parse_args()


def main() -> None:
    args = arguments()
    print(json.dumps(job(args, started=time.perf_counter())))


def job(args: argparse.Namespace, started: float) -> dict:
    """The modelling work: the seconds since ``started``, the epochs run and the dev and test scores."""
    run = start_wandb(args.out) if args.wandb else None
    keras.utils.set_random_seed(0)
    tf.config.experimental.enable_op_determinism()  # as kmexp does on a CPU: same seed, same numbers

    root = Path(os.environ["KMEXP_DATA_DIR"]) / args.code
    splits = {name: pd.read_csv(root / f"{name}.tsv", sep="\t") for name in ("train", "dev", "test")}
    labels = sorted(splits["train"].category.unique())
    index = {label: i for i, label in enumerate(labels)}
    texts = {name: frame.text.tolist() for name, frame in splits.items()}
    y = {name: np.array([index[c] for c in frame.category]) for name, frame in splits.items()}

    featurizer = TextFeaturizer(
        standardize={**STANDARDIZE, "locale": args.locale}, analyzer="char_wb", ngram_range=[1, 5],
        output_mode="tfidf", sublinear_tf=True, l2_normalize=True, sparse=True, num_bins=None, max_tokens=None,
        min_df=1, round_features=3,
    ).adapt(texts["train"])
    # Features once, outside the training loop (the featurizer is fixed after adapting).
    x_train, x_dev = featurizer(tf.constant(texts["train"])), featurizer(tf.constant(texts["dev"]))
    y_train = keras.utils.to_categorical(y["train"], len(labels))
    y_dev = keras.utils.to_categorical(y["dev"], len(labels))

    head = keras.Sequential([
        keras.Input(shape=(featurizer.num_features,), sparse=True),
        NaiveBayesDense(len(labels)),
    ])
    head.layers[-1].scale.assign(log_count_ratios(x_train, y_train, alpha=0.03))
    head.compile(
        optimizer=keras.optimizers.Adam(0.05), loss=keras.losses.CategoricalCrossentropy(from_logits=True),
        steps_per_execution=16,
    )
    train = (
        tf.data.Dataset.from_tensor_slices((x_train, y_train))
        .shuffle(len(y_train), seed=0, reshuffle_each_iteration=True).batch(128).prefetch(tf.data.AUTOTUNE)
    )
    stopping = keras.callbacks.EarlyStopping(monitor="val_loss", patience=3, min_delta=0.002, restore_best_weights=True)
    callbacks = [DevLoss(x_dev, y_dev), stopping]
    if run is not None:
        callbacks.append(keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: run.log(logs, step=epoch)))
    history = head.fit(train, epochs=40, verbose=0, shuffle=False, callbacks=callbacks)

    texts_in = keras.Input(shape=(), dtype="string")
    model = keras.Model(texts_in, keras.layers.Softmax()(head(featurizer(texts_in))))
    args.out.mkdir(parents=True, exist_ok=True)
    model.save(args.out / "model.keras")
    scores = {}
    for name in ("dev", "test"):
        predicted = model(tf.constant(texts[name]), training=False).numpy().argmax(1)
        scores[name] = {"accuracy": float(np.mean(predicted == y[name])),
                        "macro_f1": macro_f1(y[name], predicted, len(labels))}
    if run is not None:
        run.summary.update({f"{name}/accuracy": score["accuracy"] for name, score in scores.items()})
        run.finish()
    return {"seconds": round(time.perf_counter() - started, 3), "epochs_run": len(history.history["loss"]), **scores}


if __name__ == "__main__":
    main()
