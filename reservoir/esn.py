"""Batched leaky-integrator echo-state core.

State update for a batch of ``B`` trials with ``N`` units, per step ``t``::

    x[t] = (1 - a) * x[t-1] + a * tanh(W x[t-1] + W_in u[t] + b + noise[t])

``a`` is the leak rate (a scalar, or one value per unit for substrates whose units relax at different
rates), ``W`` the recurrent weights ``(N, N)``, ``W_in`` the input weights ``(N, n_inputs)``, ``b`` a bias
``(N,)`` and ``noise`` white Gaussian state noise.  Each step costs one product of ``W`` with the
states of the whole batch (dense BLAS or sparse CSR, see below), so a batch of 64 trials costs little
more than one.  The output is the state itself: ``n_outputs == N``.

Speed (measured by ``benchmarks/bench_esn.py``; figures from numpy 2.4 / scipy 1.17 on 2 cores):

- A run allocates one ``(steps, B, N)`` output array and small per-step blocks.  The bias is the weight
  of an extra input held at 1, so ``W_in u + b`` is one product.
- A sparse ``W`` (at most ``SPARSE_MAX_DENSITY`` non-zeros) on a batch of at least ``MIN_SPARSE_ROWS``
  rows per thread is kept as CSR and stepped in unit-major layout, ``x`` as ``(N, rows)``: scipy's
  CSR x dense product then runs over contiguous rows of ``x`` and, at 10 % connectivity, takes 0.7 ms
  where the dense BLAS product takes 1.3 ms (``N = 500``, 256 rows, one core).  Each step forms its
  input drive unit-major in the pre-activation buffer (one small product) and writes its state through
  a transposed view, so the output layout is the same on both paths.  Forming the drive of all steps
  first, as the dense path does, and reading it transposed each step was 7-20 % slower overall; the
  other order, ``x @ W.T`` with ``x`` as ``(rows, N)``, makes scipy copy ``x`` and ran at ~2.5 GFLOP/s,
  slower than dense.  A dense ``W`` or a small batch uses the dense BLAS product, the drive of all
  steps written first into the output buffer, which the integration then overwrites.
- ``tanh`` is numpy's own (SIMD for float32 since numpy 2; an ``exp``-based rewrite no longer wins).
- Batch rows are independent, so a batch is split into row blocks run by one Python thread each
  (``threads``, default one per CPU core), and BLAS is held to one thread for the whole run.  numpy and
  scipy's sparse product release the GIL, so the threads also parallelise the element-wise work that a
  multi-threaded BLAS leaves serial.  A multi-threaded BLAS on these small per-step products also stalls
  badly (measured: 20 ms instead of 0.3 ms per product) whenever another process holds one of the cores,
  and its idle workers keep spinning after a call, taking a core from the integration threads.
- ``run(u, lengths)`` steps each row of a padded batch only for its own length.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from scipy import sparse
from scipy.sparse.linalg import eigs
from threadpoolctl import ThreadpoolController

from .base import Substrate, check_input
from .streams import RowSeeds, RowStreams

#: fewest batch rows worth a thread of their own (a smaller block loses more to GEMM efficiency)
MIN_ROWS_PER_THREAD = 16
#: largest fraction of non-zero recurrent weights stepped as a sparse (CSR) product
SPARSE_MAX_DENSITY = 0.2
#: fewest batch rows per thread for the sparse path (below it the dense product's lower call cost wins)
MIN_SPARSE_ROWS = 16
_blas_controller: ThreadpoolController | None = None


def single_threaded_blas():
    """Context manager that holds BLAS to one thread (process-wide) while it is active."""
    global _blas_controller
    if _blas_controller is None:
        _blas_controller = ThreadpoolController()
    return _blas_controller.limit(limits=1, user_api="blas")


def default_threads() -> int:
    """CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def max_abs_eigenvalue(w: np.ndarray) -> float:
    """Largest absolute eigenvalue of a square matrix (ARPACK for large ones)."""
    n = w.shape[0]
    if n <= 300:
        with single_threaded_blas():   # multi-threaded LAPACK on a small matrix only waits on itself
            return float(np.max(np.abs(np.linalg.eigvals(w))))
    vals = eigs(sparse.csr_matrix(w), k=1, which="LM", return_eigenvectors=False, tol=1e-6,
                maxiter=20 * n, v0=np.ones(n))
    return float(np.abs(vals[0]))


