"""Surrogate derivatives and escape-noise functions.

Two families of small, immutable objects live here:

* **Escape-noise functions** ``f`` (:class:`EscapeNoise`): the probability that a stochastic
  neuron fires, ``p = f((U - threshold) / T)`` at noise temperature ``T``. Each is a CDF in the
  standardised variable ``x = (U - threshold) / T`` and knows its density ``f'``.
* **Surrogate derivatives** (:class:`Surrogate`): the function that replaces the derivative of the
  spike's step function in the backward pass. Each takes ``x = U - threshold`` and has a
  steepness ``beta``.

Gygax & Zenke (2025) show that in a stochastic network the surrogate derivative justified by
stochastic automatic differentiation is the derivative of the escape-noise function:
:class:`Matched` builds exactly that surrogate, ``d/dU f((U - threshold) * beta)``, which is the
exact derivative of the forward spike probability when ``beta = 1 / T``.

All objects are frozen dataclasses: picklable, comparable, hashable and printable, so that two
estimators with different settings can train side by side and ``GridSearchCV`` can clone them.
User-defined surrogates subclass :class:`Surrogate` and implement :meth:`Surrogate.derivative`;
:func:`register_surrogate` makes them available by name.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from numbers import Real
from typing import ClassVar

import torch
from torch import Tensor

__all__ = [
    "ESCAPE_NOISE",
    "SURROGATES",
    "Atan",
    "Boxcar",
    "ErfNoise",
    "EscapeNoise",
    "Exponential",
    "ExponentialNoise",
    "Gaussian",
    "Matched",
    "Sigmoid",
    "SigmoidNoise",
    "SuperSpike",
    "Surrogate",
    "Triangle",
    "get_escape_noise",
    "get_surrogate",
    "register_surrogate",
]

_SQRT2 = math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


# --------------------------------------------------------------------------------------------
# Escape noise
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class EscapeNoise:
    """Base class of escape-noise functions ``f``: a CDF in ``x = (U - threshold) / T``.

    Subclasses implement :meth:`cdf` and :meth:`pdf` (its derivative) on torch tensors.
    """

    name: ClassVar[str] = "escape_noise"

    def cdf(self, x: Tensor) -> Tensor:
        """Spike probability ``f(x)``."""
        raise NotImplementedError

    def pdf(self, x: Tensor) -> Tensor:
        """Derivative ``f'(x)``."""
        raise NotImplementedError

    def is_logistic(self) -> bool:
        """Whether ``f`` is the logistic sigmoid, which fast kernels compute in fused form."""
        return False

    def compiled_form(self) -> str | None:
        """The name of ``f`` in the compiled engine's kernels, or None (the default) when the
        engine must use :meth:`cdf` on its torch path."""
        return None

    def _unchanged(self, cls: type) -> bool:
        # a subclass that redefines the function is not the built-in one any more
        return type(self).cdf is cls.cdf and type(self).pdf is cls.pdf


@dataclass(frozen=True)
class SigmoidNoise(EscapeNoise):
    """Logistic escape noise, ``f(x) = 1 / (1 + exp(-x))``, ``f'(x) = f(x) (1 - f(x))``.

    The escape noise of Gygax & Zenke (2025); its matched surrogate is the derivative of a
    sigmoid, the "sigmoid" surrogate of the literature.
    """

    name: ClassVar[str] = "sigmoid"

    def cdf(self, x: Tensor) -> Tensor:
        return torch.sigmoid(x)

    def pdf(self, x: Tensor) -> Tensor:
        s = torch.sigmoid(x)
        return s * (1.0 - s)

    def is_logistic(self) -> bool:
        return self._unchanged(SigmoidNoise)

    def compiled_form(self) -> str | None:
        return "sigmoid" if self._unchanged(SigmoidNoise) else None


@dataclass(frozen=True)
class ErfNoise(EscapeNoise):
    """Gaussian threshold noise, ``f(x) = (1 + erf(x / sqrt(2))) / 2``.

    ``f'(x) = exp(-x^2 / 2) / sqrt(2 pi)``: the firing probability of a neuron whose threshold
    (or membrane potential) is perturbed by Gaussian noise of standard deviation ``T``.
    """

    name: ClassVar[str] = "erf"

    def cdf(self, x: Tensor) -> Tensor:
        return 0.5 * (1.0 + torch.erf(x / _SQRT2))

    def pdf(self, x: Tensor) -> Tensor:
        return _INV_SQRT_2PI * torch.exp(-0.5 * x * x)

    def compiled_form(self) -> str | None:
        return "erf" if self._unchanged(ErfNoise) else None


