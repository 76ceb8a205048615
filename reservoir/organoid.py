"""A brain organoid on a multi-electrode array: a spiking network with depressing synapses.

Physical picture: a cortical organoid (human stem-cell derived neurons, ~80 % excitatory and ~20 %
inhibitory) lies on a planar MEA.  Voltage pulses on stimulating electrodes excite the neurons next to
them; recording electrodes pick up the spikes of the neurons within a few tens of micrometres.  Such
cultures fire spontaneously and synchronise into network bursts every second or few (Trujillo et al. 2019,
Cell Stem Cell 25:558; Wagenaar, Pine & Potter 2006, BMC Neurosci. 7:11), and an organoid on an MEA
has served as a reservoir for speech recognition (Cai et al. 2023, Nat. Electron. 6:1032).

Neurons (Izhikevich 2003, IEEE Trans. Neural Netw. 14:1569; ``v`` in mV, ``t`` in ms)::

    dv/dt = 0.04 v^2 + 5 v + 140 - u + I          if v >= 30 mV:  v <- c,  u <- u + d
    du/dt = a (b v - u)
    I     = I_syn + I_NMDA - I_AHP + I_stim + I_noise

Excitatory cells are regular-spiking to chattering (``a=0.02, b=0.2, c=-65+15 r^2, d=8-6 r^2``),
inhibitory ones fast-spiking to low-threshold (``a=0.02+0.08 r, b=0.25-0.05 r, c=-65, d=2``), ``r``
uniform in [0, 1] per cell, as in Izhikevich's network.  ``v`` is stepped in two half steps per sample
and clipped at the 30 mV spike peak.

Synapses: neuron ``j`` at distance ``d`` connects to ``i`` with probability
``connect_prob * exp(-d / connect_length_um)`` (about 300 inputs per cell at the defaults).  Unitary
PSPs at rest are lognormal (log-SD ``psp_log_sd``, Song et al. 2005, PLoS Biol. 3:e68) with means
``epsp_mV`` / ``ipsp_mV``; the peak weight is PSP / U.  Every synapse of ``j`` depresses (Tsodyks &
Markram 1997, PNAS 94:719): a spike releases the fraction ``U`` of the available resources ``x_j``, which
recover with ``tau_rec``::

    dx_j/dt = (1 - x_j) / tau_rec - U x_j delta(t - t_spike_j),     I_syn,i = sum_j W_ij U x_j s_j(t)

The fast (AMPA / GABA_A) part of a synapse is the jump above; an excitatory synapse also opens NMDA
channels, a slow current through the voltage-dependent Mg2+ block (Jahr & Stevens 1990, J. Neurosci.
10:3178), rising with ``nmda_rise_ms`` and decaying with ``nmda_tau_ms`` (Hestrin, Sah & Nicoll 1990,
Neuron 5:247, approx.: rise a few ms, decay ~50-150 ms)::

    I_NMDA,i = g_i B(v_i) (0 - v_i) / 65 mV,    B(v) = 1 / (1 + [Mg2+] / 3.57 mM exp(-0.062 v / mV))
    g_i: each excitatory jump W_ij U x_j adds nmda_ratio W_ij U x_j / tau_nmda (through the rise)

so ``nmda_ratio`` is the NMDA charge relative to the fast jump's, unblocked at -65 mV (20 at the
defaults, above the ~6-15 that an NMDA:AMPA peak ratio of ~0.3-0.5 times a ~20-30x slower decay gives,
approx., recalled; the Izhikevich cell's ~2 ms membrane near rest turns a slow charge into less
depolarisation than a 20 ms membrane would).  At rest (-65 to -70 mV) B is 0.04-0.06, so the NMDA charge
there is about the fast one's, spread over 100 ms: little; once a burst depolarises the cells the block
lifts and the NMDA current sustains the burst (without the block, ``mg_mM=0``, the network fires at 10.4
Hz per recorded neuron in near-periodic bursts of ~0.5 s that recruit 96 % of the electrodes: measured as
below).  Excitatory cells carry a slow afterhyperpolarisation (sAHP, Ca2+-activated K+; Sah 1996, Trends
Neurosci. 19:150, approx.: seconds): each spike adds ``ahp_mV_per_ms`` of outward current decaying with
``ahp_tau_s``.  Depression and the AHP built up in a burst end it, and the AHP's decay sets the silence
before the next (Tsodyks, Uziel & Markram 2000, J. Neurosci. 20:RC50; adaptation ending culture bursts:
Masquelier & Deco 2013, Gigante et al. 2015, approx.).  ``recurrent=False`` is the synapse-ablation
control: the same cells, positions and noise, no synapses.  Background drive: the simulated cells stand
for a subsample of 10^5-10^6; the input from the unsimulated ones is a mean current
``background_mV_per_ms`` plus white noise ``noise_exc_mV`` / ``noise_inh_mV`` per sqrt(ms) (Izhikevich's
thalamic input), redrawn on every trial: spontaneous spikes, irregular bursts of varying size and
trial-to-trial variability.

Geometry: neurons uniform over the array's footprint (``mea_rows x mea_cols`` electrodes at
``pitch_um``; default 8 x 8 at 200 um as on common 60-electrode MEAs).  Stimulating electrodes are spread
over the grid, recording electrodes are the others in order.

Stimulation through the electrode's capacitance: an electrode of capacitance ``electrode_nF`` passes
``I = C dV/dt``, so a voltage change ``dV`` within a sample delivers the charge ``C dV`` (nC), which
depolarises a neuron at distance ``d`` by ``stim_mV_per_nC * C dV * exp(-d / stim_length_um)`` mV within
that sample.  A held (DC) voltage delivers nothing after its onset; a one-sample pulse is a
charge-balanced biphasic current (its rising edge, then its falling edge), the MEA practice (Wagenaar,
Pine & Potter 2004, J. Neurosci. Methods 138:27: 0.1-0.9 V biphasic pulses activate cells within
~100-200 um).  The evoked response has a direct part (cells near the electrode, < 3 ms) and a
polysynaptic one (the network, tens to hundreds of ms, far electrodes).

Outputs, per recording electrode and sample: ``output="spikes"``: the count of spikes of neurons
within ``detect_radius_um`` (sorted multi-unit activity, no artefact); ``output="lfp"``: the recorded
voltage in volts: ``-lfp_uV_per_spike`` per spike weighted by ``exp(-d / detect_radius_um)``, low-passed
with ``lfp_tau_s``, plus the stimulation artefact (``artefact_V_per_V`` of each stimulating electrode's
voltage change, falling off with ``artefact_length_um``, decaying with the amplifier's recovery
``artefact_tau_s``), plus white noise ``noise_V``; samples within ``blank_s`` after any stimulus are
blanked to 0 (MEA systems blank 1-4 ms; Brainoware masks -0.8..+2 ms), carried across calls.

Plasticity (``stdp=True``, off by default): pair-based STDP on the excitatory synapses with
multiplicative synaptic scaling toward a target rate (``reservoir.plasticity``, its own table there).
Each batch row learns its own weights, ``(batch, N, N)`` float32 in the state (4 MB a row at 1000
neurons); ``reset`` returns them to the network's.

Measured at the defaults (``OrganoidModel()``: 1000 neurons, 4 + 32 electrodes; 4 trials of 30 s after a
1 s washout, ``reset(1)``; bursts by ``experiments.bursts.detect_bursts`` on the 32 electrodes; this
module's author, 2026-12-02): 1.46 Hz per recorded neuron; network bursts 0.20-0.30 /s (mean 0.24),
inter-burst-interval CV 0.47 (pooled; per trial 0.64, 0.45, 0.04, 0.48: one trial of 30 s was nearly
periodic), recruiting 85 +- 29 % of the electrodes (28-100 %), 160 +- 79 ms long (8-250 ms, median
190: a few short events of the fast synapses alone beside the NMDA-sustained bursts), holding 62 % of
the spikes.  Without the NMDA current and the AHP (``nmda_ratio=0, ahp_mV_per_ms=0``, the model
before them, same protocol): 0.99 Hz, 0.24 /s, CV 0.89, 47 +- 25 %, 16 +- 12 ms long, 12 % of the
spikes.  The burst threshold (``k = 5``) still separates them from chance: each electrode's train
circularly shifted by its own random lag (5 surrogates a trial) gives 0 bursts in all 20 surrogates,
against 6-9 in the trials.  Evoked by 0.45 V pulses on one electrode every 500 ms for 30 s (``n_outputs=63``,
``reset(2)``), against the spontaneous rate: 0-5 ms after the pulse the electrodes within 300 um count
5.4x their spontaneous rate and those beyond 800 um 0.4x (direct); 20-50 ms after it, 5.3x near and
6.0x far (polysynaptic); 50-150 ms 1.2x; 150-300 ms 0.4-0.5x (the depressed, adapted network).  The
polysynaptic response is all-or-none: far spike counts 20-50 ms after a pulse have a CV of 3.5 over
pulses.

==========================  =====================  ===========================  ============================
quantity                    model value            literature value             source
==========================  =====================  ===========================  ============================
unitary EPSP (mean)         1.5 mV, lognormal      1.3 +- 1.1 mV (L5 pairs);    Markram et al. 1997,
                                                   0.77 mV, lognormal           J. Physiol. 500:409; Song
                                                                                et al. 2005 (approx.)
synaptic depression U, tau  0.5, 0.8 s             0.5, 0.8 s                   Tsodyks & Markram 1997
                                                                                (approx.)
inputs per cell             ~300                   10^2-10^4 (subsampled)       cortex; cultures fewer
spontaneous rate            1.46 Hz                ~0.1-5 Hz per unit           Wagenaar et al. 2006, BMC
                                                                                Neurosci. 7:11 (approx.)
network burst rate          0.24 /s                1/300-1 /s (inter-burst      Wagenaar 2006 (abstract,
                                                   intervals 1-300 s)           re-read)
inter-burst-interval CV     0.47 (pooled)          irregular, clustered         Wagenaar 2006 (approx.)
burst duration              160 +- 79 ms           ~0.1-1 s                     Wagenaar 2006 (approx.)
burst recruitment           85 +- 29 % of          partial, variable            Wagenaar 2006 (approx.)
                            electrodes (28-100 %)
NMDA current                Mg2+ block (1 mM),     Mg2+ block as given;         Jahr & Stevens 1990;
                            rise 5 ms, decay       rise ~few ms, decay          Hestrin et al. 1990
                            100 ms                 ~50-150 ms                   (approx.)
NMDA / fast charge          20 (unblocked)         ~6-15 (peak ratio x decay    recalled (approx.): the
                                                   ratio)                       model's is high
slow AHP                    0.3 mV/ms a spike,     sAHP decays over seconds     Sah 1996 (approx.)
                            3 s
stimulation                 biphasic, 0.45-0.5 V,  0.1-0.9 V biphasic, direct   Wagenaar, Pine & Potter
                            ~100-200 um reach      reach ~100-200 um            2004 (approx.)
evoked response             direct 0-5 ms near,    early < 20 ms, late          Wagenaar et al. 2004
                            polysynaptic 20-50 ms  polysynaptic to ~100-200 ms  (approx.)
blanking                    3 ms                   1-4 ms; -0.8..+2 ms          SALPA (Wagenaar & Potter
                                                                                2002); Brainoware protocol
STDP, synaptic scaling      off (``stdp``)         see reservoir.plasticity     Bi & Poo 1998; Song et al.
                                                                                2000; Turrigiano 1998
==========================  =====================  ===========================  ============================

The network computes (synapse-ablation control; BasicMotions, ``experiments.tasks.run_task`` with
``encoder_params={"waveform": "binary", "samples_per_frame": 50}``, features chosen per side by
leave-one-out on the training split, seeds 0-5, ``prclab task --data basicmotions.npz --substrate organoid
--seeds 6`` with and without ``--param recurrent=false``; this module's author, 2026-12-02, with the NMDA
current and the AHP): intact 0.721 +- 0.033 (0.75, 0.60, 0.725, 0.65, 0.80, 0.80), ``recurrent=False``
0.650 +- 0.019 (mean +- SE; paired difference 0.071 +- 0.045: intact higher for 4 seeds, equal for one,
lower for one); linear and quadratic baselines 0.725, which the intact network no longer beats (before
the NMDA current and the AHP: intact 0.729 +- 0.012, ablated 0.625 +- 0.024, higher for every seed).
The step was re-checked on the new network by the same rule (intact training leave-one-out error, lowest
over the feature candidates, mean of seeds 0-2): 25 ms 0.397, 50 ms 0.391, 100 ms 0.400, so 50 ms
stays.  50 ms steps (at most 20 Hz a electrode, inside DishBrain's 4-40 Hz) let the polysynaptic response
to one step's pulses (20-50 ms) fall into the next steps, where depression and the AHP make it depend on
the earlier pulses: fading memory the direct response lacks. It was first chosen on the network before
the NMDA current and the AHP (mean of seeds 0-2: 10 ms 0.43, 25 ms 0.44, 50 ms 0.34, 100 ms 0.35; rate
coding 4-40 Hz in 100 ms frames 0.58); then, at 10 ms steps (pulses up to 100 Hz a electrode, the network
held depressed) the ablated network scores higher (0.608 vs 0.650), and at 100 ms the difference is
within noise (0.700 +- 0.043 vs 0.667 +- 0.008).  With every free electrode recorded (``--param
n_outputs=58``: BasicMotions's 6 inputs take 6 of the 64; 2026-12-04, the same command) the intact
network beats both baselines: 0.796 +- 0.015 (0.750, 0.825, 0.825, 0.825, 0.800, 0.750) against 0.725, and
``recurrent=False`` scores 0.758 +- 0.034 (paired +0.038 +- 0.045, within noise); 58 electrodes average
more of the network's own noise (its spontaneous bursts) away than 32 do.

"(approx.)": ranges recalled from the sources, not re-read for this model; check before quoting.  The
burst-rate row was checked against the abstract of Wagenaar et al. 2006 ("inter-burst intervals between
1 and 300 s"); the others were not found in the searchable text this session.

Speed: the state is float32; the only Python loop is over time samples, about thirty element-wise
operations a sample (ten of them the NMDA current's block and gates and the AHP) on ``(batch, N)``; the
synaptic input is gathered from the weight rows of the few neurons that spiked (spikes are rare), the
stimulus added only on the samples where an electrode's voltage changes, the noise drawn 256 samples at a
time, BLAS held to one thread.  The state (``v``, ``u``, ``x``, the pending synaptic jump, the NMDA gates,
the AHP, the field filter, the noise streams and, with ``stdp``, the plastic weights and traces) saves as
plain arrays.  ``python benchmarks/bench_substrates.py`` with the machine at load 7 on 2 cores (5
engineers at work; re-measure idle): 15.4x real time for one trial, 24.1x for a batch of 64 (16 + 16
electrodes, 1 kHz), before the NMDA current and the AHP; with them, the same benchmark's inputs timed in
one script at load 3 on 2 cores (best of 2): 19.9x for one trial and 23.2x for a batch of 64, against
19.5x and 27.0x with ``nmda_ratio=0, ahp_mV_per_ms=0`` in the same script; the benchmark itself at load
1.9: 20.4x and 35.5x (29.7x and 39.9x without them, at load 1.4); cProfile of a batch of 64 (before
them): noise drawing ~half the time, the membrane loop ~40 %.  The network is a subsample: a real organoid
has 10^5-10^6 cells.
"""

