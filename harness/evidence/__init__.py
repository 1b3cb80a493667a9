"""Evidence: what makes a verdict defensible (packet captures, manifests, signatures)."""
