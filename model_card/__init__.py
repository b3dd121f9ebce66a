"""falcon_h1r.model_card."""