from __future__ import annotations

import numpy as np

from .base import Substrate, check_input
from .electrodes import first_order
from .esn import single_threaded_blas
from .plasticity import STDPRule, STDPState
from .streams import RowSeeds, RowStreams, split_off

SPIKE_PEAK_MV = 30.0
NEVER = float(2 ** 53)    # samples since the last stimulus before any stimulus
NOISE_CHUNK_STEPS = 256   # noise is drawn this many samples at a time (memory: chunk x batch x N)
NMDA_REF_MV = 65.0        # the NMDA charge is given at this driving force (rest, v = -65 mV, E = 0)
MG_HALF_MM = 3.57         # Mg2+ block 1 / (1 + [Mg] / 3.57 mM exp(-0.062 v)) (Jahr & Stevens 1990)
MG_SLOPE_PER_MV = 0.062


class OrganoidModel(Substrate):
    """Simulated organoid on an MEA with ``n_inputs`` stimulating and ``n_outputs`` recording electrodes.

    Args:
        n_inputs: stimulating electrodes (input volts).
        n_outputs: recording electrodes; ``n_inputs + n_outputs <= mea_rows * mea_cols``.
        dt: sample period in seconds, 0.1 ms to 1 ms.
        neurons: network size ``N``.
        exc_fraction: fraction of excitatory neurons.
        mea_rows, mea_cols, pitch_um: electrode grid.
        connect_prob, connect_length_um: distance-dependent connection probability.
        epsp_mV, ipsp_mV, psp_log_sd: mean unitary EPSP / IPSP at rest (mV) and their lognormal log-SD.
        std_U, std_tau_rec_s: Tsodyks-Markram release fraction and recovery time (seconds).
        background_mV_per_ms: mean input from the unsimulated cells (mV/ms).
        noise_exc_mV, noise_inh_mV: white input noise (mV per sqrt(ms)).
        recurrent: False removes every synapse (the ablation control).
        electrode_nF: stimulating electrode capacitance (nF): a voltage change dV delivers C dV.
        stim_mV_per_nC, stim_length_um: depolarisation per nC at the electrode and its reach (um).
        detect_radius_um: recording radius of an electrode.
        output: ``"spikes"`` (counts per sample) or ``"lfp"`` (volts).
        lfp_uV_per_spike, lfp_tau_s, noise_V: local-field gain, low-pass time constant, white noise.
        artefact_V_per_V, artefact_length_um, artefact_tau_s: stimulation artefact on the recorded voltage
            per volt of stimulus change, its fall-off with distance and its decay (seconds).
        blank_s: recorded voltage blanked to 0 for this long after each stimulus (seconds; 0: none).
        stdp: plastic excitatory synapses (``reservoir.plasticity``: pair-based STDP with synaptic
            scaling), off by default; the plastic weights are part of the state and restart from the
            network's at ``reset``.
        stdp_a_plus, stdp_a_minus: potentiation / depression per spike pair, fractions of the bound.
        stdp_tau_plus_ms, stdp_tau_minus_ms: the STDP windows (ms).
        stdp_w_max_mV: bound of a plastic synapse's unitary PSP at rest (mV; its weight is this / U).
        stdp_target_hz, stdp_tau_rate_s, stdp_tau_scaling_s: synaptic scaling's target rate (Hz), rate
            averaging time and (accelerated) scaling time constant (seconds).
        nmda_ratio: charge of an excitatory synapse's NMDA current, unblocked and at -65 mV, relative to
            its fast (AMPA) jump's; 0: no NMDA current.
        nmda_tau_ms, nmda_rise_ms: decay and rise of the NMDA current (ms).
        mg_mM: extracellular Mg2+ (mM) of the NMDA block ``1 / (1 + [Mg] / 3.57 exp(-0.062 v))``.
        ahp_mV_per_ms, ahp_tau_s: slow afterhyperpolarisation of the excitatory cells: each spike adds
            this outward current (mV/ms), which decays with ``ahp_tau_s`` (seconds); 0: none.
        seed: seed of the network (positions, cell types, connections) and of the first noise stream.
    """

    def __init__(self, n_inputs: int = 4, n_outputs: int = 32, dt: float = 1e-3, neurons: int = 1000,
                 exc_fraction: float = 0.8, mea_rows: int = 8, mea_cols: int = 8, pitch_um: float = 200.0,
                 connect_prob: float = 1.0, connect_length_um: float = 400.0, epsp_mV: float = 1.5,
                 ipsp_mV: float = 1.5, psp_log_sd: float = 0.9, std_U: float = 0.5, std_tau_rec_s: float = 0.8,
                 background_mV_per_ms: float = 0.0, noise_exc_mV: float = 3.0, noise_inh_mV: float = 2.0,
                 recurrent: bool = True, electrode_nF: float = 3.0, stim_mV_per_nC: float = 100.0,
                 stim_length_um: float = 100.0, detect_radius_um: float = 80.0, output: str = "spikes",
                 lfp_uV_per_spike: float = 20.0, lfp_tau_s: float = 0.01, noise_V: float = 5e-6,
                 artefact_V_per_V: float = 0.01, artefact_length_um: float = 200.0,
                 artefact_tau_s: float = 5e-4, blank_s: float = 3e-3, stdp: bool = False,
                 stdp_a_plus: float = 0.005, stdp_a_minus: float = 0.00525, stdp_tau_plus_ms: float = 20.0,
                 stdp_tau_minus_ms: float = 20.0, stdp_w_max_mV: float = 10.0, stdp_target_hz: float = 1.0,
                 stdp_tau_rate_s: float = 2.0, stdp_tau_scaling_s: float = 20.0, nmda_ratio: float = 20.0,
                 nmda_tau_ms: float = 100.0, nmda_rise_ms: float = 5.0, mg_mM: float = 1.0,
                 ahp_mV_per_ms: float = 0.3, ahp_tau_s: float = 3.0, seed: int = 0):
        if min(n_inputs, n_outputs, neurons, mea_rows, mea_cols) < 1:
            raise ValueError("n_inputs, n_outputs, neurons and the MEA size must be positive")
        if n_inputs + n_outputs > mea_rows * mea_cols:
            raise ValueError(f"{n_inputs} + {n_outputs} electrodes do not fit a {mea_rows} x {mea_cols} MEA")
        if not 1e-4 <= dt <= 1e-3:
            raise ValueError(f"dt must lie in [0.1 ms, 1 ms] for the spiking model, got {dt} s")
        if not 0 < exc_fraction <= 1 or not 0 < std_U <= 1:
            raise ValueError("exc_fraction and std_U must lie in (0, 1]")
        if output not in ("spikes", "lfp"):
            raise ValueError(f"output must be 'spikes' or 'lfp', got {output!r}")
        if min(pitch_um, connect_length_um, std_tau_rec_s, stim_length_um, detect_radius_um,
               lfp_tau_s, artefact_length_um, artefact_tau_s, nmda_tau_ms, nmda_rise_ms, ahp_tau_s) <= 0:
            raise ValueError("lengths and time constants must be positive")
        if min(connect_prob, epsp_mV, ipsp_mV, psp_log_sd, noise_exc_mV, noise_inh_mV, noise_V, electrode_nF,
               artefact_V_per_V, blank_s, nmda_ratio, mg_mM, ahp_mV_per_ms) < 0:
            raise ValueError("probabilities, weights, capacitances, noise levels and blanking must be "
                             "non-negative")
        self.output, self.noise_V, self.std_U = output, noise_V, std_U
        self.n_inputs, self.n_outputs, self.dt = n_inputs, n_outputs, float(dt)
        self.dt_ms = 1e3 * self.dt
        rng = np.random.default_rng(seed)
        n_exc = int(round(exc_fraction * neurons))
        self.is_exc = np.arange(neurons) < n_exc
        r = rng.random(neurons)
        self.a = np.where(self.is_exc, 0.02, 0.02 + 0.08 * r)
        self.b = np.where(self.is_exc, 0.2, 0.25 - 0.05 * r)
        self.c = np.where(self.is_exc, -65 + 15 * r ** 2, -65.0)
        self.d = np.where(self.is_exc, 8 - 6 * r ** 2, 2.0)
        # electrodes on the grid; stimulating ones spread over it, recording ones the rest in order
        gy, gx = np.divmod(np.arange(mea_rows * mea_cols), mea_cols)
        grid_um = np.stack([gx, gy], axis=1) * pitch_um
        stim_idx = np.round(np.linspace(0, mea_rows * mea_cols - 1, n_inputs + 2)[1:-1]).astype(int)
        if n_inputs == 1:
            stim_idx = np.array([(mea_rows // 2) * mea_cols + mea_cols // 2])
        rec_idx = np.setdiff1d(np.arange(mea_rows * mea_cols), stim_idx)[:n_outputs]
        self.stim_positions_um, self.rec_positions_um = grid_um[stim_idx], grid_um[rec_idx]
        # neurons uniform over the footprint (half a pitch beyond the outer electrodes)
        lo, hi = -pitch_um / 2, np.array([mea_cols - 0.5, mea_rows - 0.5]) * pitch_um
        self.positions_um = rng.uniform(lo, hi, (neurons, 2))
        dist = np.linalg.norm(self.positions_um[:, None] - self.positions_um[None], axis=2)
        connected = rng.random((neurons, neurons)) < connect_prob * np.exp(-dist / connect_length_um)
        np.fill_diagonal(connected, False)
        # unitary PSPs at rest (first spike, full resources) lognormal with mean epsp_mV / ipsp_mV;
        # the synapse's peak weight is PSP / U (a spike releases the fraction U)
        psp = rng.lognormal(-0.5 * psp_log_sd ** 2, psp_log_sd, (neurons, neurons))
        w = psp * np.where(self.is_exc, epsp_mV, -ipsp_mV)[None, :] / std_U
        # the ablation control keeps every draw (same cells, same noise) and removes the synapses
        self.w_t = np.ascontiguousarray((w * connected).T) * float(recurrent)   # (pre, post), mV/spike
        self.stdp: STDPState | None = None
        if stdp:
            rule = STDPRule(stdp_a_plus, stdp_a_minus, stdp_tau_plus_ms, stdp_tau_minus_ms,
                            stdp_w_max_mV / std_U, stdp_target_hz, stdp_tau_rate_s, stdp_tau_scaling_s)
            plastic = connected.T & self.is_exc[:, None] & bool(recurrent)         # (pre, post)
            self.stdp = STDPState(rule, plastic, n_exc, self.dt_ms)
        d_stim = np.linalg.norm(self.stim_positions_um[:, None] - self.positions_um[None], axis=2)
        # charge C dV through the electrode per volt of change -> mV of depolarisation (n_inputs, N)
        self.stim_gain = electrode_nF * stim_mV_per_nC * np.exp(-d_stim / stim_length_um)
        d_art = np.linalg.norm(self.stim_positions_um[:, None] - self.rec_positions_um[None], axis=2)
        self.artefact_gain = artefact_V_per_V * np.exp(-d_art / artefact_length_um)   # (n_inputs, n_out)
        self._artefact_r = float(np.exp(-self.dt / artefact_tau_s))
        self._blank_steps = int(np.ceil(blank_s / self.dt - 1e-9))
        self.background = background_mV_per_ms
        d_rec = np.linalg.norm(self.positions_um[:, None] - self.rec_positions_um[None], axis=2)
        if output == "spikes":
            self.readout = (d_rec <= detect_radius_um).astype(np.float64)    # (N, n_outputs)
        else:
            self.readout = -lfp_uV_per_spike * 1e-6 * np.exp(-d_rec / detect_radius_um)
        # The membrane is stepped in two half steps of dt/2 ms; an input current I (mV/ms) held over the
        # sample moves v by I dt/2 per half step.  A spike's jump w (mV) arrives as the current w / dt over
        # one sample, i.e. w / 2 per half step; white noise of sigma mV per sqrt(ms) as sigma / sqrt(dt).
        self._half = np.float32(0.5 * self.dt_ms)
        self._w_half = (0.5 * self.w_t).astype(np.float32)
        self._stim_half = (0.5 * self.stim_gain).astype(np.float32)
        noise_sd = np.where(self.is_exc, noise_exc_mV, noise_inh_mV) / np.sqrt(self.dt_ms)   # mV/ms
        self._noise_half = (self._half * noise_sd).astype(np.float32)
        self._readout32 = self.readout.astype(np.float32)
        self._recover = self.dt / std_tau_rec_s
        self._lfp_r = float(np.exp(-self.dt / lfp_tau_s))
        # NMDA: an excitatory jump w adds nmda_ratio w / tau_nmda (mV/ms at -65 mV, unblocked) to the gate
        # s through its rise (the pending part moves into s with nmda_rise_ms), and s decays with tau_nmda;
        # both stored as s / 65 mV per half step (the driving force -v and the Mg2+ block are applied per
        # sample).  AHP: each spike adds ahp_mV_per_ms, decaying, in the excitatory cells only (fast-spiking
        # interneurons barely adapt); stored per half step.
        self.n_exc = n_exc
        self.nmda_ratio, self.ahp_mV_per_ms = nmda_ratio, ahp_mV_per_ms
        self._nmda_gain = np.float32(2.0 * nmda_ratio / nmda_tau_ms / NMDA_REF_MV)
        self._nmda_keep = np.float32(np.exp(-self.dt_ms / nmda_tau_ms))
        self._nmda_opening = np.float32(1.0 - np.exp(-self.dt_ms / nmda_rise_ms))
        self._mg_k = np.float32(mg_mM / MG_HALF_MM)
        self._ahp_half = (self._half * ahp_mV_per_ms * self.is_exc).astype(np.float32)   # excitatory cells
        self._ahp_keep = np.float32(np.exp(-self.dt / ahp_tau_s))
        self._input_noise, self._field_noise = RowStreams(), RowStreams()
        self.reset(seed)

    def reset(self, seed=None) -> None:
        """Neurons at rest (``v = c``, ``u = b v``), synapses recovered; re-seed the noise: per batch row
        (``reservoir.streams``), the input noise from the row seed's child 0, the field's from child 1."""
        self._v: np.ndarray | None = None
        seeds = RowSeeds.of(seed)
        self._input_noise.reset(seeds.child(0))
        self._field_noise.reset(seeds.child(1))

    def _rest(self, batch: int) -> None:
        self._v = np.tile(self.c.astype(np.float32), (batch, 1))
        self._u = (self.b * self._v).astype(np.float32)
        self._x = np.ones_like(self._v)
        self._syn = np.zeros_like(self._v)
        self._nmda = np.zeros_like(self._v)
        self._nmda_rise = np.zeros_like(self._v)
        self._ahp = np.zeros_like(self._v)
        self._lfp = np.zeros((batch, self.n_outputs))
        self._v_in = np.zeros((batch, self.n_inputs))
        self._artefact = np.zeros((batch, self.n_outputs))
        self._since_stim = np.full(batch, NEVER)
        if self.stdp is not None:
            self.stdp.start(self.w_t, batch)

    #: state arrays of the neurons ``(batch, N)``: membrane (mV), recovery, synaptic resources, the
    #: synaptic jump (mV) arriving at the next sample, the NMDA gate and its still rising part (mV/ms at
    #: -65 mV, unblocked) and the AHP current (mV/ms)
    NEURON_STATE = ("v", "u", "x", "syn", "nmda", "nmda_rise", "ahp")
    #: with ``stdp``: ``w``, the plastic weights ``(batch, N_pre, N_post)`` (mV per spike), and
    #: ``stdp_<key>``, the other :data:`STDPState.KEYS` (traces, rates, counts, clock)

    @property
    def state(self) -> dict[str, np.ndarray]:
        streams = {"rng": self._input_noise.state(self._batch), "field_rng": self._field_noise.state(self._batch)}
        n = len(self.c)
        if self._v is None:
            empty, out = np.zeros((0, n), np.float32), np.zeros((0, self.n_outputs))
            plastic = {} if self.stdp is None else {
                "w": np.zeros((0, n, n), np.float32), "stdp_clock": np.zeros(0, np.float32),
                **{f"stdp_{k}": empty for k in STDPState.KEYS[1:-1]}}
            return {**{k: empty for k in self.NEURON_STATE}, "lfp": out, "artefact": out,
                    "v_in": np.zeros((0, self.n_inputs)), "since_stim": np.zeros(0), **plastic, **streams}
        plastic = {} if self.stdp is None else {
            ("w" if k == "w" else f"stdp_{k}"): a for k, a in self.stdp.state().items()}
        return {"v": self._v.copy(), "u": self._u.copy(), "x": self._x.copy(), "syn": 2 * self._syn,
                "nmda": self._nmda * np.float32(NMDA_REF_MV / self._half),
                "nmda_rise": self._nmda_rise * np.float32(NMDA_REF_MV / self._half),
                "ahp": self._ahp / self._half,
                "lfp": self._lfp.copy(), "artefact": self._artefact.copy(), "v_in": self._v_in.copy(),
                "since_stim": self._since_stim.copy(), **plastic, **streams}

    @property
    def _batch(self) -> int:
        return 0 if self._v is None else len(self._v)

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        """Restore ``state``; older states (float64 neurons, no electrode or plasticity keys) load too:
        no stimulus yet, no artefact, no NMDA or AHP current, plastic weights from the network's."""
        batch, n = len(np.asarray(state["v"])), len(self.c)
        neurons = {k: np.asarray(state[k] if k in state else np.zeros((batch, n)), dtype=np.float32)
                   for k in self.NEURON_STATE}
        for k, a in neurons.items():
            if a.shape != (batch, n):
                raise ValueError(f"organoid state {k!r} must be (batch, {n}), got {a.shape}")
        arrays = {"lfp": np.asarray(state["lfp"], np.float64),
                  "artefact": np.asarray(state.get("artefact", np.zeros((batch, self.n_outputs))), np.float64),
                  "v_in": np.asarray(state.get("v_in", np.zeros((batch, self.n_inputs))), np.float64),
                  "since_stim": np.asarray(state.get("since_stim", np.full(batch, NEVER)), np.float64)}
        for k, shape in (("lfp", (batch, self.n_outputs)), ("artefact", (batch, self.n_outputs)),
                         ("v_in", (batch, self.n_inputs)), ("since_stim", (batch,))):
            if arrays[k].shape != shape:
                raise ValueError(f"organoid state {k!r} must be {shape}, got {arrays[k].shape}")
        plastic = {}
        if self.stdp is not None and "w" in state:
            for k in STDPState.KEYS:
                key = "w" if k == "w" else f"stdp_{k}"
                plastic[k] = np.asarray(state[key], np.float32)
                shape = {"w": (batch, n, n), "clock": (batch,)}.get(k, (batch, n))
                if plastic[k].shape != shape:
                    raise ValueError(f"organoid state {key!r} must be {shape}, got {plastic[k].shape}")
        self._input_noise.load_state(state["rng"], batch)
        # state saved before the field noise had a stream of its own drew it from the input noise's
        self._field_noise.load_state(state["field_rng"] if "field_rng" in state else split_off(state["rng"]),
                                     batch)
        if batch == 0:
            self._v = None
            return
        self._v, self._u, self._x = neurons["v"].copy(), neurons["u"].copy(), neurons["x"].copy()
        self._syn = 0.5 * neurons["syn"]
        self._nmda = neurons["nmda"] * np.float32(self._half / NMDA_REF_MV)
        self._nmda_rise = neurons["nmda_rise"] * np.float32(self._half / NMDA_REF_MV)
        self._ahp = neurons["ahp"] * self._half
        self._lfp, self._artefact = arrays["lfp"].copy(), arrays["artefact"].copy()
        self._v_in, self._since_stim = arrays["v_in"].copy(), arrays["since_stim"].copy()
        if self.stdp is not None:
            self.stdp.start(self.w_t, batch)
            if plastic:
                self.stdp.load(plastic)

    def run(self, u: np.ndarray) -> np.ndarray:
        """Electrode volts ``(batch, steps, n_inputs)`` -> ``(batch, steps, n_outputs)`` counts or volts."""
        u = check_input(u, self.n_inputs, np.float64)
        batch, steps, _ = u.shape
        if self._v is None:
            self._rest(batch)
        elif len(self._v) != batch:
            raise ValueError(f"state holds a batch of {len(self._v)}, input has {batch}; "
                             "call reset() before changing the batch size")
        # the electrode's capacitance passes C dV/dt: only changes of the voltage reach the tissue
        step_V = np.diff(u, axis=1, prepend=self._v_in[:, None])          # (batch, steps, n_inputs)
        self._v_in = u[:, -1].copy()
        counts = np.empty((batch, steps, self.n_outputs))
        constant = self._half * np.float32(140.0 + self.background)
        # per-sample products are small: BLAS threads only contend (and stall under load)
        with single_threaded_blas():
            for start in range(0, steps, NOISE_CHUNK_STEPS):
                stop = min(steps, start + NOISE_CHUNK_STEPS)
                # half-step drive (steps, batch, N): noise, constant input, and the stimulus where it changes
                drive = self._input_noise.standard_normal((stop - start, batch, len(self.c)), axis=1,
                                                          dtype=np.float32)
                drive *= self._noise_half
                drive += constant
                changes = np.ascontiguousarray(step_V[:, start:stop].transpose(1, 0, 2)).reshape(-1, self.n_inputs)
                rows = np.flatnonzero(changes.any(axis=1))
                if len(rows):
                    flat = drive.reshape(-1, len(self.c))
                    flat[rows] += changes[rows].astype(np.float32) @ self._stim_half
                spikes = self._integrate(drive)
                counts[:, start:stop] = np.matmul(spikes, self._readout32).transpose(1, 0, 2)
        if self.output == "spikes":
            return counts
        lfp = first_order(counts, self._lfp_r, 1.0 - self._lfp_r, self._lfp)
        self._lfp = lfp[:, -1].copy()
        artefact = first_order(step_V @ self.artefact_gain, self._artefact_r, 1.0, self._artefact)
        self._artefact = artefact[:, -1].copy()
        lfp += artefact
        if self.noise_V > 0:
            lfp += self.noise_V * self._field_noise.standard_normal(lfp.shape)
        lfp[self._blanked(np.any(step_V != 0, axis=2))] = 0.0
        return lfp

    def _blanked(self, stimulated: np.ndarray) -> np.ndarray:
        """Samples ``(batch, steps)`` within ``blank_s`` of a stimulus (``stimulated``, ``(batch, steps)``,
        a voltage change on any electrode), the last stimulus carried over from the previous call."""
        steps = stimulated.shape[1]
        index = np.arange(steps, dtype=np.float64)
        last = np.maximum.accumulate(np.where(stimulated, index, -NEVER), axis=1)
        last = np.maximum(last, -1.0 - self._since_stim[:, None])
        self._since_stim = np.minimum(steps - 1 - last[:, -1], NEVER)
        return index - last < self._blank_steps

    def _integrate(self, drive: np.ndarray) -> np.ndarray:
        """Step the network through ``drive`` ``(steps, batch, N)`` (float32, mV per half step); returns
        its spikes ``(steps, batch, N)`` (float32, 0 or 1).

        Per sample: the slow currents (NMDA through its Mg2+ block at the sample's ``v``, the AHP), two
        half steps of the membrane (each clipped at the spike peak), the recovery variable, resource
        recovery; then, for the few neurons that crossed the peak, the reset, the AHP increment and the
        release of resources, whose synaptic jumps (a sparse gather of the spiking neurons' weight rows)
        arrive at the next sample, the excitatory ones also opening NMDA gates."""
        v, u, x, syn, gate, rising, ahp = (self._v, self._u, self._x, self._syn, self._nmda, self._nmda_rise,
                                           self._ahp)
        batch, n = v.shape
        half = self._half
        u_keep = (1.0 - self.a * self.dt_ms).astype(np.float32)
        u_from_v = (self.a * self.b * self.dt_ms).astype(np.float32)
        c, d = self.c.astype(np.float32), self.d.astype(np.float32)
        quad, lin = np.float32(0.04) * half, np.float32(5.0) * half
        x_keep, x_gain = np.float32(1.0 - self._recover), np.float32(self._recover)
        release = np.float32(self.std_U)
        nmda, adapt = self.nmda_ratio > 0, self.ahp_mV_per_ms > 0
        mg_slope = np.float32(-MG_SLOPE_PER_MV)
        stdp = self.stdp
        spikes = np.zeros(drive.shape, np.float32)
        flat_spikes = spikes.reshape(len(drive), -1)
        flat_v, flat_u, flat_x, flat_ahp = v.reshape(-1), u.reshape(-1), x.reshape(-1), ahp.reshape(-1)
        th, dv = np.empty_like(v), np.empty_like(v)
        fired = np.empty(v.shape, bool)
        syn_on = bool(syn.any())
        for t in range(len(drive)):
            np.multiply(u, -half, out=th)
            th += drive[t]
            if syn_on:
                th += syn
            if nmda:
                # g s B(v) (0 - v): the gate holds g s / 65 mV per half step
                np.multiply(v, mg_slope, out=dv)
                np.exp(dv, out=dv)
                dv *= self._mg_k
                dv += 1.0
                np.divide(v, dv, out=dv)
                dv *= gate
                th -= dv
                gate *= self._nmda_keep
                np.multiply(rising, self._nmda_opening, out=dv)
                rising -= dv
                gate += dv
            if adapt:
                th -= ahp
                ahp *= self._ahp_keep
            for _ in range(2):
                np.multiply(v, quad, out=dv)
                dv += lin
                dv *= v
                dv += th
                v += dv
                np.minimum(v, SPIKE_PEAK_MV, out=v)
            np.multiply(v, u_from_v, out=dv)
            u *= u_keep
            u += dv
            x *= x_keep
            x += x_gain
            if stdp is not None:
                stdp.step()
            np.greater_equal(v, SPIKE_PEAK_MV, out=fired)
            idx = np.flatnonzero(fired)
            if len(idx) == 0:
                if syn_on:
                    syn.fill(0.0)
                    syn_on = False
                continue
            syn_on = True
            cols = idx % n
            flat_spikes[t, idx] = 1.0
            flat_v[idx] = c[cols]
            flat_u[idx] += d[cols]
            if adapt:
                flat_ahp[idx] += self._ahp_half[cols]
            efficacy = release * flat_x[idx]                    # resources released by the spikes
            flat_x[idx] -= efficacy
            rows = idx // n
            if nmda:
                exc = cols < self.n_exc
                self._jumps(syn, rows[exc], cols[exc], efficacy[exc])
                np.multiply(syn, self._nmda_gain, out=dv)
                rising += dv
                if not exc.all():
                    self._jumps(dv, rows[~exc], cols[~exc], efficacy[~exc])
                    syn += dv
            else:
                self._jumps(syn, rows, cols, efficacy)
            if stdp is not None:
                stdp.on_spikes(rows, cols)
        return spikes

    def _jumps(self, out: np.ndarray, rows: np.ndarray, cols: np.ndarray, efficacy: np.ndarray) -> None:
        """Half-step synaptic jumps ``out`` ``(batch, N)`` (mV) of the spikes of neurons ``cols`` in batch
        rows ``rows`` (sorted by row) releasing ``efficacy`` of their resources."""
        batch = len(out)
        if self.stdp is not None:
            # each row through its own plastic weights: (k, N) rows of w, summed per batch row (each row's
            # spikes are one run)
            out[:] = 0.0
            if len(rows):
                jumps = (0.5 * efficacy)[:, None] * self.stdp.w[rows, cols, :]
                firing_rows, first = np.unique(rows, return_index=True)
                out[firing_rows] = np.add.reduceat(jumps, first, axis=0)
            return
        if batch == 1:
            np.matmul(efficacy, self._w_half[cols], out=out[0])
            return
        # the neurons that fired in any row, each row's released resources on them (0 elsewhere)
        active, where = np.unique(cols, return_inverse=True)
        released = np.zeros((batch, len(active)), np.float32)
        released[rows, where] = efficacy
        np.matmul(released, self._w_half[active], out=out)
