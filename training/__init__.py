"""falcon_h1r.training."""
