"""The BentoML service that serves the packaged InfoGAN generator (see service.py)."""