@dataclass(frozen=True)
class ExponentialNoise(EscapeNoise):
    """Exponential escape rate, ``f(x) = 1 - exp(-exp(x))``, ``f'(x) = exp(x - exp(x))``.

    The probability of at least one event in one time step of a Poisson process with hazard
    ``rho0 exp((U - threshold) / T)`` and ``rho0 dt = 1`` (Gerstner et al., *Neuronal Dynamics*,
    2014, ch. 9). Its matched surrogate is asymmetric; it is *not* the Laplace-shaped
    :class:`Exponential` surrogate.
    """

    name: ClassVar[str] = "exponential"

    def cdf(self, x: Tensor) -> Tensor:
        return -torch.expm1(-torch.exp(x))

    def pdf(self, x: Tensor) -> Tensor:
        # exp(x - exp(x)) stays finite: for large x the exponent goes to -inf, not inf - inf.
        return torch.exp(x - torch.exp(x))

    def compiled_form(self) -> str | None:
        return "exponential" if self._unchanged(ExponentialNoise) else None


ESCAPE_NOISE: dict[str, type[EscapeNoise]] = {
    cls.name: cls for cls in (SigmoidNoise, ErfNoise, ExponentialNoise)
}


def get_escape_noise(spec: str | EscapeNoise) -> EscapeNoise:
    """Return the escape-noise object for a name in :data:`ESCAPE_NOISE` or an instance."""
    if isinstance(spec, EscapeNoise):
        return spec
    try:
        return ESCAPE_NOISE[spec]()
    except (KeyError, TypeError):
        raise ValueError(
            f"Unknown escape noise {spec!r}; expected one of {sorted(ESCAPE_NOISE)} "
            "or an EscapeNoise instance."
        ) from None


# --------------------------------------------------------------------------------------------
# Surrogates
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Surrogate:
    """Base class of surrogate derivatives ``sigma'(x)`` with ``x = U - threshold``.

    Parameters
    ----------
    beta : float, default=10.0
        Steepness. Larger values give a narrower, taller surrogate.

    Notes
    -----
    Subclass and implement :meth:`derivative` to define a new surrogate; implement
    :meth:`primitive` too when it has a closed-form antiderivative (used by plots and tests).
    Keep subclasses frozen dataclasses so that they stay picklable and comparable.

    Examples
    --------
    >>> import torch
    >>> from dataclasses import dataclass
    >>> from sksnn.surrogates import Surrogate
    >>> @dataclass(frozen=True)
    ... class Rectangle(Surrogate):
    ...     def derivative(self, x):
    ...         return (x.abs() < 0.5 / self.beta).to(x.dtype) * self.beta
    >>> Rectangle(beta=2.0).derivative(torch.tensor([0.0, 1.0]))
    tensor([2., 0.])
    """

    beta: float = 10.0
    name: ClassVar[str] = "surrogate"

    def __post_init__(self) -> None:
        beta = self.beta
        if isinstance(beta, bool) or not isinstance(beta, Real):
            raise ValueError(f"Surrogate steepness beta must be a real number, got {beta!r}.")
        if not (math.isfinite(beta) and beta > 0):
            raise ValueError(f"Surrogate steepness beta must be finite and > 0, got {beta!r}.")
        # a plain float (numpy scalars included), so that equal surrogates compare and save alike
        object.__setattr__(self, "beta", float(beta))

    def derivative(self, x: Tensor) -> Tensor:
        """Surrogate derivative at ``x = U - threshold``."""
        raise NotImplementedError

    def primitive(self, x: Tensor) -> Tensor:
        """An antiderivative of :meth:`derivative` (the CDF it is the density of, if any)."""
        raise NotImplementedError(f"{type(self).__name__} has no closed-form primitive.")

    def logistic_steepness(self) -> float | None:
        """``beta`` when the derivative is ``beta s (1 - s)`` with ``s = sigmoid(beta x)``.

        Fast kernels then keep ``s`` from the forward pass and form the derivative from it in
        one fused operation; None (the default) means they evaluate :meth:`derivative`.
        """
        return None

    def compiled_form(self) -> tuple[str, float] | None:
        """``(shape, beta)``: the derivative as the compiled engine's kernels evaluate it, or
        None (the default: the engine calls :meth:`derivative` on its torch path). A built-in
        surrogate names its shape only while a subclass has not redefined the derivative."""
        return None

    def _compiled_as(self, cls: type, shape: str) -> tuple[str, float] | None:
        return (shape, self.beta) if type(self).derivative is cls.derivative else None

    def __call__(self, x: Tensor) -> Tensor:
        return self.derivative(x)


