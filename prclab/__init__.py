"""prclab: physical reservoir computing lab toolkit.

The importable packages are ``reservoir`` (substrates), ``drivers`` (devices), ``hardware_sims``
(emulators), ``protocols`` (protocol files, encoders, runner, recordings) and ``readouts``
(features, ridge readouts, tasks).  This package holds what they all share: the version and the
one exception type for errors a user can cause, and the ``prclab`` command line (``prclab.cli``).
"""

__version__ = "0.1.0"


class PrclabError(Exception):
    """An error the user can cause and fix (bad protocol, dataset, recording, port...).

    The message says what went wrong and where; the CLI prints it on one line and exits with code 2.
    """


__all__ = ["PrclabError", "__version__"]
