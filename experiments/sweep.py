"""Hyperparameter sweeps: Optuna chooses, Dask distributed runs, the training split alone is scored.

``run_sweep`` is what ``prclab sweep SPACE.toml`` and ``prclab task --tune N`` run.

**Objective** (``cv_score``): the pipeline of ``prclab task`` (``experiments.tasks.run_task``: encoder
fitted on the training items, substrate, feature spec chosen on the training trials, ridge readout)
run once per fold of a ``folds``-fold cross-validation on the *training split only*: stratified folds
(``StratifiedKFold``, shuffled by the space's seed), or, for the speaker split, folds grouped by speaker
(``GroupKFold``: no speaker in a fold's training and validation items at once).  The score is the mean
validation accuracy over the folds.  The workers are given the training items alone (``train_only``):
no test item, no test label ever reaches a trial.  The test split is scored once, for the chosen
configuration (the best trial), after the search (``final_test``), with the baselines and MiniRocket
beside it, and the result says so.

**Engine**: Optuna's ask-and-tell interface in this process (the driver): a trial is drawn (on an
in-memory copy of the study, written through to its store: ``sweep_study.TrialLedger``), its
configuration is submitted to the executor, its result is told back, keeping as many trials in flight as there are workers.  The executor is a Dask
distributed client's (``Client.get_executor()``): a ``LocalCluster`` on this machine by default
(``n_workers`` processes, one thread each), or a running scheduler (``scheduler="tcp://host:8786"``;
for a SLURM cluster start one with dask-jobqueue, ``SLURMCluster(...).scale(jobs=N)``, and pass its
``scheduler_address``).  The training data is scattered to the workers once.  ``workers=0`` runs the
trials one at a time in this process through the same objective code: what a sweep on a physical
device must do (one device takes one trial at a time).  Every registered substrate is simulated, so
``prclab sweep`` runs them in parallel; a device-backed objective is not implemented yet.

**Store**: the study lives in an Optuna storage (a SQLite file by default, any database URL accepted),
so a killed sweep resumes: finished trials are kept and counted towards ``trials`` (a rerun runs only
the rest), and a trial that was in flight when its driver died (state RUNNING, its driver's process
gone) is marked failed and its parameters queued again (``enqueue_trial``), so it runs once more from the
start and no finished trial runs twice.  A study remembers the digest of its space and refuses to
resume under another one.  With parallel workers TPE uses the constant liar (``constant_liar=True``)
so trials in flight are not drawn twice.
"""

from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import os
import time
from functools import lru_cache

import numpy as np

from prclab.errors import PrclabError
from prclab.protocols.datasets import LabelledSequences, load_dataset

from .sweep_space import SweepSpace
from .sweep_study import TrialLedger, grid_size, open_store, open_study, recover_stale
from .tasks import run_task, train_test_index

#: encoder keys that change an audio item's MFCC frames
MFCC_KEYS = ("n_mfcc", "window_s", "hop_s", "n_filters")
#: seconds to wait for a scheduler given by address before giving up
CONNECT_TIMEOUT_S = 5.0
#: what the result says of the test split
TEST_NOTE = ("the test split was scored once, for the chosen configuration, after the search; "
             "every trial saw the training split alone (cross-validated)")


# ------------------------------------------------------------------------------------------ objective

def fold_ids(data: LabelledSequences, folds: int, seed: int, grouped: bool) -> np.ndarray:
    """Fold of each item of ``data`` (the training split): ``(n,)`` ints in ``0..folds-1``.

    Stratified by label (shuffled by ``seed``), or grouped by ``data.groups`` (the speaker) with
    ``folds`` at most the number of groups.  Raises ``PrclabError`` when a class has fewer items than
    folds or (grouped) there are fewer than two groups.
    """
    from sklearn.model_selection import GroupKFold, StratifiedKFold

    out = np.zeros(len(data), dtype=int)
    if grouped:
        n_groups = len(np.unique(data.groups))
        if n_groups < 2:
            raise PrclabError(f"sweep: grouped folds need two or more speakers in the training split, found {n_groups}")
        splitter = GroupKFold(n_splits=min(folds, n_groups))
        pieces = splitter.split(np.zeros(len(data)), data.labels, data.groups)
    else:
        counts = np.unique(data.labels, return_counts=True)[1]
        if counts.min() < folds:
            raise PrclabError(f"sweep: {folds} stratified folds need {folds} training items of every class, "
                              f"the smallest class has {counts.min()}; lower [sweep] folds")
        pieces = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed).split(
            np.zeros(len(data)), data.labels)
    for k, (_, held) in enumerate(pieces):
        out[held] = k
    return out


