"""One gateway at a time settles an upload: a lease on its row, claimed by a conditional UPDATE.

Completing, resuming, abandoning and deleting an upload read the store and
then change the row; two of them interleaving (in one process or in two
gateways) could, say, complete an upload after its row was deleted. Each first
claims the upload's lease (``uploads.lease_token``, on its session), which only succeeds when
nobody holds it, and gives it back at the end. The lease lives in the
database, not in process memory, so it holds across gateways; a gateway that
dies holding one delays that upload by at most ``LEASE_SECONDS``, after which
the lease is free again. The transitions themselves stay conditional
(``WHERE status = 'uploading'``), so even a lease outlived by slow work
cannot settle an upload twice.
"""
from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator

from gateway.core.clock import Clock, stamp_in, stamp_now
from gateway.db import Database
from gateway.db import uploads as uploads_db

LEASE_SECONDS = 60
FIRST_WAIT, LONGEST_WAIT = 0.02, 0.25


class Leases:
    def __init__(self, db: Database, clock: Clock):
        self.db = db
        self.clock = clock

    async def try_claim(self, file_id: str) -> str | None:
        """The lease's token if we got it now, None if someone holds it (or there is no such file)."""
        token = secrets.token_hex(12)
        claimed = await uploads_db.claim_lease(
            self.db, file_id, token, stamp_now(self.clock), stamp_in(self.clock, LEASE_SECONDS)
        )
        return token if claimed else None

    @contextlib.asynccontextmanager
    async def hold(self, file_id: str) -> AsyncIterator[None]:
        """Wait for the upload's lease and hold it for the block. A file that is not uploading (no
        session: uploaded, failed, gone) needs no lease: nothing settles it."""
        wait = FIRST_WAIT
        while (token := await self.try_claim(file_id)) is None:
            if not await uploads_db.exists_upload(self.db, file_id):
                yield  # nothing to settle; the block finds no row
                return
            await asyncio.sleep(wait)
            wait = min(wait * 2, LONGEST_WAIT)
        try:
            yield
        finally:
            await uploads_db.release_lease(self.db, file_id, token)

    @contextlib.asynccontextmanager
    async def hold_if_free(self, file_id: str) -> AsyncIterator[bool]:
        """Hold the lease for the block if nobody does; yields whether we hold it (the reconciler skips if not)."""
        token = await self.try_claim(file_id)
        try:
            yield token is not None
        finally:
            if token is not None:
                await uploads_db.release_lease(self.db, file_id, token)
