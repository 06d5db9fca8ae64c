"""Running a model: checkpoints, pre/post-processing, the Segmenter, backends and the benchmark."""
