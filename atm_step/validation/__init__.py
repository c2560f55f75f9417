"""Validation of atm-step against simulated truth and jwst's own step.

- `atm_step.validation.drizzle`: the 1-D drizzle that stands in for cube_build;
- `atm_step.validation.truth`: truth cubes of simulated scenes;
- `atm_step.validation.measures`: artifact amplitude, aperture flux, line fluxes;
- `atm_step.validation.methods`: standard / ours / jwst processing of the same arrays;
- `atm_step.validation.nirspec`: the scene-by-scene measures (G395H-like blurred PSF);
- `atm_step.validation.grid`: the sharp-PSF grid of issue 9 (scene x PSF FWHM x SNR x N,
  noisy and noise-free; ours vs jwst vs the ideal floor; jwst results cached on disk);
- `atm_step.validation.report`: writes ``docs/validation.md`` with a commit stamp
  (``python -m atm_step.validation --out docs``; ``--quick`` for a subset).
"""

from atm_step.validation.drizzle import DrizzleCube, drizzle_slices, spaxel_edges

__all__ = ["DrizzleCube", "drizzle_slices", "spaxel_edges"]
