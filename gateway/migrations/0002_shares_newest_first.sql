-- Files shared with a user are listed newest share first, paged by (created_at, file_id).
CREATE INDEX shares_by_user_newest ON shares (user_id, created_at DESC, file_id DESC);
DROP INDEX shares_by_user;
