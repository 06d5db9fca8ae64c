"""The network: one component per module (LSTG autoencoders, quantizer, discriminator, FMP, prompts, SAM decoder) and the assembled FusionSAM."""