def train_only(data: LabelledSequences, space: SweepSpace) -> tuple[LabelledSequences, np.ndarray, np.ndarray]:
    """``(training items, their folds, the test indices into data)`` of the space's split and seed.

    The training items are a new ``LabelledSequences`` holding nothing of the test split: that is all a
    trial is given (audio as its MFCC frames when the space leaves the MFCCs alone, ``mfcc_frames``).
    """
    train, test = train_test_index(data, space.seed, split=space.split)
    train_data = data.subset(train)
    folds = fold_ids(train_data, space.folds, space.seed, space.split == "speaker")
    return mfcc_frames(train_data, space), folds, test


def mfcc_frames(data: LabelledSequences, space: SweepSpace) -> LabelledSequences:
    """Audio items replaced by their MFCC frames ``(frames, n_mfcc)``, computed once, when no fixed or
    searched encoder key of the space changes them (``MFCC_KEYS``, ``kind``); else ``data`` itself.

    The encoder then made for the frames (``SequenceEncoder``) standardises, squashes and holds them
    exactly as ``MFCCEncoder`` does its own (one base class; only ``features`` differs), so every
    trial's score is unchanged, and each fold of each trial no longer recomputes every item's MFCCs.
    """
    from prclab.protocols.encoders import MFCCEncoder

    keys = set(space.fixed["encoder"]) | {p.name for p in space.params if p.group == "encoder"}
    if data.kind != "audio" or keys & {*MFCC_KEYS, "kind"}:
        return data
    encoder = MFCCEncoder(rate_hz=data.rate_hz)
    return dataclasses.replace(data, sequences=[encoder.features(s) for s in data.sequences],
                               kind="sequence", rate_hz=None)


def cv_score(train_data: LabelledSequences, folds: np.ndarray, space: SweepSpace, values: dict) -> dict:
    """One trial: the mean validation accuracy over the folds of ``train_data`` (training items only).

    Each fold runs ``run_task`` on the training items with that fold as its held-out part (encoder,
    feature spec and ridge parameter fitted on the other folds), the substrate's weights from the
    space's seed.  Returns ``{"score", "fold_scores", "features" (each fold's spec), "seconds"}``.
    """
    start = time.perf_counter()
    config = space.config(values)
    scores, specs = [], []
    for k in np.unique(folds):
        fold = dataclasses.replace(train_data, split=np.where(folds == k, "test", "train"))
        result = run_task(fold, space.substrate, seed=space.seed, features=config["features"],
                          substrate_params=config["substrate"], encoder_params=config["encoder"],
                          baselines=False)
        scores.append(result["accuracy"])
        specs.append(result["features"])
    return {"score": float(np.mean(scores)), "fold_scores": [float(s) for s in scores], "features": specs,
            "seconds": time.perf_counter() - start}


def _trial(train_data, folds, space, values, objective=None) -> dict:
    """What an executor runs: ``cv_score`` (or ``objective``), a user error returned as ``{"error":
    message}`` (the trial fails, the sweep goes on)."""
    try:
        return (objective or cv_score)(train_data, folds, space, values)
    except PrclabError as exc:
        return {"error": " ".join(str(exc).split())}


# ----------------------------------------------------------------------------------------- executors

class InlineExecutor(cf.Executor):
    """Runs each submitted call at once, in this process (one trial at a time: the device mode)."""

    def submit(self, fn, /, *args, **kwargs):
        future = cf.Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:  # handed to the caller through the future, as any executor does
            future.set_exception(exc)
        return future


