"""Ways to hand a finished message to a mail system; one small interface (base.Transport)."""
