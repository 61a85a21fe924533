"""Coverage of the patient-level bootstrap interval on simulated clustered test sets.

Each simulated patient has 4 images whose correctness shares a patient random effect (latent
mu + u_patient + e_image > 0, u ~ N(0, 1.5^2), e ~ N(0, 1)), so images of one patient are strongly
correlated. The population accuracy is Phi(mu / sqrt(1 + 1.5^2)), checked against a 2-million-image
simulated population. Resampling patients should cover it about 95% of the time; resampling images
treats correlated images as independent and should under-cover.
"""
from __future__ import annotations

import numpy as np
from scipy.stats import norm

from benchmark.stats import BootstrapConfig, bootstrap
from benchmark.stats.confusion import accuracy, confusion_matrices

K = 4
MU, SIGMA_PATIENT, IMAGES_PER_PATIENT = 0.5, 1.5, 4
N_PATIENTS, N_SIMULATIONS, N_RESAMPLES = 300, 1000, 400


def accuracy_stat(y, probs, w):
    """The engine's confusion kernel, accuracy only (keeps 2000 bootstraps fast)."""
    return {"accuracy": accuracy(confusion_matrices(y, probs.argmax(axis=1), w, K))}


def simulate(rng: np.random.Generator, n_patients: int):
    n = n_patients * IMAGES_PER_PATIENT
    latent = MU + np.repeat(rng.normal(0, SIGMA_PATIENT, n_patients), IMAGES_PER_PATIENT) + rng.normal(size=n)
    y = rng.integers(0, K, n)
    pred = np.where(latent > 0, y, (y + rng.integers(1, K, n)) % K)
    probs = np.full((n, K), 0.1)
    probs[np.arange(n), pred] = 0.7
    return y, probs, np.repeat(np.arange(n_patients), IMAGES_PER_PATIENT)


def test_patient_level_interval_covers_and_image_level_under_covers():
    y, probs, _ = simulate(np.random.default_rng(123), 500_000)
    population = float(np.mean(probs.argmax(axis=1) == y))
    assert abs(population - norm.cdf(MU / np.sqrt(1 + SIGMA_PATIENT**2))) < 2e-3

    covered = {"patient": 0, "image": 0}
    for s in range(N_SIMULATIONS):
        y, probs, patients = simulate(np.random.default_rng(1000 + s), N_PATIENTS)
        cfg = BootstrapConfig(n_resamples=N_RESAMPLES, seed=s)
        for unit, clusters in (("patient", patients), ("image", None)):
            lo, hi = bootstrap(accuracy_stat, y, probs, clusters=clusters, config=cfg).estimates["accuracy"].ci
            covered[unit] += lo <= population <= hi
    patient, image = covered["patient"] / N_SIMULATIONS, covered["image"] / N_SIMULATIONS
    # Measured: patient 0.945, image 0.80 (seeds fixed, so deterministic).
    assert 0.93 <= patient <= 0.97, patient
    assert image < 0.90, image