class Engine:
    """Where trials run: ``workers=0`` in this process, else a Dask client (a ``LocalCluster`` of
    ``workers`` processes with one thread each, default one per core; or the running scheduler at
    ``scheduler``).  A context manager; ``capacity`` is how many trials to keep in flight: one more
    than the workers' threads, so a finished worker finds the next trial queued."""

    def __init__(self, scheduler: str | None = None, workers: int | None = None):
        if workers is not None and workers < 0:
            raise PrclabError(f"sweep: --workers must be 0 (in this process) or more, got {workers}")
        if scheduler is not None and workers is not None:
            raise PrclabError("sweep: give --scheduler (a running cluster) or --workers (a local one), not both")
        self.scheduler, self.workers = scheduler, workers
        self.client = self.cluster = None

    def __enter__(self) -> "Engine":
        if self.workers == 0:
            self.executor, self.capacity, self.n_workers = InlineExecutor(), 1, 1
            return self
        from distributed import Client, LocalCluster

        if self.scheduler is not None:
            self.client = _connect(Client, self.scheduler)
        else:
            n = self.workers or _cores()
            self.cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                                        dashboard_address=None, silence_logs=50)
            self.client = Client(self.cluster)
        self.n_workers = max(1, sum(self.client.nthreads().values()))
        self.capacity = self.n_workers + 1  # one queued: no worker waits while the driver tells and asks
        self.executor = self.client.get_executor(pure=False)
        return self

    def scatter(self, value):
        """``value`` on every worker once (a Dask future), or itself in this process."""
        return value if self.client is None else self.client.scatter(value, broadcast=True)

    def describe(self) -> dict:
        if self.client is None:
            return {"executor": "in this process, one trial at a time", "workers": 1}
        where = self.scheduler or "LocalCluster (processes, 1 thread each)"
        return {"executor": f"dask distributed: {where}", "workers": self.n_workers,
                "scheduler": self.client.scheduler.address}

    def __exit__(self, *exc):
        if self.client is not None:
            self.client.close()
        if self.cluster is not None:
            self.cluster.close()


def _connect(client_cls, address: str):
    """A client of the scheduler at ``address``, or ``PrclabError`` (one line) within about
    ``CONNECT_TIMEOUT_S`` when nothing there completes Dask's handshake: refused, unroutable, or a
    peer that accepts the connection and never answers (``_probe``)."""
    if not isinstance(address, str) or "://" not in address:
        raise PrclabError(f"sweep: --scheduler {address!r}: expected an address such as tcp://127.0.0.1:8786")
    try:
        _probe(address, CONNECT_TIMEOUT_S)
        return client_cls(address, timeout=CONNECT_TIMEOUT_S)
    except (OSError, TimeoutError, ValueError) as exc:
        raise PrclabError(f"sweep: scheduler {address} unreachable within {CONNECT_TIMEOUT_S:g} s "
                          f"({type(exc).__name__})") from None
    except Exception as exc:  # a peer that speaks another protocol: its bytes read as Dask frames
        raise PrclabError(f"sweep: {address} answers, but not as a Dask scheduler ({type(exc).__name__}; "
                          f"the dashboard's port, 8787 by default, is not the scheduler's, 8786)") from None


def _probe(address: str, timeout_s: float) -> None:
    """Open and close one Dask comm to ``address``, handshake included, within ``timeout_s`` seconds;
    raises ``TimeoutError`` or ``OSError`` otherwise.

    ``distributed.comm.connect`` bounds the TCP connection by its timeout but then waits for the peer's
    handshake without one, so ``Client(address, timeout=...)`` against a port that accepts and stays
    silent (another service, a hung scheduler) never returns; a peer that answers in another protocol
    (an HTTP server such as the dashboard) has its reply read as a frame length (``MemoryError``).  The probe runs on its own event loop in
    a thread of its own (a caller may already be running a loop), under ``asyncio.wait_for``."""
    import asyncio

    from distributed.comm import connect

    async def handshake():
        comm = await asyncio.wait_for(connect(address, timeout=timeout_s), timeout_s)
        await comm.close()

    with cf.ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(asyncio.run, handshake()).result()


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


