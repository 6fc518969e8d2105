"""Full-batch L-BFGS for small Keras / TensorFlow models.

Keras ships only first-order stochastic optimizers. For small models that fit in memory
(linear probes, logistic regression on frozen features) a quasi-Newton method on the full
batch converges in far fewer steps and needs no learning-rate schedule.

The algorithm follows Nocedal & Wright, "Numerical Optimization" (2nd ed.):
two-loop recursion (Alg. 7.4) with the initial Hessian scaling of eq. 7.20, and a
strong-Wolfe line search (Alg. 3.5 and 3.6). All variables are flattened into one
float64 NumPy vector, so the recursion and line search do not lose precision even when
the model itself runs in float32; values are cast back to each variable's dtype on
assignment.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import tensorflow as tf

from kmexp.config.validation import check_at_least, check_optimizer, raise_problems

# Sufficient-decrease and curvature constants of the Wolfe conditions; 0.9 is the usual
# choice for quasi-Newton methods because it accepts the unit step most of the time.
_C1 = 1e-4
_C2 = 0.9
# A line search that needs more evaluations than this is not going to find a better point.
_MAX_LINE_SEARCH_EVALS = 25
# Pairs with s'y at or below this keep the inverse-Hessian estimate positive definite
# only in theory; skipping them is what keeps the search directions descent directions.
_MIN_CURVATURE = 1e-10


# --------------------------------------------------------------------------------------
# Flat view of the variables and the objective
# --------------------------------------------------------------------------------------


def _tf_variable(variable):
    """The tf.Variable that holds the value, so a GradientTape can watch it.

    A Keras 3 Variable on the TF backend is not a tf.Variable; it wraps one in `.value`.
    (`tf.Variable.value` is a method, hence the isinstance check comes first.)
    """
    if isinstance(variable, tf.Variable):
        return variable
    inner = getattr(variable, "value", None)
    if isinstance(inner, tf.Variable):
        return inner
    raise TypeError(
        f"LBFGS needs keras.Variable or tf.Variable objects, got {type(variable).__name__}"
    )


class _FlatVariables:
    """Reads and writes a list of variables as one float64 vector."""

    def __init__(self, variables: Sequence):
        self.variables = list(variables)
        if not self.variables:
            raise ValueError("LBFGS.minimize got an empty list of variables")
        self.tf_variables = [_tf_variable(v) for v in self.variables]
        self.shapes = [tuple(v.shape) for v in self.tf_variables]
        self.dtypes = [v.dtype for v in self.tf_variables]
        for variable, dtype in zip(self.variables, self.dtypes):
            if not dtype.is_floating:
                raise TypeError(
                    f"LBFGS can only optimize floating-point variables; "
                    f"{getattr(variable, 'path', None) or variable.name} has dtype {dtype.name}"
                )
        sizes = [int(np.prod(shape, dtype=np.int64)) for shape in self.shapes]
        self.offsets = np.cumsum([0] + sizes)
        # Identifies the variable list, so optimizer state is not reused for another model.
        self.key = tuple((id(v), shape) for v, shape in zip(self.variables, self.shapes))

    def read(self) -> np.ndarray:
        return np.concatenate(
            [np.asarray(v.numpy(), dtype=np.float64).ravel() for v in self.tf_variables]
        )

    def write(self, x: np.ndarray) -> np.ndarray:
        """Assign x and return the point actually stored.

        The stored point differs from x by rounding when a variable is float32 or lower;
        returning it keeps the s = x_new - x_old history consistent with the gradients,
        which are evaluated at the rounded point.
        """
        stored = []
        for i, (variable, shape, dtype) in enumerate(
            zip(self.variables, self.shapes, self.dtypes)
        ):
            segment = x[self.offsets[i] : self.offsets[i + 1]].reshape(shape)
            value = segment.astype(dtype.as_numpy_dtype)
            variable.assign(value)
            stored.append(np.asarray(value, dtype=np.float64).ravel())
        return np.concatenate(stored)

    def flatten_gradients(self, gradients) -> np.ndarray:
        if all(g is None for g in gradients):
            raise ValueError(
                "loss_fn does not depend on any of the variables passed to LBFGS.minimize "
                "(every gradient is None)"
            )
        parts = []
        for gradient, shape in zip(gradients, self.shapes):
            if gradient is None:
                # A variable the loss does not use (e.g. an unused layer) has zero gradient.
                parts.append(np.zeros(int(np.prod(shape, dtype=np.int64))))
            else:
                # IndexedSlices (embedding lookups) become dense here; fine for small models.
                dense = tf.convert_to_tensor(gradient)
                parts.append(np.asarray(dense.numpy(), dtype=np.float64).ravel())
        return np.concatenate(parts)


@dataclass
class _Point:
    """A trial point of the line search: step t along d, and the objective there."""

    t: float
    x: np.ndarray
    f: float
    g: np.ndarray
    gtd: float  # directional derivative g'd, the slope of phi(t) = f(x0 + t d)


class _Objective:
    """Evaluates loss and gradient at a flat point and counts evaluations."""

    def __init__(self, loss_fn: Callable, flat: _FlatVariables):
        self.loss_fn = loss_fn
        self.flat = flat
        self.evals = 0

    def __call__(self, x: np.ndarray) -> tuple[np.ndarray, float, np.ndarray]:
        x = self.flat.write(x)
        with tf.GradientTape() as tape:
            tape.watch(self.flat.tf_variables)
            loss = tf.convert_to_tensor(self.loss_fn())
        if loss.shape.rank != 0:
            raise ValueError(
                f"loss_fn must return a scalar, got a tensor of shape {loss.shape}; "
                f"reduce it (e.g. with a mean) inside loss_fn"
            )
        gradients = tape.gradient(loss, self.flat.tf_variables)
        self.evals += 1
        return x, float(loss.numpy()), self.flat.flatten_gradients(gradients)

    def along(self, x0: np.ndarray, d: np.ndarray) -> Callable[[float], _Point]:
        """phi(t): the objective restricted to the ray x0 + t d."""

        def phi(t: float) -> _Point:
            x, f, g = self(x0 + t * d)
            return _Point(t, x, f, g, float(g @ d))

        return phi


# --------------------------------------------------------------------------------------
# Inverse-Hessian estimate
# --------------------------------------------------------------------------------------


@dataclass
class _History:
    """The m most recent (s, y) pairs, and the two-loop recursion that uses them."""

    size: int
    s: deque = field(init=False)
    y: deque = field(init=False)
    rho: deque = field(init=False)

    def __post_init__(self):
        self.clear()

    def clear(self) -> None:
        self.s = deque(maxlen=self.size)
        self.y = deque(maxlen=self.size)
        self.rho = deque(maxlen=self.size)

    def __len__(self) -> int:
        return len(self.s)

    def push(self, s: np.ndarray, y: np.ndarray) -> bool:
        """Store the pair if it has positive curvature; return whether it was stored."""
        sy = float(s @ y)
        if not sy > _MIN_CURVATURE:  # also rejects NaN
            return False
        self.s.append(s)
        self.y.append(y)
        self.rho.append(1.0 / sy)
        return True

    def direction(self, g: np.ndarray) -> np.ndarray:
        """Return -H g, with H the L-BFGS inverse-Hessian estimate (N&W Alg. 7.4)."""
        q = g.copy()
        alphas = []
        for s, y, rho in zip(reversed(self.s), reversed(self.y), reversed(self.rho)):
            alpha = rho * float(s @ q)
            q -= alpha * y
            alphas.append(alpha)
        # H0 = gamma I with gamma = s'y / y'y from the newest pair (N&W eq. 7.20): it gives
        # the direction the right length, so the unit step is usually accepted.
        if self.s:
            gamma = float(self.s[-1] @ self.y[-1]) / float(self.y[-1] @ self.y[-1])
        else:
            gamma = 1.0
        r = gamma * q
        for s, y, rho, alpha in zip(self.s, self.y, self.rho, reversed(alphas)):
            beta = rho * float(y @ r)
            r += (alpha - beta) * s
        return -r


# --------------------------------------------------------------------------------------
# Line searches
# --------------------------------------------------------------------------------------


def _sufficient_decrease(point: _Point, start: _Point) -> bool:
    """Armijo condition; False for a NaN loss, so such steps are shrunk, not taken."""
    return point.f <= start.f + _C1 * point.t * start.gtd


def _curvature_ok(point: _Point, start: _Point) -> bool:
    """Strong-Wolfe curvature condition |phi'(t)| <= c2 |phi'(0)|."""
    return abs(point.gtd) <= -_C2 * start.gtd


def _cubic_minimizer(a: _Point, b: _Point) -> float:
    """Minimizer of the cubic matching f and slope at a and b (N&W eq. 3.59); NaN if none."""
    if a.t == b.t:
        return math.nan
    d1 = a.gtd + b.gtd - 3.0 * (a.f - b.f) / (a.t - b.t)
    d2_squared = d1 * d1 - a.gtd * b.gtd
    if not d2_squared >= 0.0:  # no real minimizer (or inf/NaN inputs)
        return math.nan
    d2 = math.copysign(math.sqrt(d2_squared), b.t - a.t)
    denominator = b.gtd - a.gtd + 2.0 * d2
    if denominator == 0.0:
        return math.nan
    return b.t - (b.t - a.t) * (b.gtd + d2 - d1) / denominator


def _zoom_step(lo: _Point, hi: _Point) -> float:
    """Next trial step inside the bracket: the cubic minimizer, or bisection.

    The cubic is used only if it lands in the inner 80% of the bracket, so that every
    step shrinks the bracket by a fixed fraction at worst.
    """
    left, right = sorted((lo.t, hi.t))
    margin = 0.1 * (right - left)
    t = _cubic_minimizer(lo, hi)
    if math.isfinite(t) and left + margin <= t <= right - margin:
        return t
    return 0.5 * (left + right)


def _extrapolation_step(previous: _Point, current: _Point) -> float:
    """Next, longer trial step while the bracket has not been found yet."""
    t = _cubic_minimizer(previous, current)
    if not math.isfinite(t):
        t = 2.0 * current.t
    # Grow by at least 10% (progress) and at most 10x (do not jump into overflow).
    return min(max(t, 1.1 * current.t), 10.0 * current.t)


def _strong_wolfe(
    phi: Callable[[float], _Point], start: _Point, t: float, tolerance_change: float, d_max: float
) -> _Point:
    """Find a step satisfying the strong Wolfe conditions (N&W Alg. 3.5).

    Returns the accepted point, or the best point with sufficient decrease found within
    the evaluation budget, or `start` if no step decreased the loss.
    """

    def zoom(lo: _Point, hi: _Point, evals_used: int) -> _Point:
        evals_left = _MAX_LINE_SEARCH_EVALS - evals_used
        return _zoom(phi, start, lo, hi, evals_left, tolerance_change, d_max)

    previous = start
    for evals in range(1, _MAX_LINE_SEARCH_EVALS + 1):
        current = phi(t)
        if not _sufficient_decrease(current, start) or (
            previous is not start and current.f >= previous.f
        ):
            # Overshot: the step is too long or the loss rose again, so a Wolfe point
            # lies between the previous (good) step and this one.
            return zoom(previous, current, evals)
        if _curvature_ok(current, start):
            return current
        if current.gtd >= 0:
            # Slope turned positive: a minimizer lies between current and previous.
            return zoom(current, previous, evals)
        t = _extrapolation_step(previous, current)
        previous = current
    return previous  # still descending after the whole budget: take the longest step


def _zoom(
    phi: Callable[[float], _Point],
    start: _Point,
    lo: _Point,
    hi: _Point,
    evals_left: int,
    tolerance_change: float,
    d_max: float,
) -> _Point:
    """Shrink the bracket [lo, hi] to a strong-Wolfe point (N&W Alg. 3.6).

    Invariant: lo has sufficient decrease and the lowest loss seen so far, and the slope
    at lo points towards hi, so a Wolfe point lies between them.
    """
    for _ in range(evals_left):
        if abs(hi.t - lo.t) * d_max < tolerance_change:
            break  # the two ends are the same point in parameter space
        current = phi(_zoom_step(lo, hi))
        if not _sufficient_decrease(current, start) or current.f >= lo.f:
            hi = current
            continue
        if _curvature_ok(current, start):
            return current
        if current.gtd * (hi.t - lo.t) >= 0:
            hi = lo
        lo = current
    return lo


def _armijo(phi: Callable[[float], _Point], start: _Point, t: float) -> _Point:
    """Backtrack from t until the Armijo condition holds; `start` if it never does.

    Each new step minimizes the quadratic through f(0), f'(0) and f(t), kept within
    [0.1 t, 0.5 t] so the search neither stalls nor collapses.
    """
    for _ in range(_MAX_LINE_SEARCH_EVALS):
        current = phi(t)
        if _sufficient_decrease(current, start):
            return current
        curvature = 2.0 * (current.f - start.f - start.gtd * t)
        quadratic = -start.gtd * t * t / curvature if curvature > 0 else math.nan
        if not math.isfinite(quadratic):
            quadratic = 0.5 * t
        t = min(max(quadratic, 0.1 * t), 0.5 * t)
    return start


# --------------------------------------------------------------------------------------
# The optimizer
# --------------------------------------------------------------------------------------


@dataclass
class _State:
    """What persists between minimize calls, so each call continues the same run."""

    key: tuple
    history: _History
    iterations: int = 0
    loss: float | None = None


class LBFGS:
    """Full-batch limited-memory BFGS with a line search.

    Args:
        learning_rate: initial step length tried by the line search. 1.0 is right for
            L-BFGS, whose direction is already scaled; the very first step (no history)
            is shortened to at most 1 / ||g||_1 times this.
        history_size: number of (s, y) pairs kept for the inverse-Hessian estimate.
        iterations_per_epoch: iterations per `minimize` call when none are given.
        tolerance_grad: converged once max |grad| <= this.
        tolerance_change: converged once an iteration changes the loss by less than this
            (absolute); also stops a line search whose bracket shrinks below it.
        line_search: "strong_wolfe" (bracketing + zoom, cubic interpolation) or "armijo"
            (backtracking with sufficient decrease only).

    A run also counts as converged when not even a steepest-descent step lowers the loss
    (the loss change is then zero). Float32 models usually end this way, because their
    gradient never gets below 1e-7; the result is the optimum to float32 precision.
    """

    def __init__(
        self,
        learning_rate: float = 1.0,
        history_size: int = 10,
        iterations_per_epoch: int = 10,
        tolerance_grad: float = 1e-7,
        tolerance_change: float = 1e-9,
        line_search: str = "strong_wolfe",
    ):
        # The rules validate() applies to `optimizer`, for a caller that skipped it.
        raise_problems(check_optimizer({
            "learning_rate": learning_rate, "history_size": history_size, "iterations_per_epoch": iterations_per_epoch,
            "tolerance_grad": tolerance_grad, "tolerance_change": tolerance_change, "line_search": line_search,
        }))
        self.learning_rate = float(learning_rate)
        self.history_size = int(history_size)
        self.iterations_per_epoch = int(iterations_per_epoch)
        self.tolerance_grad = float(tolerance_grad)
        self.tolerance_change = float(tolerance_change)
        self.line_search = line_search
        self._state: _State | None = None

    @property
    def iterations(self) -> int:
        """L-BFGS iterations done so far over all minimize calls."""
        return self._state.iterations if self._state else 0

    def reset(self) -> None:
        """Forget the curvature history; the next minimize starts from steepest descent."""
        self._state = None

    def get_config(self) -> dict:
        return {
            "learning_rate": self.learning_rate,
            "history_size": self.history_size,
            "iterations_per_epoch": self.iterations_per_epoch,
            "tolerance_grad": self.tolerance_grad,
            "tolerance_change": self.tolerance_change,
            "line_search": self.line_search,
        }

    @classmethod
    def from_config(cls, config: dict) -> "LBFGS":
        return cls(**config)

    def minimize(self, loss_fn, variables, max_iterations: int | None = None) -> dict:
        """Run up to max_iterations (default iterations_per_epoch) L-BFGS iterations.

        loss_fn: zero-argument callable returning a scalar tensor computed from
            `variables`; it is called inside a tf.GradientTape once per evaluation.
        variables: list of keras.Variable / tf.Variable (e.g. model.trainable_variables).

        The history, iteration count and last loss persist across calls with the same
        variables, so calling this once per epoch continues one optimization. The loss
        and gradient are re-evaluated at the start of each call (one extra evaluation),
        so a loss_fn or variable values changed in between are picked up.

        Returns {"loss", "iterations" (this call), "function_evals" (this call), "converged"}.
        """
        if max_iterations is None:
            max_iterations = self.iterations_per_epoch
        raise_problems(check_at_least("max_iterations", max_iterations, 0, integer=True))

        flat = _FlatVariables(variables)
        state = self._state_for(flat.key)
        objective = _Objective(loss_fn, flat)

        x, f, g = objective(flat.read())
        if not math.isfinite(f):
            raise FloatingPointError(f"loss_fn returned {f} at the starting point")

        converged = self._gradient_small(g)
        iterations = 0
        while not converged and iterations < max_iterations:
            step = self._line_search(objective, state.history, x, f, g)
            if step is None:
                if len(state.history) == 0:
                    # Even steepest descent cannot lower the loss, so the loss change is
                    # zero and the loss-change criterion holds. This is how float32
                    # models usually end: at their rounding noise floor.
                    converged = True
                    break
                # The quasi-Newton direction failed (stale curvature pairs); retry from
                # steepest descent instead of giving up.
                state.history.clear()
                continue
            state.history.push(step.x - x, step.g - g)
            loss_change = abs(f - step.f)
            x, f, g = step.x, step.f, step.g
            iterations += 1
            state.iterations += 1
            converged = self._gradient_small(g) or loss_change < self.tolerance_change

        # Leave the variables at the best point, not at the last trial of a line search.
        flat.write(x)
        state.loss = f
        return {
            "loss": f,
            "iterations": iterations,
            "function_evals": objective.evals,
            "converged": bool(converged),
        }

    # -- helpers ---------------------------------------------------------------------

    def _state_for(self, key: tuple) -> _State:
        if self._state is None or self._state.key != key:
            self._state = _State(key=key, history=_History(self.history_size))
        return self._state

    def _gradient_small(self, g: np.ndarray) -> bool:
        return float(np.max(np.abs(g))) <= self.tolerance_grad

    def _line_search(
        self, objective: _Objective, history: _History, x: np.ndarray, f: float, g: np.ndarray
    ) -> _Point | None:
        """One line search along the L-BFGS direction; None if the loss did not decrease."""
        d = history.direction(g)
        gtd = float(g @ d)
        if not gtd < 0:
            # Not a descent direction (only through round-off): fall back to -g.
            history.clear()
            d = -g
            gtd = float(g @ d)
        if len(history) == 0:
            # Without curvature information -g has the gradient's scale, which can be far
            # too long; cap the first step at unit L1 length.
            t = self.learning_rate * min(1.0, 1.0 / float(np.sum(np.abs(g))))
        else:
            t = self.learning_rate

        phi = objective.along(x, d)
        start = _Point(0.0, x, f, g, gtd)
        if self.line_search == "strong_wolfe":
            d_max = float(np.max(np.abs(d)))
            step = _strong_wolfe(phi, start, t, self.tolerance_change, d_max)
        else:
            step = _armijo(phi, start, t)
        if step is start or not step.f < f:
            return None
        return step
