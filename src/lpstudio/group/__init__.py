"""Group photos: every chosen face of a photo moves, each with its own command (issue 21 section 2).

* :mod:`.selection` -- ``--faces all|0,2``, face numbering (largest first) and left/right positions;
* :mod:`.commands` -- per-face commands (``"0:smile; 1:wink"``, ``"face 0 smile, face 1 wink"``,
  ``"왼쪽 사람은 웃고 오른쪽 사람은 윙크"``);
* :mod:`.plan` -- one parameter track per face;
* :mod:`.render` -- prepare the faces, render each frame's faces in one batch, paste them back
  in depth order (:class:`lpstudio.face.composite.GroupPaste`);
* :mod:`.speech` -- every chosen face lip-syncs one speech (``speak --faces``, ``drive ... speech.wav
  --faces``, the web app's spoken requests with ``faces``);
* :mod:`.drive` -- ``drive --faces`` / ``--drive-face``: videos, templates, images and speech audio.
"""

from __future__ import annotations