class EchoStateCore:
    """The update rule above with given weights; used directly or by physical models.

    Args:
        w: recurrent weights ``(N, N)``.
        w_in: input weights ``(N, n_inputs)``.
        bias: ``(N,)``.
        leak: leak rate ``a`` in (0, 1], scalar or ``(N,)``.
        noise: standard deviation of the state noise (0 disables it).
        dtype: ``"float32"`` (default, fastest) or ``"float64"``.
        dt: sample period in seconds.
        threads: worker threads over batch rows (``None``: one per CPU core; 1: no threads).
    """

    def __init__(self, w, w_in, bias, leak, noise: float = 0.0, dtype="float32", dt: float = 1.0,
                 threads: int | None = None):
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.float32, np.float64):
            raise ValueError(f"dtype must be float32 or float64, got {dtype}")
        self.w_t = np.ascontiguousarray(np.asarray(w).T, dtype=self.dtype)
        self.w_in_t = np.ascontiguousarray(np.asarray(w_in).T, dtype=self.dtype)
        self.bias = np.asarray(bias, dtype=self.dtype)
        # the bias as the weight of an extra input held at 1, so one product gives W_in u + b
        self._w_in_b_t = np.ascontiguousarray(np.vstack([self.w_in_t, self.bias[None]]))
        leak = np.asarray(leak, dtype=self.dtype)
        if np.any(leak <= 0) or np.any(leak > 1):
            raise ValueError("leak rate must lie in (0, 1]")
        self.leak = leak
        self.noise = float(noise)
        self.dt = float(dt)
        self.n_units = self.w_t.shape[0]
        self.n_inputs = self.w_in_t.shape[0]
        self.n_outputs = self.n_units
        if threads is not None and threads < 1:
            raise ValueError(f"threads must be positive, got {threads}")
        self.threads = threads
        density = np.count_nonzero(self.w_t) / max(1, self.w_t.size)
        self._w_csr = sparse.csr_array(self.w_t.T) if density <= SPARSE_MAX_DENSITY else None
        self._x: np.ndarray | None = None
        self._noise = RowStreams()
        self.reset(0)

    def reset(self, seed=None) -> None:
        """Return to the rest state (zeros) and re-seed the noise: an int, ``None``, a ``SeedSequence``
        or one ``SeedSequence`` per batch row (see ``reservoir.streams``)."""
        self._x = None
        self._noise.reset(RowSeeds.of(seed))

    @property
    def state(self) -> dict[str, np.ndarray]:
        """``x`` ``(batch, N)`` and the noise streams' positions ``rng`` ``(batch, 6)`` (``reservoir.streams``)."""
        x = self._x if self._x is not None else np.zeros((0, self.n_units), self.dtype)
        return {"x": x.copy(), "rng": self._noise.state(len(x))}

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        x = np.asarray(state["x"], dtype=self.dtype)
        if x.ndim != 2 or x.shape[1] != self.n_units:
            raise ValueError(f"state 'x' must be (batch, {self.n_units}), got {x.shape}")
        self._x = x.copy() if len(x) else None
        if "rng" in state:
            self._noise.load_state(state["rng"], len(x))

    def run(self, u: np.ndarray, lengths: np.ndarray | None = None) -> np.ndarray:
        """Run ``u`` ``(batch, steps, n_inputs)`` from the current state; returns ``(batch, steps, N)``.

        ``lengths`` ``(batch,)``, optional: valid steps of each row of a zero-padded batch.  A row is then
        integrated only for its own length (padding costs no compute), its outputs past that are zero
        and its state stays where its sequence ended.  Rows already sorted by decreasing length avoid a
        reordering copy of the output.  Each row draws its state noise from its own stream for all
        ``steps`` (those of its own length first), so its noise does not depend on the other rows.
        """
        u = check_input(u, self.n_inputs, self.dtype)
        batch, steps, _ = u.shape
        if self._x is None:
            self._x = np.zeros((batch, self.n_units), self.dtype)
        elif self._x.shape[0] != batch:
            raise ValueError(f"state holds a batch of {self._x.shape[0]}, input has {batch}; "
                             "call reset() before changing the batch size")
        # drawn here, in one piece and in the caller's row order, so the noise does not depend on the
        # number of threads nor on the reordering below; each row draws from its own stream
        noise = None if self.noise <= 0 else \
            self.noise * self._noise.standard_normal((steps, batch, self.n_units), axis=1, dtype=self.dtype)
        order = None
        if lengths is not None:
            lengths = np.asarray(lengths)
            if (lengths.shape != (batch,) or not np.issubdtype(lengths.dtype, np.integer)
                    or np.any(lengths < 0) or np.any(lengths > steps)):
                raise ValueError(f"lengths must be {batch} integers in [0, {steps}]")
            if np.any(np.diff(lengths) > 0):
                order = np.argsort(-lengths, kind="stable")
                u, lengths, self._x = u[order], lengths[order], self._x[order]
                noise = None if noise is None else noise[:, order]
        # time-major, so each step writes one contiguous (batch, N) block.  Dense path: each worker first
        # writes the input drive of its rows for every step into the output buffer, which its
        # integration then overwrites with the states; sparse path: see _integrate_sparse
        n_threads = max(1, min(self.threads or default_threads(), batch // MIN_ROWS_PER_THREAD))
        use_sparse = self._w_csr is not None and batch >= n_threads * MIN_SPARSE_ROWS
        u_tm = np.ones((steps, batch, self.n_inputs + 1), self.dtype)   # last input: 1, for the bias
        u_tm[:, :, :-1] = u.transpose(1, 0, 2)
        out = np.empty((steps, batch, self.n_units), self.dtype)
        # active[t]: rows still running at step t (a prefix, rows being sorted by decreasing length)
        active = None if lengths is None else np.count_nonzero(lengths[None, :] > np.arange(steps)[:, None],
                                                               axis=1)

        def rows(lo: int, hi: int) -> None:
            sub = None if active is None else np.clip(active - lo, 0, hi - lo)
            block_noise = None if noise is None else noise[:, lo:hi]
            if use_sparse:
                self._integrate_sparse(u_tm[:, lo:hi], block_noise, out[:, lo:hi], self._x[lo:hi], sub)
            else:
                block = out[:, lo:hi]
                np.matmul(u_tm[:, lo:hi], self._w_in_b_t, out=block)
                if block_noise is not None:
                    block += block_noise
                self._integrate_dense(block, self._x[lo:hi], sub)

        # one-thread BLAS for the whole run: a multi-threaded one leaves its workers spinning after
        # each call, and they took a core from the integration threads (measured: the integration of a
        # freshly driven chunk ran at 51-59 % of its speed on a copy of the same data)
        with single_threaded_blas():
            self._in_row_blocks(rows, batch, active, n_threads if steps else 1)
        if lengths is None:
            if steps:
                self._x = out[-1].copy()
        else:
            for t in range(steps):
                out[t, active[t]:] = 0
            ended = np.flatnonzero(lengths)
            self._x[ended] = out[lengths[ended] - 1, ended]
            if order is not None:
                inverse = np.argsort(order)
                out, self._x = out[:, inverse], self._x[inverse]
        return out.transpose(1, 0, 2)

    @staticmethod
    def _in_row_blocks(work_on, batch: int, active: np.ndarray | None, n_threads: int) -> None:
        """Call ``work_on(lo, hi)`` for ``n_threads`` row blocks of equal work, one thread each."""
        if n_threads == 1:
            work_on(0, batch)
            return
        # rows i < active[t] run at step t, so row i runs for (active > i).sum() steps
        work = np.ones(batch) if active is None else np.count_nonzero(active[:, None] > np.arange(batch),
                                                                      axis=0)
        cum = np.concatenate([[0], np.cumsum(work)])
        edges = np.searchsorted(cum, np.linspace(0, cum[-1], n_threads + 1)[1:-1])
        edges = np.unique(np.concatenate([[0], edges, [batch]]))
        with ThreadPoolExecutor(len(edges) - 1) as pool:
            list(pool.map(work_on, edges[:-1], edges[1:]))

    def _integrate_dense(self, out: np.ndarray, x: np.ndarray, active: np.ndarray | None) -> None:
        """Overwrite the drive ``out`` ``(steps, rows, N)`` with the states reached from ``x`` ``(rows, N)``.

        ``active[t]`` (optional) rows run at step ``t``, a non-increasing prefix of the block.
        """
        a, keep, w = self.leak, 1 - self.leak, self.w_t
        scratch = np.empty(x.shape, self.dtype)
        if active is None:   # no per-step slicing: 4.4 instead of 4.9 us a step for one trial of 200 units
            for xt in out:
                np.matmul(x, w, out=scratch)
                scratch += xt
                np.tanh(scratch, out=scratch)
                scratch *= a
                np.multiply(x, keep, out=xt)
                xt += scratch
                x = xt
            return
        for t, n in enumerate(active):
            if n == 0:
                break
            pre, xp, xt = scratch[:n], x[:n], out[t, :n]
            np.matmul(xp, w, out=pre)
            pre += xt
            np.tanh(pre, out=pre)
            pre *= a
            np.multiply(xp, keep, out=xt)
            xt += pre
            x = out[t]

    def _integrate_sparse(self, u_tm: np.ndarray, noise: np.ndarray | None, out: np.ndarray, x: np.ndarray,
                          active: np.ndarray | None) -> None:
        """Write into ``out`` ``(steps, rows, N)`` the states reached from ``x`` ``(rows, N)`` under the
        inputs ``u_tm`` ``(steps, rows, n_inputs + 1)`` (last input 1) and ``noise`` (same shape as ``out``
        or None), with the CSR weights and the state held unit-major, ``(N, rows)``; ``active`` as in
        ``_integrate_dense``.  Each step forms its own drive, unit-major, in the pre-activation buffer."""
        a = self.leak.reshape(-1, 1) if self.leak.ndim else self.leak   # per unit: broadcast over rows
        keep = 1 - a
        n_units, rows = x.shape[1], x.shape[0]
        u_um = np.ascontiguousarray(u_tm.transpose(0, 2, 1))   # (steps, n_inputs + 1, rows)
        w_in_b = np.ascontiguousarray(self._w_in_b_t.T)         # (N, n_inputs + 1)
        # flat buffers, so the state of the n active rows is always a contiguous (N, n) block
        buffers = (np.empty(n_units * rows, self.dtype), np.empty(n_units * rows, self.dtype))
        pre_buffer = np.empty(n_units * rows, self.dtype)
        x_um = buffers[0].reshape(n_units, rows)
        x_um[...] = x.T
        for t in range(len(out)):
            n = rows if active is None else active[t]
            if n == 0:
                break
            pre = pre_buffer[:n_units * n].reshape(n_units, n)
            np.matmul(w_in_b, u_um[t, :, :n], out=pre)
            if noise is not None:
                pre += noise[t, :n].T
            pre += self._w_csr @ x_um[:, :n]
            np.tanh(pre, out=pre)
            pre *= a
            new = buffers[(t + 1) % 2][:n_units * n].reshape(n_units, n)
            np.multiply(x_um[:, :n], keep, out=new)
            new += pre
            out[t, :n] = new.T
            x_um = new


class EchoStateNetwork(EchoStateCore, Substrate):
    """A randomly initialised echo-state network; weights are fixed by ``seed``.

    Args:
        n_inputs: input channels.
        units: reservoir size ``N``.
        spectral_radius: scale of ``W`` (largest |eigenvalue|); below 1 for fading memory.
        input_scaling: input weights drawn uniform in ``[-input_scaling, input_scaling]``; the default 3
            puts encoder output (volts within +-0.5 V) into the nonlinear range of tanh.
        leak_rate: ``a`` in (0, 1].
        bias_scaling: bias drawn uniform in ``[-bias_scaling, bias_scaling]``.
        connectivity: fraction of non-zero recurrent weights (sparse Erdos-Renyi).
        input_connectivity: fraction of non-zero input weights.
        noise: state-noise standard deviation.
        dtype: ``"float32"`` or ``"float64"``.
        seed: seed of the weight draw.
        dt: sample period in seconds (only bookkeeping for an abstract reservoir).
        threads: worker threads over batch rows (see ``EchoStateCore``; does not change the results).
    """

    def __init__(self, n_inputs: int, units: int = 500, spectral_radius: float = 0.9,
                 input_scaling: float = 3.0, leak_rate: float = 0.3, bias_scaling: float = 0.2,
                 connectivity: float = 0.1, input_connectivity: float = 1.0, noise: float = 0.0,
                 dtype="float32", seed: int = 0, dt: float = 1.0, threads: int | None = None):
        if n_inputs < 1 or units < 1:
            raise ValueError("n_inputs and units must be positive")
        if not 0 < connectivity <= 1 or not 0 < input_connectivity <= 1:
            raise ValueError("connectivities must lie in (0, 1]")
        rng = np.random.default_rng(seed)
        w = sparse.random(units, units, density=connectivity, random_state=rng,
                          data_rvs=lambda k: rng.uniform(-1, 1, k)).toarray()
        rho = max_abs_eigenvalue(w)
        if rho > 0:
            w *= spectral_radius / rho
        w_in = rng.uniform(-input_scaling, input_scaling, (units, n_inputs))
        w_in *= rng.random((units, n_inputs)) < input_connectivity
        bias = rng.uniform(-bias_scaling, bias_scaling, units)
        super().__init__(w, w_in, bias, leak_rate, noise=noise, dtype=dtype, dt=dt, threads=threads)
