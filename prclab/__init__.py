"""prclab: physical reservoir computing lab toolkit.

The repository's folders are installed as subpackages of ``prclab`` (so the import names cannot
collide with unrelated distributions called ``reservoir``, ``drivers`` or ``protocols``):
``prclab.reservoir`` (substrates), ``prclab.hardware_sims`` (emulators), ``prclab.drivers`` (devices),
``prclab.protocols`` (protocol files, encoders, safety, runner, recordings), ``prclab.readouts``
(features, ridge readouts), ``prclab.experiments`` (tasks, characterisation, reports) and
``prclab.cli`` (the ``prclab`` command line).  This module holds only the version; the error type is
:class:`prclab.errors.PrclabError`.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
