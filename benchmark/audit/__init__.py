"""Leakage audit: duplicate and near-duplicate images and patients across splits and datasets."""
