"""Data: class tables, the synthetic scene generator, dataset readers and aligned augmentation."""
