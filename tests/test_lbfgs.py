"""LBFGS against scipy's L-BFGS-B on a convex problem, through raw tf Variables and a
real Keras model, plus Rosenbrock. All computation is real; nothing is mocked."""

import keras
import numpy as np
import pytest
import scipy.optimize
import tensorflow as tf

from kmexp.errors import ConfigError
from kmexp.optim import LBFGS

N_SAMPLES, N_FEATURES, N_CLASSES, L2 = 200, 10, 3, 1e-2
N_KERNEL = N_FEATURES * N_CLASSES


@pytest.fixture(scope="module")
def data():
    """Multinomial data from a noisy linear model, so the classes overlap."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(N_SAMPLES, N_FEATURES))
    true_kernel = rng.normal(size=(N_FEATURES, N_CLASSES))
    labels = np.argmax(x @ true_kernel + rng.gumbel(size=(N_SAMPLES, N_CLASSES)), axis=1)
    return x, np.eye(N_CLASSES)[labels]


def numpy_objective(theta, x, y):
    """Mean cross-entropy + L2 * ||kernel||^2 and its gradient; theta = [kernel, bias]."""
    kernel = theta[:N_KERNEL].reshape(N_FEATURES, N_CLASSES)
    logits = x @ kernel + theta[N_KERNEL:]
    logits = logits - logits.max(axis=1, keepdims=True)
    log_probs = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    loss = -np.sum(y * log_probs) / len(x) + L2 * np.sum(kernel**2)
    residual = (np.exp(log_probs) - y) / len(x)
    grad = np.concatenate([(x.T @ residual + 2 * L2 * kernel).ravel(), residual.sum(axis=0)])
    return loss, grad


@pytest.fixture(scope="module")
def scipy_optimum(data):
    x, y = data
    result = scipy.optimize.minimize(
        numpy_objective,
        np.zeros(N_KERNEL + N_CLASSES),
        args=(x, y),
        jac=True,
        method="L-BFGS-B",
        options={"ftol": 0.0, "gtol": 1e-12, "maxiter": 10_000},
    )
    assert np.max(np.abs(result.jac)) < 1e-8, result.message
    return result.fun, result.x


def tf_problem(data, dtype=tf.float64):
    """The same objective on plain tf Variables, starting from zero like scipy."""
    x, y = (tf.constant(a, dtype) for a in data)
    kernel = tf.Variable(tf.zeros((N_FEATURES, N_CLASSES), dtype))
    bias = tf.Variable(tf.zeros((N_CLASSES,), dtype))

    def loss_fn():
        logits = x @ kernel + bias
        cross_entropy = tf.nn.softmax_cross_entropy_with_logits(labels=y, logits=logits)
        return tf.reduce_mean(cross_entropy) + L2 * tf.reduce_sum(kernel**2)

    return loss_fn, [kernel, bias]


def flat(variables):
    return np.concatenate([np.asarray(v.numpy(), np.float64).ravel() for v in variables])


@pytest.mark.parametrize("line_search", ["strong_wolfe", "armijo"])
def test_converges_to_scipy_optimum_on_logistic_regression(data, scipy_optimum, line_search):
    loss_fn, variables = tf_problem(data)
    result = LBFGS(line_search=line_search).minimize(loss_fn, variables, max_iterations=200)

    best_loss, best_theta = scipy_optimum
    assert result["converged"]
    assert 0 < result["iterations"] < 200
    assert result["function_evals"] >= result["iterations"] + 1
    assert result["loss"] == pytest.approx(best_loss, rel=1e-6)
    np.testing.assert_allclose(flat(variables), best_theta, atol=1e-4)
    # The returned loss is the loss at the variables left behind, not at a line-search trial.
    assert result["loss"] == pytest.approx(float(loss_fn()), rel=1e-12)


def test_keras_model_matches_scipy_optimum(data, scipy_optimum):
    x, y = (a.astype("float32") for a in data)
    model = keras.Sequential(
        [
            keras.Input((N_FEATURES,)),
            keras.layers.Dense(
                N_CLASSES,
                activation="softmax",
                kernel_initializer="zeros",
                kernel_regularizer=keras.regularizers.L2(L2),
            ),
        ]
    )

    def loss_fn():
        cross_entropy = keras.losses.categorical_crossentropy(y, model(x))
        return keras.ops.mean(cross_entropy) + keras.ops.sum(model.losses)

    optimizer = LBFGS()
    for _ in range(10):  # one call per "epoch", as a training loop would do
        result = optimizer.minimize(loss_fn, model.trainable_variables)
        if result["converged"]:
            break

    best_loss, best_theta = scipy_optimum
    assert result["converged"]
    assert model.trainable_variables[0].dtype == "float32"
    # float32 model: the loss is only good to float32 precision.
    assert result["loss"] == pytest.approx(best_loss, rel=1e-6)
    np.testing.assert_allclose(flat(model.trainable_variables), best_theta, atol=1e-3)


def test_state_persists_across_calls(data, scipy_optimum):
    loss_fn, variables = tf_problem(data)
    one_shot = LBFGS().minimize(loss_fn, variables, max_iterations=200)
    one_shot_theta = flat(variables)

    loss_fn, variables = tf_problem(data)
    optimizer = LBFGS()
    calls = []
    while not (calls and calls[-1]["converged"]) and len(calls) < 40:
        calls.append(optimizer.minimize(loss_fn, variables, max_iterations=5))

    assert calls[-1]["converged"]
    assert all(call["iterations"] <= 5 for call in calls)
    assert len(calls) > 1
    # With the history carried over, chunks of 5 retrace the one-shot run exactly;
    # a reset between calls would restart from steepest descent and take another path.
    assert optimizer.iterations == sum(c["iterations"] for c in calls) == one_shot["iterations"]
    np.testing.assert_allclose(flat(variables), one_shot_theta, rtol=0, atol=1e-10)
    assert calls[-1]["loss"] == pytest.approx(scipy_optimum[0], rel=1e-6)

    # A further call stays at the optimum. (Convergence by loss change is a property of
    # the last iteration, not of the point, so it may take one more polishing step.)
    again = optimizer.minimize(loss_fn, variables, max_iterations=5)
    assert again["converged"] and again["iterations"] <= 1
    assert again["loss"] <= calls[-1]["loss"]


@pytest.mark.parametrize("line_search", ["strong_wolfe", "armijo"])
def test_rosenbrock_reaches_one_one(line_search):
    x = tf.Variable([-1.2, 1.0], dtype=tf.float64)

    def rosenbrock():
        return (1.0 - x[0]) ** 2 + 100.0 * (x[1] - x[0] ** 2) ** 2

    result = LBFGS(line_search=line_search).minimize(rosenbrock, [x], max_iterations=200)

    assert result["converged"]
    np.testing.assert_allclose(x.numpy(), [1.0, 1.0], atol=1e-5)
    assert result["loss"] < 1e-10


def test_config_round_trip_and_validation():
    optimizer = LBFGS(learning_rate=0.5, history_size=5, line_search="armijo")
    config = optimizer.get_config()
    assert config == {
        "learning_rate": 0.5,
        "history_size": 5,
        "iterations_per_epoch": 10,
        "tolerance_grad": 1e-7,
        "tolerance_change": 1e-9,
        "line_search": "armijo",
    }
    assert LBFGS.from_config(config).get_config() == config
    # The same rules, in the same words, as validate() on conf/optimizer/lbfgs.yaml.
    with pytest.raises(ConfigError, match="optimizer.line_search=wolfe is not allowed: it must be one of strong_wolfe, armijo"):
        LBFGS(line_search="wolfe")
    with pytest.raises(ConfigError, match="optimizer.history_size=0 is not allowed: it must be an integer >= 1"):
        LBFGS(history_size=0)
    with pytest.raises(ConfigError, match="optimizer.history_size=2.5 is not allowed: it must be an integer >= 1"):
        LBFGS(history_size=2.5)
    with pytest.raises(ConfigError, match="optimizer.learning_rate=0 is not allowed: it must be > 0"):
        LBFGS(learning_rate=0)
    with pytest.raises(ConfigError, match="optimizer.tolerance_grad=-1 is not allowed: it must be >= 0"):
        LBFGS(tolerance_grad=-1)
