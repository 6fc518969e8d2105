"""Training: the loops, the callbacks that watch them, backups for resuming, and process signals.

``kmexp.train`` tells one experiment top to bottom; these are its parts.
"""