@dataclass(frozen=True)
class SuperSpike(Surrogate):
    """Fast-sigmoid surrogate ``1 / (beta |x| + 1)^2`` (peak 1).

    Zenke & Ganguli, "SuperSpike: Supervised learning in multilayer spiking neural networks",
    Neural Computation 30(6), 2018. Integrates to ``2 / beta``, not 1.
    """

    name: ClassVar[str] = "superspike"

    def derivative(self, x: Tensor) -> Tensor:
        return 1.0 / (self.beta * x.abs() + 1.0) ** 2

    def primitive(self, x: Tensor) -> Tensor:
        return x / (self.beta * x.abs() + 1.0)

    def compiled_form(self) -> tuple[str, float] | None:
        return self._compiled_as(SuperSpike, "superspike")


@dataclass(frozen=True)
class Sigmoid(Surrogate):
    """Derivative of a logistic sigmoid, ``beta s(beta x) (1 - s(beta x))``.

    Used e.g. by Zenke & Vogels (2021); the matched surrogate of sigmoid escape noise at
    temperature ``1 / beta``.
    """

    name: ClassVar[str] = "sigmoid"

    def derivative(self, x: Tensor) -> Tensor:
        s = torch.sigmoid(self.beta * x)
        return self.beta * s * (1.0 - s)

    def logistic_steepness(self) -> float | None:
        # only while the derivative is this one: a subclass may redefine it
        return self.beta if type(self).derivative is Sigmoid.derivative else None

    def primitive(self, x: Tensor) -> Tensor:
        return torch.sigmoid(self.beta * x)

    def compiled_form(self) -> tuple[str, float] | None:
        return self._compiled_as(Sigmoid, "logistic")


@dataclass(frozen=True)
class Atan(Surrogate):
    """Arctangent surrogate ``(beta / 2) / (1 + (pi beta x / 2)^2)``.

    Fang et al., "Incorporating learnable membrane time constant to enhance learning of spiking
    neural networks", ICCV 2021 (SpikingJelly's default). Primitive
    ``1/2 + atan(pi beta x / 2) / pi``.
    """

    name: ClassVar[str] = "atan"

    def derivative(self, x: Tensor) -> Tensor:
        return (0.5 * self.beta) / (1.0 + (0.5 * math.pi * self.beta * x) ** 2)

    def primitive(self, x: Tensor) -> Tensor:
        return 0.5 + torch.atan(0.5 * math.pi * self.beta * x) / math.pi

    def compiled_form(self) -> tuple[str, float] | None:
        return self._compiled_as(Atan, "atan")


@dataclass(frozen=True)
class Triangle(Surrogate):
    """Triangular surrogate ``beta max(0, 1 - beta |x|)``.

    Bellec et al., "Long short-term memory and learning-to-learn in networks of spiking
    neurons", NeurIPS 2018 ("pseudo-derivative"), here normalised to integrate to 1.
    """

    name: ClassVar[str] = "triangle"

    def derivative(self, x: Tensor) -> Tensor:
        return self.beta * torch.clamp(1.0 - self.beta * x.abs(), min=0.0)

    def primitive(self, x: Tensor) -> Tensor:
        z = torch.clamp(self.beta * x, -1.0, 1.0)
        return torch.where(z < 0, 0.5 * (1.0 + z) ** 2, 1.0 - 0.5 * (1.0 - z) ** 2)

    def compiled_form(self) -> tuple[str, float] | None:
        return self._compiled_as(Triangle, "triangle")


@dataclass(frozen=True)
class Gaussian(Surrogate):
    """Gaussian surrogate ``beta / sqrt(2 pi) exp(-(beta x)^2 / 2)``.

    Yin, Corradi & Bohte, "Accurate and efficient time-domain classification with adaptive
    spiking recurrent neural networks", Nature Machine Intelligence 2021; the matched surrogate
    of Gaussian (erf) escape noise at temperature ``1 / beta``.
    """

    name: ClassVar[str] = "gaussian"

    def derivative(self, x: Tensor) -> Tensor:
        z = self.beta * x
        return self.beta * _INV_SQRT_2PI * torch.exp(-0.5 * z * z)

    def primitive(self, x: Tensor) -> Tensor:
        return 0.5 * (1.0 + torch.erf(self.beta * x / _SQRT2))

    def compiled_form(self) -> tuple[str, float] | None:
        return self._compiled_as(Gaussian, "gaussian")


@dataclass(frozen=True)
class Exponential(Surrogate):
    """Laplace-shaped single-exponential surrogate ``(beta / 2) exp(-beta |x|)``.

    Shrestha & Orchard, "SLAYER: Spike layer error reassignment in time", NeurIPS 2018. Not
    the matched surrogate of :class:`ExponentialNoise` (see :class:`Matched` for that).
    """

    name: ClassVar[str] = "exponential"

    def derivative(self, x: Tensor) -> Tensor:
        return 0.5 * self.beta * torch.exp(-self.beta * x.abs())

    def primitive(self, x: Tensor) -> Tensor:
        e = 0.5 * torch.exp(-self.beta * x.abs())
        return torch.where(x < 0, e, 1.0 - e)

    def compiled_form(self) -> tuple[str, float] | None:
        return self._compiled_as(Exponential, "laplace")


