"""Simulated NIRSpec-IFU-like scenes with known noise-free truth.

Plain NumPy arrays ``(ny, nx)`` with dispersion along x, the layout the ATM core
works on. Main entry point::

    from atm_step.simulate import make_scene, SCENES
    scene = make_scene("point_source", nx=2048, ny=2048, noise=0.01, seed=1)
    scene.flux, scene.err, scene.alpha, scene.regions, scene.wavelength
    scene.truth_native, scene.truth(region, column, alpha), scene.truth_oversampled(2)

Modules: `geometry` (slice layout and trace tilt), `psf` (the tabulated Airy
PSF, :class:`AiryPSF`), `spectra` (source spectra and the nebula), `scenes`
(:func:`make_scene`, :class:`Scene`).
"""

from atm_step.simulate.geometry import SliceGeometry
from atm_step.simulate.psf import AiryPSF
from atm_step.simulate.scenes import ARCSEC2_TO_SR, SCENES, Scene, Source, make_scene
from atm_step.simulate.spectra import Line, Nebula, Spectrum

__all__ = [
    "ARCSEC2_TO_SR",
    "SCENES",
    "AiryPSF",
    "Line",
    "Nebula",
    "Scene",
    "SliceGeometry",
    "Source",
    "Spectrum",
    "make_scene",
]
