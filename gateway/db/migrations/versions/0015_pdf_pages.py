"""PDFs whose thumbnail was made before first pages existed are queued again, for their first page.

Since issue 25's previews a PDF content has two pictures, its thumbnail and its first page at a size to
read (``thumbnails/<fingerprint>-page``), made together or not at all. Contents made ``made`` before
that have the thumbnail only: their file objects would offer a ``page_url`` the store cannot answer.
This revision queues those again (a file of the content is a PDF by its type or name, as 0012
decided); the worker makes both pictures, the thumbnail again under its own key. Until it has, the
file has no thumbnail, as any content waiting in the queue.

Revision ID: 0015
Revises: 0014
Create Date: issue 25 (the first page of a PDF in its preview)
"""
import datetime

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    files = sa.table("files", sa.column("fingerprint"), sa.column("file_type"), sa.column("file_name"))
    thumbnails = sa.table("thumbnails", sa.column("fingerprint"), sa.column("state"), sa.column("queued_at"),
                          sa.column("attempts"), sa.column("lease_token"), sa.column("lease_expires_at"),
                          sa.column("done_at"), sa.column("reason"))
    pdf = sa.or_(sa.func.lower(files.c.file_type) == "application/pdf", sa.func.lower(files.c.file_name).like("%.pdf"))
    now = datetime.datetime.now(datetime.UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
    op.execute(
        thumbnails.update()
        .where(thumbnails.c.state == "made", thumbnails.c.fingerprint.in_(sa.select(files.c.fingerprint).where(pdf)))
        .values(state="queued", queued_at=now, attempts=0, lease_token=None, lease_expires_at=None, done_at=None,
                reason=None)
    )


def downgrade() -> None:
    """Nothing to undo: a content queued again is made again, with or without its page."""