@dataclass(frozen=True)
class Boxcar(Surrogate):
    """Rectangular surrogate ``(beta / 2) [|x| < 1 / beta]``.

    The straight-through-like window of Wu et al., "Spatio-temporal backpropagation for
    training high-performance spiking neural networks", Frontiers in Neuroscience 2018.
    """

    name: ClassVar[str] = "boxcar"

    def derivative(self, x: Tensor) -> Tensor:
        return (x.abs() < 1.0 / self.beta).to(x.dtype) * (0.5 * self.beta)

    def primitive(self, x: Tensor) -> Tensor:
        return torch.clamp(0.5 * (self.beta * x + 1.0), 0.0, 1.0)

    def compiled_form(self) -> tuple[str, float] | None:
        return self._compiled_as(Boxcar, "boxcar")


@dataclass(frozen=True)
class Matched(Surrogate):
    """The surrogate matched to an escape-noise function: ``d/dU f((U - threshold) beta)``.

    ``beta * f'(beta x)``. With ``beta = 1 / T`` it is the exact derivative of the forward spike
    probability ``f((U - threshold) / T)`` (Gygax & Zenke, "Elucidating the theoretical
    underpinnings of surrogate gradient learning in spiking neural networks", Neural
    Computation 37(5), 2025); another ``beta`` keeps the shape at a mismatched temperature.

    Parameters
    ----------
    beta : float, default=10.0
        Steepness, the inverse of the temperature the surrogate is matched to.
    escape_noise : EscapeNoise, default=SigmoidNoise()
        The escape-noise function whose derivative this surrogate is.
    """

    escape_noise: EscapeNoise = field(default_factory=SigmoidNoise)
    name: ClassVar[str] = "matched"

    def derivative(self, x: Tensor) -> Tensor:
        return self.beta * self.escape_noise.pdf(self.beta * x)

    def logistic_steepness(self) -> float | None:
        unchanged = type(self).derivative is Matched.derivative
        return self.beta if unchanged and self.escape_noise.is_logistic() else None

    def primitive(self, x: Tensor) -> Tensor:
        return self.escape_noise.cdf(self.beta * x)

    def compiled_form(self) -> tuple[str, float] | None:
        shapes = {"sigmoid": "logistic", "erf": "gaussian", "exponential": "gumbel"}
        noise = self.escape_noise.compiled_form()
        if noise is None or type(self).derivative is not Matched.derivative:
            return None
        return shapes[noise], self.beta


SURROGATES: dict[str, type[Surrogate]] = {
    cls.name: cls
    for cls in (Matched, SuperSpike, Sigmoid, Atan, Triangle, Gaussian, Exponential, Boxcar)
}


def register_surrogate(cls: type[Surrogate]) -> type[Surrogate]:
    """Class decorator adding a :class:`Surrogate` subclass to :data:`SURROGATES` by its ``name``.

    Registered names can be passed as ``surrogate=`` to the estimators.
    """
    if not (isinstance(cls, type) and issubclass(cls, Surrogate)):
        raise TypeError(f"register_surrogate expects a Surrogate subclass, got {cls!r}.")
    name = cls.__dict__.get("name")
    if not isinstance(name, str) or not name:
        raise ValueError(f"{cls.__name__} needs a class attribute `name` (a non-empty string).")
    if name in SURROGATES and SURROGATES[name] is not cls:
        raise ValueError(f"A surrogate named {name!r} is already registered.")
    SURROGATES[name] = cls
    return cls


def get_surrogate(
    spec: str | Surrogate,
    beta: float | None = None,
    escape_noise: str | EscapeNoise = "sigmoid",
) -> Surrogate:
    """Build a surrogate from a registered name or return a given instance.

    Parameters
    ----------
    spec : str or Surrogate
        ``"matched"``, another name in :data:`SURROGATES`, or an instance.
    beta : float, optional
        Steepness. For an instance, replaces its own ``beta`` when given.
    escape_noise : str or EscapeNoise, default="sigmoid"
        The escape noise a ``"matched"`` surrogate is the derivative of.
    """
    if isinstance(spec, Surrogate):
        return spec if beta is None else replace(spec, beta=float(beta))
    if spec not in SURROGATES:
        raise ValueError(
            f"Unknown surrogate {spec!r}; expected one of {sorted(SURROGATES)} "
            "or a Surrogate instance."
        )
    kwargs = {} if beta is None else {"beta": float(beta)}
    if SURROGATES[spec] is Matched:
        kwargs["escape_noise"] = get_escape_noise(escape_noise)
    return SURROGATES[spec](**kwargs)
