"""Video-driven reenactment (official ``inference.py -s SOURCE -d DRIVING``).

A driving frame enters at :mod:`.crop` (the official driving square, fixed by the
first face), M extracts its :class:`~.driving_motion.DrivingMotion`,
:class:`~.driving_motion.KeypointDriver` turns it into driving keypoints for the
source (relative to the first frame, regions, smoothing, multiplier), and
:mod:`.pipeline` streams the frames through the engine to :mod:`lpstudio.video`.
:mod:`.template` saves and loads motion templates (never pickle); :mod:`.transfer`
copies one photo's expression onto another.
"""
