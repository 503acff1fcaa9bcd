"""Fault injection for tests: a kill in the middle of a stage, as a scheduler's time limit or the OOM killer does.

Loaded only when a test puts this folder on ``PYTHONPATH``. With ``RPC_KILL_AFTER="module:function:N"`` every
Python process of the run (Snakemake's jobs, pool workers) replaces ``module.function`` by a wrapper that lets
``N`` calls through and SIGKILLs its own process at the next one, before the call.
"""

import os

_SPEC = os.environ.get("RPC_KILL_AFTER")
if _SPEC:
    import importlib
    import signal

    _module, _name, _n = _SPEC.split(":")
    _target = importlib.import_module(_module)
    _original = getattr(_target, _name)
    _calls = [0]

    def _killing(*args, **kwargs):
        if _calls[0] >= int(_n):
            os.kill(os.getpid(), signal.SIGKILL)
        _calls[0] += 1
        return _original(*args, **kwargs)

    setattr(_target, _name, _killing)
