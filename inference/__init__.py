"""falcon_h1r.inference."""
