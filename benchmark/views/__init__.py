"""Views: deterministic transforms of the canonical batch (clean, mask perturbations, acquisition shifts)."""
