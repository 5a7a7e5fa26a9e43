"""What a cache was made from, and whether it is still fresh.

:mod:`.fingerprint` computes a build's fingerprint (the digest of its inputs: format and
prebake versions, the source's identity, the steps with their parameters, options) and
explains what changed between two; :mod:`.files` gives the identity of a file (by size,
mtime and ctime, or by content); :mod:`.code` hashes user code (a per-item function, a
dataset factory) and :mod:`.weights` the weights of the ``nn.Module`` s it holds (and a
stage's); :mod:`.plugins` loads user code named ``module:function``; :mod:`.reads` notes
the files that steps and stages read while baking.
"""
