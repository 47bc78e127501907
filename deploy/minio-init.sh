#!/bin/sh
# One-shot MinIO setup, run by the `minio-init` service of docker-compose.yml
# (image minio/mc) after MinIO is healthy and before the gateway starts.
# Idempotent: every `docker compose up` runs it again, and a second run changes
# nothing (a changed secret key in .env is applied to its user).
#
# 1. the bucket;
# 2. a MinIO user for the gateway that can use only that bucket (the gateway
#    never holds the root credentials);
# 3. a MinIO user for the CDN tier that can only read the bucket's content
#    objects (no listing, no writes): nginx signs its store requests with it;
# 4. the bucket's ObjectCreated (put) and ObjectRemoved (delete) events bound
#    to the webhook target that MinIO's MINIO_NOTIFY_WEBHOOK_*_<ID> variables
#    define (it posts them to the gateway's POST /dropbox/v1/events).
#
# No secret is ever an argument of mc (arguments show in `ps` on the host, and
# in /proc/<pid>/cmdline to every user): mc finds MinIO and the root
# credentials in MC_HOST_<alias> in its environment, and reads the secret key
# of a user it creates from its standard input.
#
# Incomplete multipart uploads: MinIO has no AbortIncompleteMultipartUpload
# lifecycle rule (`mc ilm rule add` has no flag for it, and `mc ilm import`
# reports success but drops the element: minio/minio#19115, closed as "working
# as intended"). MinIO aborts stale multipart uploads itself instead, after
# MINIO_API_STALE_UPLOADS_EXPIRY (set on the minio service in
# docker-compose.yml); the gateway aborts abandoned uploads before that.
set -eu

: "${MINIO_URL:?MINIO_URL is not set (the address of MinIO inside compose, e.g. http://minio:9000)}"
: "${MINIO_ROOT_USER:?MINIO_ROOT_USER is not set}"
: "${MINIO_ROOT_PASSWORD:?MINIO_ROOT_PASSWORD is not set}"
: "${BUCKET:?BUCKET is not set}"
: "${GATEWAY_S3_ACCESS_KEY:?GATEWAY_S3_ACCESS_KEY is not set}"
: "${GATEWAY_S3_SECRET_KEY:?GATEWAY_S3_SECRET_KEY is not set}"
: "${CDN_S3_ACCESS_KEY:?CDN_S3_ACCESS_KEY is not set}"
: "${CDN_S3_SECRET_KEY:?CDN_S3_SECRET_KEY is not set}"
: "${WEBHOOK_ID:?WEBHOOK_ID is not set (the <ID> of MINIO_NOTIFY_WEBHOOK_ENABLE_<ID>)}"

ALIAS=store
POLICY=dropbox-gateway-bucket
CDN_POLICY=dropbox-cdn-read
# The target's ARN: arn:minio:sqs:<region>:<ID>:webhook, region empty as long
# as MINIO_SITE_REGION / MINIO_REGION are not set on the minio service.
ARN="arn:minio:sqs::${WEBHOOK_ID}:webhook"

log() { printf 'minio-init: %s\n' "$*"; }
fail() { log "$*"; exit 1; }

# mc keeps its configuration under $HOME; the image may run without a writable one.
export MC_CONFIG_DIR="${MC_CONFIG_DIR:-/tmp/.mc}"

# MC_HOST_<alias>=<scheme>://<access key>:<secret key>@<host:port>. mc cuts the
# keys out at the first ":" and the last "@" and does not %-decode them.
case "$MINIO_ROOT_USER" in *[:@[:space:]]*) fail "MINIO_ROOT_USER must not hold ':', '@' or spaces" ;; esac
case "$MINIO_ROOT_PASSWORD" in *[:[:space:]]*) fail "MINIO_ROOT_PASSWORD must not hold ':' or spaces" ;; esac
case "$MINIO_URL" in http://* | https://*) ;; *) fail "MINIO_URL must start with http:// or https://" ;; esac
[ "$CDN_S3_ACCESS_KEY" != "$GATEWAY_S3_ACCESS_KEY" ] || fail "the CDN tier needs a MinIO user of its own: CDN_S3_ACCESS_KEY equals GATEWAY_S3_ACCESS_KEY"
export "MC_HOST_${ALIAS}=${MINIO_URL%%://*}://${MINIO_ROOT_USER}:${MINIO_ROOT_PASSWORD}@${MINIO_URL#*://}"