# ------------------------------------------------------------------------------------------- sweep

@lru_cache(maxsize=4)
def _dataset(path: str, mtime_ns: int) -> LabelledSequences:
    return load_dataset(path)


def load_data(path: str) -> LabelledSequences:
    """The dataset at ``path`` (loaded once per file version in this process)."""
    try:
        stamp = os.stat(path).st_mtime_ns
    except OSError:
        raise PrclabError(f"dataset not found: {path}") from None
    return _dataset(path, stamp)


def run_sweep(space: SweepSpace, trials: int, scheduler: str | None = None, workers: int | None = None,
              sampler: str = "tpe", storage: str | None = None, data: LabelledSequences | None = None,
              final: bool = True, progress=None, objective=None) -> dict:
    """Run the study of ``space`` up to ``trials`` finished trials, then score the test split once.

    Args:
        space: the validated space (``sweep_space.load_space`` / ``default_space``).
        trials: finished trials the study should hold (a resumed study runs only the rest).
        scheduler, workers: see ``Engine``; ``workers=0``: one trial at a time in this process.
        sampler: ``tpe`` (default), ``random`` or ``grid`` (``trials`` is then at most the grid's size).
        storage: an Optuna storage URL instead of the space's (None and no space storage: in memory).
        data: the dataset, if already loaded (else read from ``space.data``).
        final: score the chosen configuration on the test split (``final_test``).
        progress: optional callable ``progress(n_finished, n_wanted, best_score)``.
        objective: what a trial runs instead of ``cv_score`` (``objective(train_data, folds, space,
            values) -> {"score", "fold_scores", "features", "seconds"}``; a benchmark's no-op measures
            the engine's own cost per trial).
    Returns:
        JSON-able dict: ``study``, ``storage``, ``sampler``, ``engine`` (with ``start_s``, seconds to
        start it), ``n_complete``, ``n_failed``,
        ``ran`` (trials finished by this call), ``resumed`` (finished before it), ``requeued`` (stale
        trials run again), ``best`` (``trial``, ``params``, ``cv_score``, ``fold_scores``, ``features``),
        ``test`` (``final_test``'s, with ``note``), ``errors`` (first failure messages), ``seconds``.
    """
    import optuna

    start = time.perf_counter()
    if isinstance(trials, bool) or not isinstance(trials, int) or trials < 1:
        raise PrclabError(f"sweep: --trials must be 1 or more, got {trials!r}")
    if sampler == "grid" and trials > grid_size(space):
        raise PrclabError(f"sweep: --trials {trials} exceeds the grid's {grid_size(space)} configurations")
    data = data if data is not None else load_data(space.data)
    train_data, folds, _ = train_only(data, space)
    url = storage or space.storage
    store = open_store(url)
    study = open_study(space, sampler, parallel=workers != 0, storage=url, store=store)
    stale = recover_stale(study, space)
    complete = optuna.trial.TrialState.COMPLETE
    resumed = len(study.get_trials(deepcopy=False, states=(complete,)))
    ledger = TrialLedger(study, store, space)
    requeued = ledger.requeue(stale)
    errors: list[str] = []
    ran = 0
    engine_start = time.perf_counter()
    with Engine(scheduler, workers) as engine:
        shared = engine.scatter(train_data)
        started = time.perf_counter() - engine_start
        in_flight: dict = {}
        n_done = resumed
        while n_done + len(in_flight) < trials or in_flight:
            while n_done + len(in_flight) < trials and len(in_flight) < engine.capacity:
                trial, values = ledger.ask()
                in_flight[engine.executor.submit(_trial, shared, folds, space, values, objective)] = trial
            finished, _ = cf.wait(list(in_flight), return_when=cf.FIRST_COMPLETED)
            for future in finished:
                trial = in_flight.pop(future)
                outcome = _outcome(future)
                if "error" in outcome:
                    errors.append(f"trial {trial.number}: {outcome['error']}")
                    ledger.fail(trial, outcome["error"])
                    continue
                ledger.tell(trial, outcome)
                n_done += 1
                ran += 1
                if progress is not None:
                    progress(n_done, trials, ledger.copy.best_value)
            if errors and ran == 0 and resumed == 0 and len(errors) >= max(3, engine.capacity):
                raise PrclabError(f"sweep: every trial failed so far; first: {errors[0]}")
        engine_info = {**engine.describe(), "start_s": round(started, 3)}
    study = optuna.load_study(study_name=space.study, storage=store)  # what the store holds now
    states = [t.state for t in study.get_trials(deepcopy=False)]
    result = {"study": space.study, "storage": url or "in memory", "sampler": sampler,
              "engine": engine_info, "space": space.describe(),
              "n_complete": states.count(complete), "n_failed": states.count(optuna.trial.TrialState.FAIL),
              "ran": ran, "resumed": resumed, "requeued": requeued, "errors": errors[:5]}
    if result["n_complete"] == 0:
        raise PrclabError(f"sweep: no trial finished; first error: {errors[0] if errors else 'none'}")
    best = study.best_trial
    result["best"] = {"trial": best.number, "params": dict(best.params), "cv_score": float(best.value),
                      "fold_scores": best.user_attrs["cv"]["fold_scores"], "features": best.user_attrs["cv"]["features"]}
    if final:
        result["test"] = final_test(data, space, best.params)
    result["seconds"] = round(time.perf_counter() - start, 3)
    return result


