"""What the result objects of :mod:`theory` share: the array backend, ``summary()`` and ``repr``.

:class:`~theory.distillation.DistillationPath`, :class:`~theory.distillation_study.DistillationStudy`
and :class:`~theory.mobahi.MobahiPath` each hold arrays of one backend and print
themselves the same way: an aligned ``key: value`` block and a one-line repr, both
ending with that backend. :class:`ResultText` writes those ends once; each class
gives only its own rows and fields.
"""

from __future__ import annotations

from typing import Any

from kernels.backend import backend_name, namespace
from kernels.summary import aligned_block

__all__ = ["ResultText"]


class ResultText:
    """Mixin of a frozen result dataclass (declared with ``repr=False``): backend, summary, repr.

    A subclass holds its arrays in one backend, ``fits`` among them, and defines
    ``_summary_rows`` (the ``{label: text}`` rows of :meth:`summary`) and
    ``_repr_fields`` (the ``name=value, ...`` text inside the repr's parentheses); the
    ``backend`` row and field are appended here.
    """

    fits: Any

    @property
    def backend(self) -> str:
        """Array library of the results: ``"numpy"``, ``"torch"`` or ``"cupy"``."""
        return backend_name(namespace(self.fits))

    def _summary_rows(self) -> dict[str, str]:
        raise NotImplementedError

    def _repr_fields(self) -> str:
        raise NotImplementedError

    def summary(self) -> str:
        """Aligned ``key: value`` block of the result's parameters and sizes, ending with its backend."""
        return aligned_block({**self._summary_rows(), "backend": self.backend})

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._repr_fields()}, backend={self.backend!r})"
