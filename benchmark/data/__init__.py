"""Manifests, image decoding, dataset adapters and the synthetic generator."""
