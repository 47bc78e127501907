"""What says a disk is full: ENOSPC, or a quota's EDQUOT, from any write of the gateway's own."""
from __future__ import annotations

import errno

OUT_OF_SPACE = (errno.ENOSPC, errno.EDQUOT)


def out_of_space(exc: BaseException) -> bool:
    """Whether ``exc`` is a write that found no room on its disk."""
    return isinstance(exc, OSError) and exc.errno in OUT_OF_SPACE
