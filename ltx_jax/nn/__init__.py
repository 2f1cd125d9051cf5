"""Building blocks shared by the transformer, the VAEs and the upsamplers."""
