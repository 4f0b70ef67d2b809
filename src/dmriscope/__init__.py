"""dmriscope: deep learning on diffusion MRI as an in vivo microscope."""

__version__ = "0.1.0"