def _outcome(future) -> dict:
    try:
        return future.result()
    except Exception as exc:  # a worker lost or a bug in a trial: that trial fails, the sweep goes on
        return {"error": f"{type(exc).__name__}: {' '.join(str(exc).split())[:200]}"}


def final_test(data: LabelledSequences, space: SweepSpace, values: dict) -> dict:
    """The chosen configuration fitted on the whole training split and scored once on the test split,
    with the no-reservoir baselines and MiniRocket beside it (``run_task``'s fields) and ``note``."""
    config = space.config(values)
    result = run_task(data, space.substrate, seed=space.seed, features=config["features"],
                      substrate_params=config["substrate"], encoder_params=config["encoder"], split=space.split)
    return {"note": TEST_NOTE, **result}


def run_tuned_task(data: LabelledSequences, data_path: str, substrate: str, trials: int, size: int | None = None,
                   seed: int = 0, features: str | None = None, split: str = "official",
                   encoder_params: dict | None = None, substrate_params: dict | None = None,
                   workers: int | None = None, scheduler: str | None = None) -> dict:
    """``prclab task --tune N``: an ``N``-trial sweep (in memory) over ``sweep_space.default_space``
    on the training split, then the tuned configuration's test score.

    Returns ``final_test``'s result (``accuracy`` the tuned configuration's, its baselines and
    MiniRocket on the tuned encoding) plus ``default_accuracy`` (the task's defaults, same split and
    seed), ``tuned_params``, ``cv_score`` and ``cv_fold_scores`` (the chosen trial's), ``tune`` (trials,
    engine, the searched space) and ``test_note``.
    """
    from .sweep_space import default_space

    space = default_space(data_path, substrate, seed, split, size=size, substrate_params=substrate_params,
                          encoder_params=encoder_params, features=features)
    sweep = run_sweep(space, trials, scheduler=scheduler, workers=workers, storage=None, data=data)
    tuned = sweep["test"]
    default = run_task(data, substrate, size=size, seed=seed, features=features, split=split,
                       encoder_params=encoder_params, substrate_params=substrate_params, baselines=False)
    note = tuned.pop("note")
    return {**tuned, "default_accuracy": default["accuracy"], "default_features": default["features"],
            "tuned_params": sweep["best"]["params"], "cv_score": sweep["best"]["cv_score"],
            "cv_fold_scores": sweep["best"]["fold_scores"], "test_note": note,
            "tune": {"trials": sweep["n_complete"], "failed": sweep["n_failed"], "engine": sweep["engine"],
                     "space": sweep["space"]["params"], "folds": space.folds, "seconds": sweep["seconds"]}}