log "waiting for MinIO at $MINIO_URL"
tries=0
until mc admin info "$ALIAS" >/dev/null 2>&1; do
  tries=$((tries + 1))
  if [ "$tries" -ge 60 ]; then
    log "MinIO did not accept the root credentials within 60 s (check MINIO_ROOT_USER / MINIO_ROOT_PASSWORD in .env)"
    mc admin info "$ALIAS"
    exit 1
  fi
  sleep 1
done

log "bucket $BUCKET"
mc mb --ignore-existing "$ALIAS/$BUCKET"

# A policy from a JSON document on standard input (mc wants a file: a private temporary one).
create_policy() {  # name; the document on stdin
  policy_file="$(mktemp)"
  cat >"$policy_file"
  mc admin policy create "$ALIAS" "$1" "$policy_file"
  rm -f "$policy_file"
}

# A user with exactly this policy. `user add` on an existing user sets its secret
# key, so rotating a key in .env works; the key goes in on standard input.
create_user() {  # access key, policy; the secret key on stdin
  mc admin user add "$ALIAS" "$1"
  # Attaching a policy the user already has is an error to mc, so look first
  # (with the shell alone: the mc image has no grep).
  case "$(mc admin user info "$ALIAS" "$1")" in
    *"$2"*) ;;
    *) mc admin policy attach "$ALIAS" "$2" --user "$1" ;;
  esac
}

# The object actions the gateway uses (storage/s3.py), in the bucket only: reading and
# writing objects (a multipart upload's start, parts and completion are s3:PutObject),
# deleting them, aborting uploads and listing an upload's parts; the bucket itself only
# to check that it is there. Nothing on other buckets, nothing on the bucket's own
# settings (its event binding, policy, lifecycle), no object retention, tags or ACLs.
log "user $GATEWAY_S3_ACCESS_KEY with access to $BUCKET only"
create_policy "$POLICY" <<EOF_POLICY
{
  "Version": "2012-10-17",
  "Statement": [
    {
      "Effect": "Allow",
      "Action": ["s3:GetBucketLocation", "s3:ListBucket"],
      "Resource": ["arn:aws:s3:::${BUCKET}"]
    },
    {
      "Effect": "Allow",
      "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload",
                 "s3:ListMultipartUploadParts"],
      "Resource": ["arn:aws:s3:::${BUCKET}/*"]
    }
  ]
}
EOF_POLICY
create_user "$GATEWAY_S3_ACCESS_KEY" "$POLICY" <<EOF_SECRET
$GATEWAY_S3_SECRET_KEY
EOF_SECRET

# Reading the content objects and their thumbnails and nothing else: not even listing, so a
# leaked CDN key reads only content whose fingerprint its holder already knows.
log "user $CDN_S3_ACCESS_KEY that can only read $BUCKET/content/ and $BUCKET/thumbnails/"
create_policy "$CDN_POLICY" <<EOF_POLICY
{
  "Version": "2012-10-17",
  "Statement": [
    {
      "Effect": "Allow",
      "Action": ["s3:GetObject"],
      "Resource": ["arn:aws:s3:::${BUCKET}/content/*", "arn:aws:s3:::${BUCKET}/thumbnails/*"]
    }
  ]
}
EOF_POLICY
create_user "$CDN_S3_ACCESS_KEY" "$CDN_POLICY" <<EOF_SECRET
$CDN_S3_SECRET_KEY
EOF_SECRET

log "events of $BUCKET -> $ARN"
mc event add --ignore-existing "$ALIAS/$BUCKET" "$ARN" --event put,delete
mc event ls "$ALIAS/$BUCKET" "$ARN"

log "done"
