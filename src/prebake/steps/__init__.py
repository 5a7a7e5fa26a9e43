"""Per-item steps: what a build does to each item, between reading it and writing its row.

:mod:`.base` holds the image steps (resize, center crop, to RGB, to CHW), a user's own
function (``UserTransform``) and the pipeline: the order of the steps
(``make_pipeline``), their fingerprint (``describe``) and the check that the items have
the columns a step needs (``check_inputs``). :mod:`.audio` resamples and band-passes 1-D
signals, :mod:`.cycles` segments heart cycles, :mod:`.volume` reorients, resamples,
windows and crops or pads volumes, and :mod:`.stage` is :class:`prebake.Stage`, a batched
step (a frozen model) run after the per-item ones.

A new built-in step is a frozen dataclass with ``__call__(item) -> item`` in the module of its
kind, given its place in the order by ``make_pipeline``; its fields are its parameters, and
they enter the fingerprint through ``describe`` (the class name and the fields). Random
augmentation never belongs here: it runs batched on the device (:mod:`prebake.augment`).
"""
